"""Is this the right patient and the right eye? What can be checked before screening.

An eye photograph's optic disc tells which eye it is (``kiosk.pixels.disc``); a DICOM file's own
header names a patient id, an age and a sex. Each mismatch with the registered patient or with
the slot is a warning the nurse must look at and confirm (the confirmation is audited and kept
with the results); none is a refusal, since the header or the disc finder may be wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from flask_babel import force_locale
from flask_babel import gettext as _

from kiosk.domain import Image
from kiosk.intake.dicom import age_in_years
from kiosk.pixels.disc import disc_side
from kiosk.store import Patient
from kiosk.visit import Offered, age_years
from web.i18n import N_

#: The clinic's fundus camera shows the eye as through a condensing lens (set by the admin).
INVERTED_VIEW_SETTING = "fundus_camera_view"
EYES = {"R": "right", "L": "left"}
SEX_CODES = {"F": N_("female"), "M": N_("male"), "O": N_("other")}

LEFT_IN_RIGHT = N_("The photo in the right-eye slot (%(name)s) looks like a LEFT eye: its optic "
                   "disc (the bright spot) is on the %(side)s. Check which eye you photographed "
                   "and put it in the left-eye slot if so.")
RIGHT_IN_LEFT = N_("The photo in the left-eye slot (%(name)s) looks like a RIGHT eye: its optic "
                   "disc (the bright spot) is on the %(side)s. Check which eye you photographed "
                   "and put it in the right-eye slot if so.")
OTHER_ID = N_("The file %(name)s is of patient id %(theirs)s, not %(ours)s. Check that it is "
              "this patient's film.")
OTHER_AGE = N_("The file %(name)s says the patient was %(theirs)d years old; the record's birth "
               "date makes them %(ours)d. Check the birth date.")
OTHER_SEX = N_("The file %(name)s says the patient is %(theirs)s; the record says %(ours)s. "
               "Check that it is this patient's film.")
#: Every identity warning's template (web/messages.py reads a kept English one back).
TEMPLATES = [LEFT_IN_RIGHT, RIGHT_IN_LEFT, OTHER_ID, OTHER_AGE, OTHER_SEX]


def english_warnings(patient: Patient, offered: Sequence[Offered],
                     images: Sequence[Image | None], *, inverted: bool = False) -> list[str]:
    """The identity warnings in English, as they are kept with the results (which stay English
    for the store and every destination; pages translate them back by their template)."""
    with force_locale("en"):
        return warnings_for(patient, offered, images, inverted=inverted)


def warnings_for(patient: Patient, offered: Sequence[Offered], images: Sequence[Image | None],
                 *, inverted: bool = False) -> list[str]:
    """Every identity warning of a visit's images, in the nurse's words."""
    found: list[str] = []
    for item, image in zip(offered, images, strict=True):
        if image is None:
            continue
        found += eye_warnings(item, image, inverted=inverted)
        found += header_warnings(patient, item.name, image.meta)
    return found


def eye_warnings(item: Offered, image: Image, *, inverted: bool = False) -> list[str]:
    """A photo in one eye's slot whose optic disc says it is the other eye."""
    if item.laterality not in EYES or image.pixels.ndim != 3:
        return []
    seen = disc_side(image.pixels).eye(inverted)
    if seen is None or seen == item.laterality:
        return []
    template = LEFT_IN_RIGHT if seen == "L" else RIGHT_IN_LEFT
    return [_(template, name=item.name, side=_disc_words(seen, inverted))]


def _disc_words(eye: str, inverted: bool) -> str:
    """Where the disc of this eye lies in a photograph of this camera's view."""
    right_side = (eye == "R") != inverted
    return _("right side") if right_side else _("left side")


def header_warnings(patient: Patient, name: str, meta: dict[str, str]) -> list[str]:
    """A DICOM file whose own patient id, age or sex disagrees with the registered patient."""
    if meta.get("format") != "dicom":
        return []
    found = []
    their_id = meta.get("patient_id", "").strip()
    if their_id and their_id.casefold() != patient.identifier.strip().casefold():
        found.append(_(OTHER_ID, name=name, theirs=their_id, ours=patient.identifier))
    their_age, our_age = _their_age(meta), _age_then(patient, meta)
    if their_age is not None and our_age is not None and abs(int(their_age) - int(our_age)) > 1:
        found.append(_(OTHER_AGE, name=name, theirs=int(their_age), ours=int(our_age)))
    their_sex = SEX_CODES.get(meta.get("patient_sex", "").strip().upper())
    if their_sex and patient.sex in ("female", "male") and their_sex != patient.sex:
        found.append(_(OTHER_SEX, name=name, theirs=_(their_sex), ours=_(str(patient.sex))))
    return found


def _their_age(meta: dict[str, str]) -> float | None:
    """The file's age of the patient; a bare number (no unit, as some exporters write) is years."""
    stated = age_in_years(meta)
    bare = meta.get("patient_age", "").strip()
    return float(bare) if stated is None and bare.isdigit() else stated


def _age_then(patient: Patient, meta: dict[str, str]) -> float | None:
    """The record's age of the patient on the film's study date (today when it has none, or a
    date before the birth: anonymised films are often dated 1901)."""
    study = meta.get("study_date", "") or meta.get("acquisition_date", "")
    try:
        seen = date(int(study[:4]), int(study[4:6]), int(study[6:8])) if len(study) >= 8 else None
    except ValueError:
        seen = None
    then = age_years(patient.birth_date, seen)
    return then if then is not None and then >= 0 else age_years(patient.birth_date)
