"""The result page, its images, and the printable referral slip (PDF)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, render_template, send_file
from flask.typing import ResponseReturnValue
from flask_login import current_user

from kiosk.errors import KioskError, NotFoundError
from kiosk.store import Patient, Screening
from web import film_view, slip
from web.security import audit
from web.services import services
from web.words import SEXES

bp = Blueprint("results", __name__)

#: Mimetypes the browser may show inline; anything else (DICOM) is a download.
INLINE = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def patient_of(screening: Screening) -> Patient:
    """The patient of a screening."""
    return screening.patient


@bp.get("/screenings/<int:screening_id>")
def result(screening_id: int) -> ResponseReturnValue:
    """The verdict per eye or film, findings, heat-maps, model, warning, sign-off."""
    return result_page(screening_id)


def result_page(screening_id: int, *, sign_error: str = "", sign_form: Any = None,
                status: int = 200) -> ResponseReturnValue:
    """The result page; a refused sign-off comes back here with its reason and what was typed."""
    svc = services()
    screening = svc.store.get_screening(screening_id)
    patient = patient_of(screening)
    audit("view_result", patient_id=patient.id, detail=f"screening={screening_id}")
    return render_template(
        "result.html",
        screening=screening,
        patient=patient,
        can_sign=current_user.role == "clinician",
        sexes=SEXES,
        images=_image_views(screening),
        limitations=_limitations(),
        sign_error=sign_error,
        patient_history=svc.store.patient_history(patient.id),
        sign_form=sign_form or {},
    ), status


def _limitations() -> dict[tuple[str, str], list[str]]:
    """Per loaded model (id, version): the limits its model card states, shown beside each result."""
    try:
        described = services().pipeline.describe()
    except KioskError:
        return {}
    return {(str(m["id"]), str(m["version"])): list(m.get("limitations") or [])
            for m in described if m.get("backend")}


def _image_views(screening: Screening) -> list[dict[str, Any]]:
    """Per image: the result and which picture the page can show (heat-map or original)."""
    views = []
    for index, result in enumerate(screening.results):
        heatmap = _at(screening.heatmap_shas, index)
        original = _at(screening.image_shas, index)
        suffix = _suffix(original) if original is not None else ""
        # a film is shown as rendered here ("film"); a photo as it was taken ("original")
        shown = "original" if suffix in INLINE else ("film" if suffix == ".dcm" else None)
        views.append(
            {
                "index": index,
                "result": result,
                "picture": "heatmap" if heatmap else shown,
                "original": shown,
            }
        )
    return views


def _at(items: Sequence[str | None], index: int) -> str | None:
    """The item at index, or None past the end."""
    return items[index] if index < len(items) else None


def _suffix(sha: str) -> str:
    """The suffix the store kept an image under."""
    return services().store.image_path(sha).suffix.lower()


@bp.get("/screenings/<int:screening_id>/images/<int:index>/<any(heatmap, original, film):kind>")
def image(screening_id: int, index: int, kind: str) -> ResponseReturnValue:
    """One image of a screening: the heat-map overlay, the original as captured, or a DICOM
    film rendered as a picture at its heat-map's size."""
    svc = services()
    screening = svc.store.get_screening(screening_id)
    shas = screening.heatmap_shas if kind == "heatmap" else screening.image_shas
    sha = _at(shas, index)
    if sha is None:
        raise NotFoundError("This screening has no such image.")
    path = svc.store.image_path(sha)
    patient = patient_of(screening)
    audit(f"view_{'original' if kind == 'film' else kind}", patient_id=patient.id,
          detail=f"screening={screening_id} image={index}")
    if kind == "film":
        return _film(path, _at(screening.heatmap_shas, index))
    mimetype = INLINE.get(path.suffix.lower())
    if mimetype is None:
        return send_file(path, mimetype="application/dicom", as_attachment=True)
    return send_file(path, mimetype=mimetype)


def _film(path: Path, heatmap: str | None) -> ResponseReturnValue:
    """A stored DICOM film as a PNG, lined up with its heat-map."""
    if path.suffix.lower() != ".dcm":
        raise NotFoundError("This image is not a DICOM film.")
    size = film_view.picture_size(services().store.image_path(heatmap)) if heatmap else None
    return Response(film_view.film_png(path, size), mimetype="image/png")


@bp.get("/screenings/<int:screening_id>/slip.pdf")
def referral_slip(screening_id: int) -> ResponseReturnValue:
    """The printable referral slip as a PDF (made here, works offline)."""
    svc = services()
    screening = svc.store.get_screening(screening_id)
    patient = patient_of(screening)
    heatmaps = [svc.store.image_path(s) if s else None for s in screening.heatmap_shas]
    pdf = slip.referral_slip(screening, patient, svc.config.clinic_name, heatmaps)
    audit("export_referral_slip", patient_id=patient.id, detail=f"screening={screening_id}")
    name = slip.file_name(patient.identifier, screening_id)
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )
