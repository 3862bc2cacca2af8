"""What the kiosk says below web/ (quality reasons, result warnings, errors), in the reader's
language, by code.

The kiosk cannot use the catalogues (it never imports Flask or Babel) and its results stay English
for the store, FHIR, HL7 and SR. Each message it makes has a stable code: a quality reason and an
error carry theirs, a warning's is read back from its sentence (``kiosk.messages.read``). Here
each code has its words, marked for the catalogues; an unknown code or sentence is shown in the
kiosk's English, never dropped. tests/test_web_messages.py fails when a code made below web/ has
no entry here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask_babel import gettext as _

from kiosk import messages
from kiosk.quality.chest import REASONS as CHEST_REASONS
from web import checks
from web.i18n import N_

#: Quality reasons by code (kiosk/quality): what is wrong with the picture and what to do.
QUALITY = {
    "no_field_of_view": N_("No retina found in the picture: aim the camera at the pupil and "
                           "retake (is this a fundus photograph?)."),
    "off_centre": N_("The retina is not centred in the picture: centre the pupil and retake."),
    "field_of_view_small": N_("The retina fills too little of the picture: move the camera "
                              "closer or dilate the pupil, and retake."),
    "blurred": N_("The photograph is out of focus: refocus the camera on the retina and retake."),
    "too_dark": N_("The photograph is too dark: check the flash and the pupil size, and retake."),
    "washed_out": N_("The photograph is washed out (too bright or hazy): lower the flash, check "
                     "for reflections and retake."),
    "not_a_fundus_photo": N_("This is a grey picture, not a colour fundus photograph: check the "
                             "right image was chosen."),
    "inverted": N_("The film looks inverted (bones dark, lungs bright): check the export "
                   "settings of the X-ray unit and send it again."),
    "rotated": N_("The film is turned on its side (the head is at the %(side)s of the picture): "
                  "turn it so the head is at the top and send it again."),
    "upside_down": N_("The film is upside down (the head is at the bottom of the picture): send "
                      "it with the head at the top."),
    "not_a_chest": N_("This does not look like a frontal chest film (it may be another body "
                      "part, a photograph, or only part of a film): check the right image was "
                      "chosen."),
    "mostly_blank": N_("Most of the film is blank: check the exposure and collimation, and "
                       "retake."),
    "clipped": N_("Much of the film is burnt out or clipped to black/white: check the exposure "
                  "and retake."),
    "low_contrast": N_("The film has too little contrast to read (under- or over-exposed): check "
                       "the exposure settings and retake."),
    "film_blurred": N_("The film is blurred, or is a small copy enlarged (too little fine detail "
                       "to read): send the original film from the X-ray unit, or retake it."),
}
SIDES = {"left": N_("left"), "right": N_("right")}

#: Result warnings by code (kiosk/messages.py TEMPLATES), with the same parameters.
WARNINGS = {
    "outside_population_years": N_(
        "This model was trained on %(population)s; this patient is %(years)s years old. Its "
        "result is not reliable for this patient: a clinician must read the image."),
    "outside_population_months": N_(
        "This model was trained on %(population)s; this patient is %(months)s months old. Its "
        "result is not reliable for this patient: a clinician must read the image."),
    "other_kind": N_("The image is %(found)s, not %(expected)s: screened with %(tasks)s."),
    "age_unknown": N_("The patient's age is not known, so both models were run (%(titles)s); "
                      "give the age for an answer from the right one."),
    "eye_not_photographed": N_("%(eye)s not photographed: %(reason)s"),
    "uid_reused": N_(
        "This film's SOP Instance UID %(uid)s was screened before with different pixels "
        "(screening %(earlier)s): the sender reused the UID for another image. It was screened "
        "as a new film; check which image the earlier result is about."),
    "identity_confirmed": N_("Checked by %(user)s: %(warning)s"),
}
#: Words inside the warnings' parameters that are themselves translated.
PARAMETER_WORDS = [N_("a fundus photograph"), N_("a chest film")]
#: The shipped models' own words (models/*/manifest.json: title, population, findings): data of
#: the bundle, shown through ``model_word`` so a shipped model speaks the reader's language; a
#: third party's words are shown as its manifest gives them.
MODEL_WORDS = [
    N_("Eye photograph (diabetic retinopathy)"), N_("Chest X-ray (adults)"),
    N_("Chest X-ray (children)"),
    N_("adults with diabetes (EyePACS screening programme, USA)"),
    N_("adults (18 and over) from one US hospital (NIH Clinical Center)"),
    N_("children aged 1-5 from one hospital in Guangzhou"),
    N_("Referable diabetic retinopathy (moderate NPDR or worse)"),
    N_("Pneumonia or other abnormality on an adult chest film"),
    N_("Pneumonia (consolidation on a chest film)"),
]
#: Parameters whose value is a word of the catalogues (eye, kind, reason), not a name or a number.
WORD_PARAMETERS = {"eye", "found", "expected", "reason", "side", "theirs", "ours", "population"}

_IT = N_("Something in the kiosk itself failed: try again, and call your IT contact if it "
         "happens again.")
_STORE = N_("The kiosk could not save or read its records: nothing was lost from earlier "
            "screenings. Try again, and call your IT contact if it happens again.")
_DAMAGED = N_("The file is damaged or was not copied completely: copy it again.")
_NOT_SCREENABLE = N_("This kind of file cannot be screened here: choose the eye photograph or "
                     "the chest X-ray itself.")
_SEND = N_("The result could not be sent now: the kiosk keeps it and tries again.")
_MODEL = N_("No screening model is ready on this kiosk: ask your IT contact.")
_FORM = N_("Something in the form is not right: check it and send it again.")

#: Errors by code (kiosk/errors.py and every ``code=`` below web/), in words to act on.
ERRORS = {
    "decompression_bomb": N_("The picture is far larger than any camera makes: use the camera's "
                             "own export."),
    "too_large": N_("The file is too large to screen: export a smaller copy from the camera."),
    "not_an_image": N_("This file is not a photograph or an X-ray: choose the image file itself."),
    "truncated": _DAMAGED, "corrupt": _DAMAGED, "decode_failed": _DAMAGED,
    "decode_timeout": _DAMAGED,
    "empty_image": N_("The file is empty: choose the photograph again."),
    "no_image": N_("Choose a photograph or an X-ray first."),
    "checked_photo_lost": N_("A photo checked earlier could not be found again: choose it again."),
    "unsupported_transfer_syntax": N_("This X-ray file is compressed in a way the kiosk cannot "
                                      "read: send it uncompressed from the X-ray machine."),
    "unsupported_photometric": N_("The kiosk cannot read this X-ray's pixel format."),
    "unsupported_bit_depth": N_("The kiosk cannot read this X-ray's pixel format."),
    "unsupported_pixel_data": _NOT_SCREENABLE, "unsupported_modality": _NOT_SCREENABLE,
    "photometric_mismatch": N_("The X-ray's file says something its pixels do not: ask for a new "
                               "export from the X-ray machine."),
    "bad_dimensions": N_("The picture is too small or oddly shaped to screen."),
    "wrong_body_part": N_("This X-ray is not of the chest."),
    "unknown_task": N_("The kiosk cannot tell what this image is: put it in the right slot."),
    "codec_missing": N_("This kiosk cannot decode this kind of file yet: ask your IT contact to "
                        "run the kiosk's check."),
    "decoder_unavailable": _IT, "intake_error": _NOT_SCREENABLE,
    "quality_error": N_("The kiosk could not judge this picture: choose it again."),
    "chest_check_missing": _IT, "chest_check_mismatch": _IT,
    "incomplete_visit": N_("Photograph both eyes, or say why an eye cannot be photographed."),
    "no_model": _MODEL, "bundle_error": _MODEL, "engine_error": _MODEL,
    "already_installed": N_("This model version is installed already: a changed model needs a "
                            "new version."),
    "change_refused": N_("This model change is not allowed: see the reason on the models page."),
    "already_signed": N_("This screening is signed off already: a signed result is never "
                         "changed."),
    "bad_sign_off": N_("The sign-off is not complete: choose a decision, and a verdict when you "
                       "overrule."),
    "not_found": N_("This record does not exist (any more)."),
    "auth_error": N_("Log in to do this, with an account allowed to."),
    "auth": N_("The destination refused the kiosk's log-in: ask your IT contact."),
    "bad_account": _FORM, "bad_role": _FORM, "bad_user_name": N_(
        "User names are letters and digits (with . or -)."),
    "user_exists": N_("A user with this name exists already."),
    "weak_password": N_("The password is too short: use at least 10 characters."),
    "password_mismatch": N_("The two passwords differ."),
    "bad_patient": N_("A patient needs an id and a name."),
    "bad_screening": _IT, "bad_suffix": _NOT_SCREENABLE, "bad_setting": _FORM,
    "bad_arguments": _FORM, "bad_outcome": _FORM, "bad_period": _FORM,
    "validation_error": _FORM, "already_applied": N_("This has been applied already."),
    "period_open": N_("This period has not ended yet: report it when it has."),
    "config_error": _IT, "kiosk_error": _IT, "not_configured": _IT,
    "disk_full": N_("The kiosk's disk is full: nothing was saved. Ask your IT contact to free "
                    "some space."),
    "store_error": _STORE, "store_busy": _STORE, "store_unsafe": _STORE, "store_too_new": _STORE,
    "sync_error": _SEND, "unreachable": _SEND, "rejected": _SEND, "rejected_transient": _SEND,
    "journal": _SEND, "spool": _SEND, "sync_busy": _SEND, "not_parked": N_(
        "This item is not waiting for a retry."),
    "no_fleet_destination": N_("No destination takes the kiosk's reports: ask your IT contact."),
}
#: When a code is not in the table (a new one): what to say, with the kiosk's own words after.
UNKNOWN_ERROR = N_("The kiosk could not do this: %(detail)s")
#: The eyes an incomplete visit lacks (IncompleteVisit's "eyes" parameter).
MISSING_EYES = {
    "R": N_("Photograph the right eye too, or say why it cannot be photographed."),
    "L": N_("Photograph the left eye too, or say why it cannot be photographed."),
    "RL": N_("Photograph both eyes, or say why an eye cannot be photographed."),
}


def quality_reason(reason: Mapping[str, Any]) -> str:
    """A quality reason ({"code", "message"}) in the reader's language."""
    code, english = str(reason.get("code", "")), str(reason.get("message", ""))
    if code not in QUALITY:
        return english or code
    params = messages.parse(CHEST_REASONS[code], english) if code in CHEST_REASONS else {}
    if params is None:  # an older wording: the kiosk's sentence as it was kept
        return english
    side = params.get("side", "")
    return _(QUALITY[code], side=_(SIDES[side]) if side in SIDES else side)


def warning(text: str) -> str:
    """A result's warning in the reader's language (as kept when it is none of the codes)."""
    found = messages.read(text)
    if found is None:
        return identity_warning(text)
    code, params = found
    if code not in WARNINGS:
        return text
    shown = {name: _word(name, value) for name, value in params.items()}
    if code == "identity_confirmed":
        shown["warning"] = identity_warning(params["warning"])
    return _(WARNINGS[code], **shown)


def identity_warning(text: str) -> str:
    """An identity warning kept in English (web/checks.py) in the reader's language."""
    for template in checks.TEMPLATES:
        params = messages.parse(_as_format(template), text)
        if params is not None:
            numbers = set(re.findall(r"%\((\w+)\)d", template))
            return _(template, **{name: int(value) if name in numbers and value.lstrip("-").isdigit()
                                  else _word(name, value) for name, value in params.items()})
    return text


def error(code: str, english: str = "", params: Mapping[str, str] | None = None) -> str:
    """An error in the reader's language by its code; unknown codes keep the kiosk's words."""
    if code == "incomplete_visit" and (params or {}).get("eyes") in MISSING_EYES:
        return _(MISSING_EYES[str((params or {})["eyes"])])
    if code == "empty_image" and (params or {}).get("name"):
        return _(ERRORS[code]) + f" ({(params or {})['name']})"
    if code in ERRORS:
        return _(ERRORS[code])
    return _(UNKNOWN_ERROR, detail=english or code)


def result_error(result: Mapping[str, Any]) -> str:
    """Why a result's image was refused, in the reader's language."""
    refused = result.get("error") or {}
    if not isinstance(refused, Mapping):
        return str(refused)
    return error(str(refused.get("code", "")), str(refused.get("message", "")))


def model_word(text: str) -> str:
    """A model's own word (title, population, finding) in the reader's language when it is one
    of the shipped models' (MODEL_WORDS), else as the manifest gives it."""
    return _(text) if text else text


def _word(name: str, value: str) -> str:
    """A parameter's value, translated when it is one of the catalogue's words."""
    if name in WORD_PARAMETERS and value and not value.isdigit():
        return _(value)
    return value


def _as_format(template: str) -> str:
    """A gettext %-template as a str.format template ("%(name)s" -> "{name}")."""
    escaped = template.replace("{", "{{").replace("}", "}}")
    return re.sub(r"%\((\w+)\)[sd]", r"{\1}", escaped)
