"""The JSON API for other clients: health, patients, the quality gate, screenings, sign-off.

Authenticated by the session (then writes carry the CSRF token in ``X-CSRFToken``) or by a
per-user bearer token (``Authorization: Bearer <token>``, shown on the account page).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf.csrf import generate_csrf

from kiosk import __version__, messages, visit
from kiosk.errors import KioskError
from kiosk.store import Screening
from kiosk.visit import Offered
from web import checks, identity, visits, words
from web.capture import gate, retakes, retakes_of
from web.openapi import openapi_document
from web.patients import CAPTURE_FIELDS, PatientFormError, form_name, patient_fields
from web.results import patient_of
from web.security import audit, requires
from web.services import services

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of this API."""
    return jsonify(openapi_document())


@bp.get("/health")
def health() -> ResponseReturnValue:
    """Back-ends really in use, loaded tasks and the outbox depth per destination."""
    svc = services()
    try:
        models = svc.pipeline.describe()
        model_error = None
    except KioskError as exc:
        models, model_error = [], exc.to_dict()
    queue = [_destination_json(d) for d in svc.store.outbox_status()]
    body = {
        "status": "ok" if model_error is None and all("error" not in m for m in models)
        else "degraded",
        "version": __version__,
        "models": [_model_json(m) for m in models],
        "backends": sorted({str(m["backend"]) for m in models if m.get("backend")}),
        "model_error": model_error,
        "queue": queue,
        "queue_depth": sum(d["waiting"] for d in queue),
    }
    return jsonify(body)


@bp.get("/csrf")
def csrf_token() -> ResponseReturnValue:
    """The CSRF token a session client sends in ``X-CSRFToken`` on writes."""
    return jsonify({"csrf_token": generate_csrf(), "header": "X-CSRFToken"})


@bp.get("/patients")
def find_patients() -> ResponseReturnValue:
    """Patients whose id or name matches ``q``."""
    query = request.args.get("q", "").strip()
    found = services().store.find_patients(query) if query else []
    audit("api_search_patients", detail=f"q={query} found={len(found)}")
    return jsonify({"patients": [patient_json(p) for p in found]})


@bp.post("/patients")
def create_patient() -> ResponseReturnValue:
    """Register a patient (or update the one with the same id)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise PatientFormError("Send a JSON object with identifier, family_name, given_names, "
                               "birth_date, sex.")
    fields = {k: str(v) for k, v in body.items() if v}
    identifier, name, birth, sex = patient_fields(fields)
    found = identity.clash(identifier, {"name": name, "birth_date": birth, "sex": sex},
                           fields.get("confirm_change"))
    if found is not None:  # never a silent rename; never a change under signed results
        _, changed, refused = found
        return jsonify({"code": "patient_signed" if refused else "confirm_change",
                        "message": ("This id belongs to a patient with signed results: it cannot "
                                    "change." if refused else "This id is registered with other "
                                    "details: send confirm_change with the id to change them."),
                        "changes": [{"field": f, "old": o, "new": n} for f, o, n in changed]}), 409
    patient = services().store.upsert_patient(
        identifier, form_name(fields), birth, sex, actor=current_user.username
    )
    return jsonify(patient_json(patient)), 201


@bp.post("/check")
def check() -> ResponseReturnValue:
    """The instant gate for uploaded images: quality, and whether they fit the patient and slot.

    A gradable photo checked with the session is kept (content-addressed, no screening) and its
    ``handle`` lets the capture form send it again without uploading it twice.
    """
    svc = services()
    offered = _offered()
    visit.require(offered)
    outcomes = [svc.pipeline.check(o.data, source=o.name, task=o.task, kind=o.kind)
                for o in offered]
    needed = retakes_of(offered, [outcome.result for outcome in outcomes])
    found: list[str] = []
    if request.form.get("patient_id", "").isdigit():
        patient = svc.store.get_patient(int(request.form["patient_id"]))
        inverted = svc.store.get_setting(checks.INVERTED_VIEW_SETTING) == "inverted"
        found = checks.warnings_for(patient, offered, [o.image for o in outcomes], inverted=inverted)
    handles = [] if needed or g.get("via_token") else [_keep_checked(o) for o in offered]
    return jsonify({
        "gradable": not needed,
        "retakes": [{"name": r.name, "title": r.title, "line": r.line, "reasons": r.reasons}
                    for r in needed],
        "warnings": found,
        "handles": handles,
    })


def _keep_checked(item: Offered) -> str:
    """Keep a checked photo for this session's capture form; its handle (sha256)."""
    sha = services().store.save_image(item.data, visit.suffix_of(item.data, item.name))
    return visits.checked_handle(sha, item.name)


