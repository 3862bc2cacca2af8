"""Today's screenings by triage priority, and the clinician's sign-off."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from kiosk.errors import KioskError
from web.results import patient_of
from web.security import audit, requires
from web.services import services

bp = Blueprint("worklist", __name__)

VERDICTS = ("referable", "non_referable", "ungradable")


class SignOffError(KioskError):
    """The sign-off form is incomplete."""

    code = "bad_sign_off"
    http_status = 400


@bp.get("/worklist")
def worklist() -> ResponseReturnValue:
    """Today's screenings, urgent chest findings first, with the time each has waited."""
    day_text = request.args.get("day", "")
    try:
        day = date.fromisoformat(day_text) if day_text else None
    except ValueError:
        day = None
    screenings = services().store.worklist(day)
    rows = [(s, patient_of(s)) for s in screenings]
    audit("view_worklist", detail=f"day={day or 'today'} rows={len(rows)}")
    return render_template("worklist.html", rows=rows, day=day or date.today())


@bp.post("/screenings/<int:screening_id>/sign-off")
@requires("clinician")
def sign_off(screening_id: int) -> ResponseReturnValue:
    """Confirm or overrule the verdict, with a note; stored and sent on by sync."""
    decision = request.form.get("decision", "")
    note = request.form.get("note", "").strip()
    verdict = request.form.get("verdict") or None
    if decision not in ("confirm", "overrule"):
        raise SignOffError("Choose Confirm or Overrule.")
    if decision == "overrule" and (verdict not in VERDICTS or not note):
        raise SignOffError("To overrule, choose the right verdict and write why in the note.")
    services().store.sign_off(  # the store audits the sign-off
        screening_id,
        clinician=current_user.username,
        decision=decision,
        note=note[:2000],
        verdict=verdict if decision == "overrule" else None,
    )
    flash("Sign-off saved; it will be sent with the next sync.", "info")
    return redirect(url_for("results.result", screening_id=screening_id))
