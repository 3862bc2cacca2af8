"""Registering an id that already exists: never a silent rename.

Another name, birth date or sex for a registered id is either refused (the patient has signed
results, which are never rewritten) or needs the user to confirm the change on purpose; the
confirmed change is audited with the old and the new values.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from kiosk.store import Patient
from web import words
from web.security import audit
from web.services import services
from web.words import N_

LABELS = {"name": N_("name"), "birth_date": N_("birth date"), "sex": N_("sex")}


def existing(identifier: str) -> Patient | None:
    """The patient already registered under exactly this id, if any."""
    found = services().store.find_patients(identifier, limit=50)
    return next((p for p in found if p.identifier == identifier), None)


def changes(patient: Patient, fields: Mapping[str, str | None]) -> list[tuple[str, str, str]]:
    """(what, old, new) for each field the form would change on a registered patient."""
    found = []
    for key, new in fields.items():
        old = getattr(patient, key, None)
        if (old or None) != (new or None):
            found.append((LABELS.get(key, key), str(old or "-"), str(new or "-")))
    return found


def reregistration(identifier: str, fields: Mapping[str, str | None]) -> ResponseReturnValue | None:
    """None when the form may register or update; else the page that refuses or asks."""
    found = clash(identifier, fields, request.form.get("confirm_change"))
    if found is None:
        return None
    patient, changed, refused = found
    return _page(patient, changed, refused=refused), 409


def clash(identifier: str, fields: Mapping[str, str | None], confirmed: str | None
          ) -> tuple[Patient, list[tuple[str, str, str]], bool] | None:
    """(patient, changes, refused?) when registering would change a registered patient without
    a confirmation naming its id, or at all when it has signed results; None when it may go on
    (a confirmed change is audited here)."""
    patient = existing(identifier)
    changed = changes(patient, fields) if patient is not None else []
    if patient is None or not changed:
        return None
    summary = "; ".join(f"{what}: {old} -> {new}" for what, old, new in changed)
    if services().store.signed_screenings(patient.id):
        audit("patient.change_refused", patient_id=patient.id, detail=summary)
        return patient, changed, True
    if confirmed != identifier:
        return patient, changed, False
    audit("patient.change_confirmed", patient_id=patient.id,
          detail=f"by {current_user.username}: {summary}")
    return None


def _page(patient: Patient, changed: list[tuple[str, str, str]], *, refused: bool) -> str:
    """The registration page with the clash explained, and a confirmation when allowed."""
    return render_template("patients.html", query="", found=[], sexes=words.SEXES,
                           form=request.form, clash={"patient": patient, "changes": changed,
                                                     "refused": refused})
