"""A visit sent from the capture page: one screening per tap, complete, for the right patient.

The order is the safety order: the same form sent twice records one screening (its token); a
visit with an empty file, no image or one eye without a reason is sent back in place with the
good images kept; every image passes the gate; then identity (eye side, the DICOM header's
patient) must be confirmed by the nurse before anything is recorded.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from itsdangerous import BadData, URLSafeTimedSerializer

from kiosk import messages as kiosk_messages
from kiosk import visit
from kiosk.domain import ImageKind
from kiosk.errors import KioskError
from kiosk.store import form_tokens
from kiosk.visit import Offered, Screened
from web import checks, kept, messages, words
from web.capture import Retake, gate, retakes
from web.security import audit
from web.services import services
from web.words import N_

#: Why an eye could not be photographed: the words kept with the visit.
MISSING_REASONS = {
    "": "",
    "absent": N_("the eye is absent or artificial"),
    "cannot": N_("the eye could not be photographed (refer for an eye examination)"),
    "declined": N_("the patient declined"),
}
#: A checked photo's handle is signed for the user it was checked for and lasts this long. It
#: is not kept in the session: the session is a cookie that every response rewrites, so a check
#: still in flight when the form is sent (or the other eye's check) would write the other's
#: handle out of it again.
CHECKED_SALT = "checked-upload"
CHECKED_MAX_AGE_S = 12 * 3600


def offered_from_request(fields: Mapping[str, tuple[ImageKind, str | None]]) -> list[Offered]:
    """The images of the capture form: each slot's files, or the photo it already checked."""
    offered = []
    for field, (kind, eye) in fields.items():
        uploads = [u for u in request.files.getlist(field) if u.filename or u.content_length]
        for upload in uploads:
            offered.append(Offered(upload.read(), upload.filename or field, eye, kind))
        if not uploads:
            offered += _checked(request.form.getlist(f"checked_{field}"), field, kind, eye)
    return offered


def _checked(handles: list[str], field: str, kind: ImageKind, eye: str | None) -> list[Offered]:
    """Photos the gate checked for this user, named by the signed handle it gave the page.

    A handle that is forged, another user's or expired is refused (the nurse sends the photo
    again), never silently dropped: the visit would lose an eye without a word.
    """
    store = services().store
    found = []
    for handle in handles:
        try:
            sha, name, user = _signer().loads(handle, max_age=CHECKED_MAX_AGE_S)
        except BadData as exc:
            raise CheckedPhotoError() from exc
        if user != current_user.username or not store.image_path(sha).is_file():
            raise CheckedPhotoError()
        found.append(Offered(store.image_path(sha).read_bytes(), name, eye, kind))
    return found


def checked_handle(sha: str, name: str) -> str:
    """The handle that lets this user's capture form send a checked photo without its bytes."""
    return str(_signer().dumps([sha, name, current_user.username]))


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=CHECKED_SALT)


class CheckedPhotoError(KioskError):
    """A capture form named a checked photo this kiosk cannot give back to this user."""

    code = "checked_photo_lost"
    http_status = 422

    def __init__(self) -> None:
        super().__init__("A photo checked earlier could not be found again: choose it again.")


def missing_reasons() -> dict[str, str]:
    """The reason given for each eye not photographed, in words ("R" -> "the patient declined")."""
    chosen = {eye: request.form.get(f"missing_{eye}", "") for eye in ("R", "L")}
    return {eye: MISSING_REASONS.get(code, "") for eye, code in chosen.items()}


def capture_page(patient_id: int, *, retakes: list[Retake] | None = None, problem: str = "",
                 warnings: list[str] | None = None, status: int = 200) -> ResponseReturnValue:
    """The capture page, with what must be retaken, fixed or confirmed."""
    svc = services()
    patient = svc.store.get_patient(patient_id)
    audit("view_patient", patient_id=patient_id)
    held = kept.kept_images(patient_id)
    page = render_template(
        "capture.html", patient=patient, retakes=retakes or [], has_camera=svc.has_camera,
        sexes=words.SEXES, problem=problem, identity_warnings=warnings or [],
        kept=[(words.slot_title(k.laterality, k.kind), k.name) for k in held],
        missing_reasons=MISSING_REASONS, patient_history=svc.store.patient_history(patient_id),
        token=request.form.get("visit_token", "")[:64] or secrets.token_urlsafe(16),
    )
    return page, status


def gate_and_screen(patient_id: int, offered: list[Offered]) -> ResponseReturnValue:
    """Screen and record a visit once, or send the capture page back with what to do.

    The form's token is claimed in the store, so a second tap, another web worker or a
    restarted kiosk goes to the screening the first tap made (``kiosk.store.form_tokens``).
    """
    sent = request.form.get("visit_token", "")[:64]
    token = f"{patient_id}:{sent}" if sent else None
    db = services().store.db
    earlier = form_tokens.claim(db, token) if token else None
    if earlier is not None:
        return redirect(url_for("results.result", screening_id=earlier))
    screening_id = None
    try:
        answer, screening_id = _screen_visit(patient_id, offered, token)
    finally:
        if token and screening_id is None:  # sent back (or failed): the corrected form may use it
            form_tokens.release(db, token)
    return answer


def _screen_visit(patient_id: int, offered: list[Offered],
                  token: str | None) -> tuple[ResponseReturnValue, int | None]:
    """The visit's steps in the safety order; (the answer, the screening recorded if any)."""
    svc = services()
    patient = svc.store.get_patient(patient_id)  # NotFoundError before any work
    images = kept.merge(kept.kept_images(patient_id), offered)
    try:
        visit.require(images)
    except KioskError as exc:
        kept.keep(patient_id, [item for item in images if item.data])
        return capture_page(patient_id, problem=_problem(exc), status=422), None
    try:
        visit.require_complete(images, missing_reasons())
    except visit.IncompleteVisit as exc:  # the eye taken is gated now, so it is kept only if good
        return _incomplete(patient_id, images, _problem(exc)), None
    films = visit.known_films(svc.store, images, sender="web")
    if films.earlier:
        return _seen_before(patient_id, images, films), None
    screened = visit.screen(svc.pipeline, images, age=visit.age_years(patient.birth_date))
    needed = retakes(screened)
    if needed:
        failed = {r.index for r in needed}
        kept.keep(patient_id, [item for i, item in enumerate(images) if i not in failed])
        audit("capture_retake", patient_id=patient_id, detail="; ".join(r.line for r in needed))
        return capture_page(patient_id, retakes=needed, status=422), None
    warned = _identity(patient_id, screened)
    if warned is not None:
        return warned, None
    visit.note_missing(screened, missing_reasons())
    films.warn_conflicts(screened)
    screening = visit.record(svc.store, patient_id, screened, actor=current_user.username,
                             form_token=token, films=films.received)
    kept.forget(patient_id)
    return redirect(url_for("results.result", screening_id=screening.id)), screening.id


def _seen_before(patient_id: int, images: list[Offered], films: visit.Films) -> ResponseReturnValue:
    """Images screened before: their result when the visit is that screening's images alone and
    this patient's (a double upload); else the capture page says which image, and the other
    images stay kept."""
    store = services().store
    index, earlier = next(iter(films.earlier.items()))
    same_patient = store.get_screening(earlier).patient.id == patient_id
    audit("capture_film_seen_before", patient_id=patient_id,
          detail=f"{images[index].name}: screening {earlier}")
    if same_patient and len(films.earlier) == len(images) and set(films.earlier.values()) == {earlier}:
        kept.forget(patient_id)
        flash(_("This image was screened before: this is its result (screening %(id)s).",
                id=earlier), "info")
        return redirect(url_for("results.result", screening_id=earlier))
    kept.keep(patient_id, [item for i, item in enumerate(images) if i not in films.earlier])
    if same_patient:
        problem = _("The image %(name)s was screened before (screening %(id)s): open that result, "
                    "or take the image out of this visit.", name=images[index].name, id=earlier)
    else:
        problem = _("The image %(name)s was screened before for another patient (screening "
                    "%(id)s): check that the right image was chosen.", name=images[index].name,
                    id=earlier)
    return capture_page(patient_id, problem=problem, status=422)


def sent_back(patient_id: int, exc: KioskError) -> ResponseReturnValue:
    """The capture page again with what went wrong (what was kept stays kept)."""
    return capture_page(patient_id, problem=_problem(exc), status=422)


def _problem(exc: KioskError) -> str:
    """A refused visit's reason in the reader's language (by the error's code)."""
    return messages.error(exc.code, exc.message, exc.params)


def _incomplete(patient_id: int, images: list[Offered], message: str) -> ResponseReturnValue:
    """One eye without a reason for the other: retake it if it is bad, else keep it and ask."""
    needed = gate(services().pipeline, images)
    failed = {r.index for r in needed}
    kept.keep(patient_id, [item for i, item in enumerate(images) if i not in failed])
    if needed:
        return capture_page(patient_id, retakes=needed, status=422)
    return capture_page(patient_id, problem=message, status=422)


def _identity(patient_id: int, screened: Screened) -> ResponseReturnValue | None:
    """The capture page with the identity warnings until the nurse confirms them."""
    svc = services()
    patient = svc.store.get_patient(patient_id)
    inverted = svc.store.get_setting(checks.INVERTED_VIEW_SETTING) == "inverted"
    images = [per_image[0].image for per_image in screened.outcomes]
    found = checks.english_warnings(patient, screened.offered, images, inverted=inverted)
    if not found:
        return None
    if request.form.get("identity_checked") != "yes":
        kept.keep(patient_id, list(screened.offered))
        audit("capture_identity_warning", patient_id=patient_id, detail=" | ".join(found))
        return capture_page(patient_id, warnings=[messages.identity_warning(w) for w in found],
                            status=422)
    for result in screened.results:  # the confirmation travels with every result, in English
        result["warnings"].extend(kiosk_messages.say("identity_confirmed",
                                                     user=current_user.username, warning=line)
                                  for line in found)
    audit("capture_identity_confirmed", patient_id=patient_id, detail=" | ".join(found))
    return None
