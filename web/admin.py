"""Admin: model bundles in use, device health, the clinic's prevalence, users, the audit log."""

from __future__ import annotations

import statistics
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from hardware.status import read_status
from kiosk import accounts
from kiosk.errors import KioskError, NotFoundError
from kiosk.visit import apply_settings, setting_name
from web.security import (
    SessionUser,
    audit,
    disabled_setting,
    end_sessions,
    is_disabled,
    requires,
)
from web.services import services

bp = Blueprint("admin", __name__, url_prefix="/admin")

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
        tasks=_task_settings(),
        users=svc.store.list_users(),
        disabled={u.id for u in svc.store.list_users() if is_disabled(int(u.id))},
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


def _task_settings() -> list[dict[str, Any]]:
    """Per loaded task: its title, the prevalence and the operating point in force, the choices."""
    svc = services()
    try:
        pipeline = svc.pipeline
    except KioskError:
        return []
    return [{"task": task, "title": pipeline.task(task).title,
             "prevalence_name": setting_name("prevalence", task),
             "prevalence": pipeline.prevalence(task),
             "point_name": setting_name("operating_point", task),
             "point": pipeline.operating_point(task), "points": pipeline.operating_points(task)}
            for task in pipeline.tasks()]


@bp.post("/settings")
@requires("admin")
def settings() -> ResponseReturnValue:
    """Change a task's prevalence (used for PPV/NPV) or its operating point; audited."""
    svc = services()
    for row in _task_settings():
        raw = request.form.get(row["prevalence_name"], "").strip()
        if raw:
            value = _percent_to_share(raw)
            svc.store.set_setting(row["prevalence_name"], f"{value:.4f}", actor=current_user.username)
        point = request.form.get(row["point_name"], "").strip()
        if point and point != row["point"]:
            if point not in row["points"]:
                raise AdminFormError(_("%(title)s has no operating point %(point)s.",
                                       title=row["title"], point=point))
            svc.store.set_setting(row["point_name"], point, actor=current_user.username)
    if svc.pipeline_loaded:
        apply_settings(svc.store, svc.pipeline)
    flash(_("Settings saved."), "info")
    return redirect(url_for("admin.index"))


def _percent_to_share(raw: str) -> float:
    """ "10" or "10%" -> 0.10, refusing values outside (0, 100)."""
    try:
        value = float(raw.rstrip("%").strip()) / 100.0
    except ValueError as exc:
        raise AdminFormError(_("Prevalence must be a number of percent, like 10.")) from exc
    if not 0.0 < value < 1.0:
        raise AdminFormError(_("Prevalence must be between 0 and 100 percent."))
    return value


@bp.post("/users")
@requires("admin")
def add_user() -> ResponseReturnValue:
    """Create an account with a role and a first password (the store audits it, naming the admin)."""
    form = request.form
    role = form.get("role", "")
    username = accounts.create_user(services().store, form.get("username", ""),
                                    form.get("password", ""), role, actor=current_user.username)
    flash(_("User %(user)s (%(role)s) created.", user=username, role=role), "info")
    return redirect(url_for("admin.index"))


@bp.post("/users/<username>/password")
@requires("admin")
def reset_password(username: str) -> ResponseReturnValue:
    """Give a user a new password (they forgot theirs); their open sessions and token end."""
    store = services().store
    user = _user(username)
    accounts.set_password(store, user.username, request.form.get("password", ""))
    end_sessions(SessionUser.from_store(user))
    audit("user.password_reset", detail=f"{user.username} by {current_user.username}")
    flash(_("New password set for %(user)s; their sessions were ended.", user=user.username),
          "info")
    return redirect(url_for("admin.index"))


@bp.post("/users/<username>/<any(disable, enable):change>")
@requires("admin")
def disable_user(username: str, change: str) -> ResponseReturnValue:
    """Disable an account (no log-in, sessions and token end at once) or enable it again."""
    user = _user(username)
    if user.username == current_user.username:
        raise AdminFormError(_("You cannot disable your own account."))
    store = services().store
    store.set_setting(disabled_setting(int(user.id)), "1" if change == "disable" else "0",
                      actor=current_user.username)
    end_sessions(SessionUser.from_store(user))
    audit(f"user.{change}", detail=f"{user.username} by {current_user.username}")
    flash(_("%(user)s is disabled.", user=user.username) if change == "disable"
          else _("%(user)s is enabled again.", user=user.username), "info")
    return redirect(url_for("admin.index"))


def _user(username: str) -> Any:
    """The store user of this name (NotFoundError when absent)."""
    user = services().store.get_user(username)
    if user is None:
        raise NotFoundError(_("No user named %(user)s.", user=username))
    return user


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
