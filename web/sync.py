"""Sync status: queue depth per destination, oldest waiting, last error, parked items."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from kiosk.sync.base import error_kind
from web.security import audit, requires
from web.services import services

bp = Blueprint("sync", __name__)

#: How the page names each kind of failure (kiosk.sync.base.error_kind).
KIND_LABELS = {"unreachable": "not reachable (retried)",
               "rejected_transient": "rejected for now (retried)",
               "rejected_permanent": "rejected permanently (parked until fixed)",
               "status_failure": "failure status (parked)",
               "in_doubt": "in doubt after a crash (parked: check the receiver)",
               "refused": "refused (parked)", "other": "error"}


@bp.get("/sync")
def status() -> ResponseReturnValue:
    """The outbox per destination and the parked items."""
    store = services().store
    audit("view_sync")
    return render_template(
        "sync.html", destinations=store.outbox_status(), parked=store.parked_items(),
        kind_words=KIND_LABELS, error_kind=error_kind,
    )


@bp.post("/sync/items/<int:item_id>/retry")
@requires("admin", "clinician")
def retry(item_id: int) -> ResponseReturnValue:
    """Put a parked item back in the queue."""
    services().store.retry_item(item_id, actor=current_user.username)  # the store audits it
    flash(_("The item is back in the queue."), "info")
    return redirect(url_for("sync.status"))
