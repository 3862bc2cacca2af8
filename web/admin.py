"""Admin: model bundles in use, device health, the clinic's prevalence, users, the audit log."""

from __future__ import annotations

import statistics
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from hardware.status import read_status
from kiosk import accounts
from kiosk.errors import KioskError
from web.security import audit, requires
from web.services import apply_prevalence, services

bp = Blueprint("admin", __name__, url_prefix="/admin")

#: Clinic settings the admin may change: name -> (Config field for the default, label).
PREVALENCE = {
    "prevalence_fundus_dr": "Referable diabetic retinopathy",
    "prevalence_cxr_pneumonia": "Pneumonia on chest films",
}


class AdminFormError(KioskError):
    """An admin form is incomplete or malformed."""

    code = "bad_admin_form"
    http_status = 400


@bp.get("/")
@requires("admin")
def index() -> ResponseReturnValue:
    """Models, prevalence and users on one page."""
    svc = services()
    try:
        models, model_error = svc.pipeline.describe(), None
    except KioskError as exc:
        models, model_error = [], exc.message
    return render_template(
        "admin.html",
        models=models,
        measured=_measured_today(svc.store.worklist()),
        model_error=model_error,
        prevalence=_prevalence(),
        users=svc.store.list_users(),
        roles=accounts.ROLES,
        device=read_status(svc.config),
    )


def _measured_today(screenings: list[Any]) -> dict[str, tuple[float, int]]:
    """Per model id: median milliseconds from upload to verdict today, and how many images."""
    times: dict[str, list[float]] = {}
    for screening in screenings:
        for result in screening.results:
            total = (result.get("timings_ms") or {}).get("total")
            if result.get("model") and total is not None and result.get("verdict"):
                times.setdefault(str(result["model"].get("id")), []).append(float(total))
    return {model: (statistics.median(ms), len(ms)) for model, ms in times.items()}


def _prevalence() -> list[dict[str, Any]]:
    """Each prevalence setting with its label and value in force."""
    svc = services()
    rows = []
    for name, label in PREVALENCE.items():
        default = str(getattr(svc.config, name))
        rows.append({"name": name, "label": label, "value": svc.store.get_setting(name, default)})
    return rows


@bp.post("/settings")
@requires("admin")
def settings() -> ResponseReturnValue:
    """Change the clinic's prevalence (used for PPV/NPV)."""
    store = services().store
    for name in PREVALENCE:
        raw = request.form.get(name, "").strip()
        if not raw:
            continue
        value = _percent_to_share(raw)
        store.set_setting(name, f"{value:.4f}", actor=current_user.username)
    svc = services()
    if svc.pipeline_loaded:
        apply_prevalence(svc.store, svc.pipeline)
    flash("Prevalence saved.", "info")
    return redirect(url_for("admin.index"))


def _percent_to_share(raw: str) -> float:
    """ "10" or "10%" -> 0.10, refusing values outside (0, 100)."""
    try:
        value = float(raw.rstrip("%").strip()) / 100.0
    except ValueError as exc:
        raise AdminFormError("Prevalence must be a number of percent, like 10.") from exc
    if not 0.0 < value < 1.0:
        raise AdminFormError("Prevalence must be between 0 and 100 percent.")
    return value


@bp.post("/users")
@requires("admin")
def add_user() -> ResponseReturnValue:
    """Create an account with a role and a first password (the store audits it, naming the admin)."""
    form = request.form
    role = form.get("role", "")
    username = accounts.create_user(services().store, form.get("username", ""),
                                    form.get("password", ""), role, actor=current_user.username)
    flash(f"User {username} ({role}) created.", "info")
    return redirect(url_for("admin.index"))


@bp.get("/audit")
@requires("admin")
def audit_log() -> ResponseReturnValue:
    """The audit log, searchable, with the result of the hash-chain check."""
    store = services().store
    query = request.args.get("q", "").strip()
    entries = store.audit_entries(query, limit=200)
    ok, first_bad = store.verify_audit()
    audit("view_audit", detail=f"q={query}")
    return render_template("audit.html", entries=entries, query=query, ok=ok, first_bad=first_bad)
