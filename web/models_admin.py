"""Admin: which bundle screens for staff, the candidates in shadow, promotion and rollback.

The page is the admin's view of docs/change-control.md: each task's installed bundles and their
roles, the shadow report of each candidate (against the active model and the clinicians), and
one button to promote a bundle or to roll back to the previous one. Every change is audited by
kiosk.lifecycle.models; the running pipeline loads the new lineup before the page answers.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from kiosk.errors import KioskError
from kiosk.lifecycle import models as lineup
from kiosk.lifecycle.shadow_report import report
from web.security import audit, requires
from web.services import services

bp = Blueprint("models_admin", __name__, url_prefix="/admin/models")


@bp.get("/")
@requires("admin")
def index() -> ResponseReturnValue:
    """Per task: the installed bundles and their roles, and each candidate's shadow report."""
    svc = services()
    current = lineup.survey(svc.config, svc.store)
    audit("view_models", detail=f"tasks={','.join(sorted(current.installed))}")
    return render_template("models_admin.html", tasks=_tasks(current),
                           reports=report(svc.store, current), notes=current.notes,
                           refused=current.refused)


def _tasks(current: lineup.Lineup) -> list[dict[str, Any]]:
    """One row per task: its bundles (newest first) with their role, and its rollback target."""
    rows = []
    for task, bundles in sorted(current.installed.items()):
        recorded = current.recorded.get(task)
        rows.append({"task": task, "previous": recorded.previous if recorded else None,
                     "bundles": [{"version": b.version, "sha256": b.sha256, "key_id": b.key_id,
                                  "path": b.path.name, "role": current.role(b)} for b in bundles]})
    return rows


@bp.post("/promote")
@requires("admin")
def promote() -> ResponseReturnValue:
    """Make an installed bundle the active one for its task (audited), then load it."""
    svc = services()
    task, version = request.form.get("task", ""), request.form.get("version", "")
    lineup.promote(svc.config, svc.store, task, version, actor=current_user.username)
    _reload()
    flash(_("%(task)s %(version)s is now the active model.", task=task, version=version), "info")
    return redirect(url_for("models_admin.index"))


@bp.post("/rollback")
@requires("admin")
def rollback() -> ResponseReturnValue:
    """Make the task's previous bundle active again (audited), then load it."""
    svc = services()
    task = request.form.get("task", "")
    after = lineup.rollback(svc.config, svc.store, task, actor=current_user.username)
    _reload()
    flash(_("%(task)s rolled back to %(version)s.", task=task,
            version=after.recorded[task].active.version), "info")
    return redirect(url_for("models_admin.index"))


def _reload() -> None:
    """Load the new lineup now, so the next screening does not wait for it (failures are shown
    on the admin page, as at start-up)."""
    try:
        services().pipeline  # noqa: B018 - the lazy pipeline reloads when the lineup changed
    except KioskError as exc:
        flash(exc.message, "error")
