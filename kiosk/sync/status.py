"""The sync status as the web app and ``kiosk sync --status`` show it."""

from __future__ import annotations

from datetime import datetime, timezone

from kiosk.store import Store
from kiosk.sync.base import error_kind

UTC = timezone.utc  # datetime.UTC is Python 3.11+; JetPack 6 runs 3.10


def sync_status(store: Store) -> dict:
    """JSON-ready: per destination queue depth, oldest item's age, last error and its kind
    (unreachable, rejected_transient, rejected_permanent, status_failure, refused), parked
    items with the peer's words."""
    now = datetime.now(UTC)
    destinations = []
    for entry in store.outbox_status():
        destinations.append({
            "destination": entry.destination, "waiting": entry.waiting,
            "oldest_age_s": round((now - entry.oldest).total_seconds()) if entry.oldest else None,
            "last_error": entry.last_error, "last_error_kind": error_kind(entry.last_error),
            "parked": entry.parked, "sent": entry.sent,
            "last_sent": entry.last_sent.isoformat() if entry.last_sent else None,
        })
    parked = [{"id": item.id, "destination": item.destination, "screening_id": item.screening_id,
               "fleet_report_id": item.fleet_report_id,
               "report_status": item.report_status, "error": item.last_error,
               "kind": error_kind(item.last_error),
               "attempts": item.attempts} for item in store.parked_items()]
    return {"destinations": destinations, "parked": parked,
            "waiting": sum(d["waiting"] for d in destinations)}