@bp.post("/screenings")
def create_screening() -> ResponseReturnValue:
    """Screen uploaded images for a patient; 422 with the retakes when any fails the gate."""
    svc = services()
    patient_id = _patient_id(request.form.get("patient_id", ""))
    patient = svc.store.get_patient(patient_id)
    offered = _offered()
    reasons = {eye: request.form.get(f"missing_{eye}", "").strip()[:200] for eye in ("R", "L")}
    if visit.missing_eyes(offered) and not gate(svc.pipeline, offered):
        visit.require_complete(offered, reasons)  # 422 incomplete_visit: both eyes, or why not
    films = visit.known_films(svc.store, offered, sender="web")
    if films.earlier:  # the same film (UID and pixels) or photograph file is never screened twice
        index, earlier = next(iter(films.earlier.items()))
        audit("api_film_seen_before", patient_id=patient_id,
              detail=f"{offered[index].name}: screening {earlier}")
        return jsonify({"code": "film_seen_before", "screening_id": earlier,
                        "message": f"The image {offered[index].name} was screened before "
                                   f"(screening {earlier}): it is not screened twice."}), 409
    screened = visit.screen(svc.pipeline, offered, age=visit.age_years(patient.birth_date))
    needed = retakes(screened)
    if needed:
        return _retake_answer(needed)
    visit.require_complete(offered, reasons)
    found = checks.english_warnings(  # the API speaks English, as the results are kept
        patient, screened.offered, [per_image[0].image for per_image in screened.outcomes],
        inverted=svc.store.get_setting(checks.INVERTED_VIEW_SETTING) == "inverted")
    if found and request.form.get("identity_checked") != "yes":
        return jsonify({"code": "check_identity", "message": " ".join(found),
                        "warnings": found}), 422
    for result in screened.results:  # kept in English, as every result is
        result["warnings"].extend(messages.say("identity_confirmed", user=current_user.username,
                                               warning=line) for line in found)
    visit.note_missing(screened, reasons)
    films.warn_conflicts(screened)
    screening = visit.record(svc.store, patient_id, screened, actor=current_user.username,
                             films=films.received)
    audit("api_create_screening", patient_id=patient_id, detail=f"screening={screening.id}")
    return jsonify(screening_json(screening)), 201


def _retake_answer(needed: list[Any]) -> ResponseReturnValue:
    """422 naming each image to retake and why."""
    body = {
        "code": "retake",
        "message": "; ".join(r.line for r in needed),
        "retakes": [{"name": r.name, "line": r.line, "reasons": r.reasons} for r in needed],
    }
    return jsonify(body), 422


@bp.get("/screenings/<int:screening_id>")
def read_screening(screening_id: int) -> ResponseReturnValue:
    """One screening with its results, verdict and sign-off."""
    screening = services().store.get_screening(screening_id)
    audit("api_read_screening", patient_id=patient_of(screening).id, detail=f"screening={screening_id}")
    return jsonify(screening_json(screening))


@bp.post("/screenings/<int:screening_id>/sign-off")
@requires("clinician")
def sign_off(screening_id: int) -> ResponseReturnValue:
    """Confirm or overrule a verdict with a note (clinicians only)."""
    body = request.get_json(silent=True) or {}
    decision, note = str(body.get("decision", "")), str(body.get("note", "")).strip()
    verdict = body.get("verdict")
    screening = services().store.sign_off(
        screening_id, clinician=current_user.username, decision=decision, note=note,
        verdict=str(verdict) if decision == "overrule" else None,
    )
    return jsonify(screening_json(screening))


class BadUpload(KioskError):
    """The upload names no patient or carries no image."""

    code = "bad_upload"
    http_status = 400


def _patient_id(raw: str) -> int:
    """The numeric patient id of a form field."""
    if not raw.isdigit():
        raise BadUpload("Send patient_id (the number returned when the patient was created).")
    return int(raw)


def _offered() -> list[Offered]:
    """The uploaded images: ``image`` (task detected) or the eye/chest fields of the form."""
    fields: dict[str, tuple[Any, str | None]] = {"image": (None, None), **CAPTURE_FIELDS}
    offered = []
    laterality = request.form.get("laterality")
    laterality = laterality if laterality in ("L", "R") else None
    task_hint = request.form.get("task") or None
    for field, (kind, eye) in fields.items():
        for upload in request.files.getlist(field):
            if upload.filename or upload.content_length:
                name = upload.filename or field
                offered.append(Offered(upload.read(), name, eye or laterality, kind, task_hint))
    if not offered:
        raise BadUpload("Attach at least one image (field 'image').")
    return offered


def patient_json(patient: Any) -> dict[str, Any]:
    """A patient as JSON."""
    return {
        "id": patient.id,
        "identifier": patient.identifier,
        "name": patient.name,
        "family_name": patient.person_name.parts.family or None,
        "given_names": list(patient.person_name.parts.given),
        "birth_date": str(patient.birth_date) if patient.birth_date else None,
        "sex": patient.sex,
    }


def screening_json(screening: Screening) -> dict[str, Any]:
    """A screening as JSON, with the nurse's words beside the machine codes."""
    signed = screening.sign_off
    sign_off = None if signed is None else {k: _plain(v) for k, v in vars(signed).items()}
    return {
        "id": screening.id,
        "patient": patient_json(patient_of(screening)),
        "created": _plain(screening.created),
        "verdict": screening.verdict,
        "action": words.headline(screening.verdict, screening.results),
        "priority": screening.priority,
        "results": screening.results,
        "sign_off": sign_off,
        "intended_use": words.INTENDED_USE_WARNING,
        "links": {
            "page": url_for("results.result", screening_id=screening.id),
            "slip": url_for("results.referral_slip", screening_id=screening.id),
        },
    }


def _model_json(model: dict[str, Any]) -> dict[str, Any]:
    """The parts of a bundle description a health check needs."""
    keys = ("id", "version", "backend", "variant", "signature", "warmup_ms", "error")
    return {k: _plain(model.get(k)) for k in keys if k in model}


def _destination_json(status: Any) -> dict[str, Any]:
    """One outbox destination as JSON."""
    return {
        "destination": status.destination,
        "waiting": int(status.waiting),
        "oldest": _plain(status.oldest),
        "last_error": status.last_error,
        "parked": int(status.parked),
    }


def _plain(value: Any) -> Any:
    """Dates and times as ISO text; everything else as is."""
    return value.isoformat() if hasattr(value, "isoformat") else value
