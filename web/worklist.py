"""Today's screenings by triage priority, and the clinician's sign-off."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from kiosk.errors import AlreadySignedError, SignOffError
from web import words
from web.results import patient_of, result_page
from web.security import audit, requires
from web.services import services
from web.words import N_

bp = Blueprint("worklist", __name__)

#: The worklist's filter by state: what a row must be to be shown.
STATES = {"": N_("Everything"), "waiting": N_("Waiting for a clinician"), "refer": N_("Refer"),
          "clear": N_("No referral needed"), "read": N_("A clinician must read"),
          "signed": N_("Signed off")}


@bp.get("/worklist")
def worklist() -> ResponseReturnValue:
    """A day's screenings, urgent first, with the time each has waited; filtered by state."""
    day_text = request.args.get("day", "")
    try:
        day = date.fromisoformat(day_text) if day_text else None
    except ValueError:
        day = None
    state = request.args.get("state", "") if request.args.get("state", "") in STATES else ""
    screenings = [s for s in services().store.worklist(day) if _in_state(s, state)]
    rows = [(s, patient_of(s)) for s in screenings]
    audit("view_worklist", detail=f"day={day or 'today'} state={state or 'all'} rows={len(rows)}")
    return render_template("worklist.html", rows=rows, day=day or date.today(), state=state,
                           states=STATES)


def _in_state(screening: Any, state: str) -> bool:
    """Whether a screening belongs under the chosen state (the clinician's verdict counts)."""
    if state == "waiting":
        return screening.sign_off is None
    if state == "signed":
        return screening.sign_off is not None
    if state:
        final = words.final_verdict(screening)
        return words.tone(final, screening.results) == state
    return True


@bp.post("/screenings/<int:screening_id>/sign-off")
@requires("clinician")
def sign_off(screening_id: int) -> ResponseReturnValue:
    """Confirm or overrule the verdict, with a note; stored and sent on by sync."""
    decision = request.form.get("decision", "")
    note = request.form.get("note", "").strip()
    verdict = request.form.get("verdict") or None
    try:
        services().store.sign_off(  # the store checks the sign-off rule and audits it
            screening_id,
            clinician=current_user.username,
            decision=decision,
            note=note[:2000],
            verdict=verdict if decision == "overrule" else None,
        )
    except (SignOffError, AlreadySignedError) as exc:  # shown in place, what was typed kept
        return result_page(screening_id, sign_error=exc.message, sign_form=request.form,
                           status=exc.http_status)
    flash(_("Sign-off saved; it will be sent with the next sync."), "info")
    return redirect(url_for("results.result", screening_id=screening_id))
