"""Find or register a patient, then capture: upload images or take a camera frame."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from kiosk import names
from kiosk.domain import ImageKind
from kiosk.errors import KioskError
from kiosk.visit import Offered
from web import identity, kept, visits, words
from web.capture import camera_frame
from web.security import audit
from web.services import services

bp = Blueprint("patients", __name__)

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
SEXES = words.SEXES

#: The file inputs of the capture form: field name -> (kind of image, eye).
CAPTURE_FIELDS: dict[str, tuple[ImageKind, str | None]] = {
    "right_eye": ("fundus", "R"),
    "left_eye": ("fundus", "L"),
    "chest": ("cxr", None),
}


class NoCamera(KioskError):
    """The kiosk has no camera configured (KIOSK_CAMERA_URI is empty)."""

    code = "no_camera"
    http_status = 409


class PatientFormError(KioskError):
    """The patient form is incomplete or malformed."""

    code = "bad_patient"
    http_status = 400


@bp.get("/patients")
def find() -> ResponseReturnValue:
    """Search patients by id or name (a barcode scanner types into the same box)."""
    query = request.args.get("q", "").strip()
    found = services().store.find_patients(query) if query else []
    if query:
        audit("search_patients", detail=f"q={query} found={len(found)}")
    if len(found) == 1 and found[0].identifier == query:
        return redirect(url_for("patients.capture", patient_id=found[0].id))
    return render_template(
        "patients.html", query=query, found=found, sexes=SEXES, form=_prefill(query, found)
    )


def _prefill(query: str, found: Sequence[object]) -> dict[str, str]:
    """A search that found nobody starts the registration: an id if it has digits, else a name."""
    if found or not query:
        return {}
    if IDENTIFIER.match(query) and any(c.isdigit() for c in query):
        return {"identifier": query}
    return {"family_name": query}


@bp.post("/patients")
def register() -> ResponseReturnValue:
    """Register a new patient (or update one with the same id), then go to capture."""
    form = request.form
    try:
        identifier, name, birth_date, sex = patient_fields(form)
    except PatientFormError as exc:
        flash(exc.message, "error")
        return render_template("patients.html", query="", found=[], sexes=SEXES, form=form), 400
    refused = identity.reregistration(identifier, {"name": name, "birth_date": birth_date, "sex": sex})
    if refused is not None:
        return refused
    patient = services().store.upsert_patient(
        identifier, form_name(form), birth_date, sex, actor=current_user.username
    )
    return redirect(url_for("patients.capture", patient_id=patient.id))


def form_name(form: Mapping[str, str]) -> names.PersonName:
    """The name as typed: family and given name(s) in their own fields (kept apart for FHIR,
    HL7 and DICOM), or one ``name`` text from a client of before (kept as text, never split)."""
    family, given = (" ".join(str(form.get(f, "")).split()) for f in ("family_name", "given_names"))
    if family or given:
        return names.from_parts(family, given)
    return names.from_text(str(form.get("name", "")))


def patient_fields(form: Mapping[str, str]) -> tuple[str, str, str | None, str | None]:
    """Checked (identifier, name as shown, birth date, sex) from the registration form."""
    get = form.get
    identifier = str(get("identifier", "")).strip()
    name = form_name(form).display
    birth = str(get("birth_date", "")).strip() or None
    sex = str(get("sex", "")).strip() or None
    if not IDENTIFIER.match(identifier):
        raise PatientFormError(_("Scan or type the patient id (letters, digits, - . / _)."))
    if not name or len(name) > 200:
        raise PatientFormError(_("Type the patient's family name and given name(s)."))
    if birth is not None:
        try:
            born = date.fromisoformat(birth)
        except ValueError as exc:
            raise PatientFormError(_("Birth date must be a date like 1970-03-31.")) from exc
        if born > date.today() or born.year < 1890:
            raise PatientFormError(_("Birth date is not possible."))
    if sex is not None and sex not in SEXES:
        raise PatientFormError(_("Choose the sex from the list."))
    return identifier, name, birth, sex


@bp.get("/patients/<int:patient_id>/capture")
def capture(patient_id: int) -> ResponseReturnValue:
    """The capture page for one patient."""
    return visits.capture_page(patient_id)


@bp.post("/patients/<int:patient_id>/capture")
def upload(patient_id: int) -> ResponseReturnValue:
    """Uploaded images (or the photos the gate already checked): screened once, or sent back."""
    try:
        offered = visits.offered_from_request(CAPTURE_FIELDS)
    except visits.CheckedPhotoError as exc:
        return visits.sent_back(patient_id, exc)
    return visits.gate_and_screen(patient_id, offered)


@bp.post("/patients/<int:patient_id>/camera")
def camera(patient_id: int) -> ResponseReturnValue:
    """Take one frame from the configured camera for the chosen eye, then gate and screen."""
    svc = services()
    cam = svc.camera
    if cam is None:
        raise NoCamera(_("No camera is configured on this kiosk: upload the photo instead."))
    eye = request.form.get("eye") if request.form.get("eye") in ("L", "R") else None
    offered = [Offered(camera_frame(cam), "camera.jpg", eye, "fundus")]
    return visits.gate_and_screen(patient_id, offered)


@bp.post("/patients/<int:patient_id>/history")
def history(patient_id: int) -> ResponseReturnValue:
    """Record the patient's diabetes status and the date of their last eye examination."""
    diabetes = request.form.get("diabetes", "unknown")
    last = request.form.get("last_eye_exam", "").strip() or None
    if diabetes not in ("yes", "no", "unknown"):
        raise PatientFormError(_("Choose yes, no or not known for diabetes."))
    if last is not None:
        try:
            when = date.fromisoformat(last)
        except ValueError as exc:
            raise PatientFormError(_("The examination date must be a date like 2025-03-31.")) from exc
        if when > date.today():
            raise PatientFormError(_("The last eye examination cannot be in the future."))
    services().store.set_patient_history(patient_id, diabetes, last, actor=current_user.username)
    return redirect(url_for("patients.capture", patient_id=patient_id))


@bp.post("/patients/<int:patient_id>/capture/clear")
def start_again(patient_id: int) -> ResponseReturnValue:
    """Forget the images kept while waiting for a retake."""
    kept.forget(patient_id)
    return redirect(url_for("patients.capture", patient_id=patient_id))
