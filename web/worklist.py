"""Today's screenings by triage priority, and the clinician's sign-off."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from web.results import patient_of
from web.security import audit, requires
from web.services import services

bp = Blueprint("worklist", __name__)

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
    services().store.sign_off(  # the store checks the sign-off rule and audits it
        screening_id,
        clinician=current_user.username,
        decision=decision,
        note=note[:2000],
        verdict=verdict if decision == "overrule" else None,
    )
    flash("Sign-off saved; it will be sent with the next sync.", "info")
    return redirect(url_for("results.result", screening_id=screening_id))
