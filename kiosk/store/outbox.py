"""The outbox: one item per (screening, destination, report status), written with the result.

The idempotency key is fixed when the item is written, so every retry of an item carries the
same key (FHIR identifier, HL7 MSH-10, DICOM SOP Instance UID are all derived from it).
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone

from kiosk.destinations import configured_destinations  # noqa: F401  (Store.__init__ asks here)
from kiosk.errors import NotFoundError, StoreError
from kiosk.store.db import from_text, to_text, utc_now
from kiosk.store.models import DestinationStatus, OutboxItem

UTC = timezone.utc  # datetime.UTC is Python 3.11+; JetPack 6 runs 3.10

def idempotency_key(screening_uid: str, destination: str, report_status: str) -> str:
    """The key that identifies one message to one destination across every retry."""
    return f"{screening_uid}.{destination}.{report_status}"


def enqueue(conn: sqlite3.Connection, screening_id: int, screening_uid: str,
            destinations: list[str], report_status: str) -> None:
    """Add one waiting item per destination inside the caller's transaction."""
    now = to_text(utc_now())
    for destination in destinations:
        conn.execute(
            "INSERT INTO outbox (screening_id, destination, report_status, idempotency_key,"
            " next_attempt, created) VALUES (?, ?, ?, ?, ?, ?)",
            (screening_id, destination, report_status,
             idempotency_key(screening_uid, destination, report_status), time.time(), now),
        )


def item_from_row(row: sqlite3.Row) -> OutboxItem:
    """An OutboxItem from its row."""
    return OutboxItem(
        id=row["id"], screening_id=row["screening_id"], destination=row["destination"],
        report_status=row["report_status"], idempotency_key=row["idempotency_key"],
        state=row["state"], attempts=row["attempts"],
        next_attempt=datetime.fromtimestamp(row["next_attempt"], UTC),
        last_error=row["last_error"], created=from_text(row["created"]),
        fleet_report_id=row["fleet_report_id"],
    )


def get_item(conn: sqlite3.Connection, item_id: int) -> OutboxItem:
    """One item by id (NotFoundError when absent)."""
    row = conn.execute("SELECT * FROM outbox WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no outbox item {item_id}")
    return item_from_row(row)


def due_items(conn: sqlite3.Connection, destinations: list[str], limit: int) -> list[OutboxItem]:
    """Waiting items whose next attempt is due, oldest first."""
    now = time.time()
    marks = ",".join("?" * len(destinations))
    rows = conn.execute(
        f"SELECT * FROM outbox WHERE state = 'waiting' AND destination IN ({marks})"  # noqa: S608  # nosec B608
        " AND next_attempt <= ? ORDER BY id LIMIT ?",
        (*destinations, now, limit),
    ).fetchall()
    return [item_from_row(row) for row in rows]


def mark_sent(conn: sqlite3.Connection, item_id: int) -> None:
    """The destination acknowledged the item."""
    conn.execute(
        "UPDATE outbox SET state = 'sent', sent = ?, last_error = ''"
        " WHERE id = ?",
        (to_text(utc_now()), item_id),
    )


def mark_failed(conn: sqlite3.Connection, item_id: int, error: str, retry_in_s: float) -> None:
    """A retryable failure: try again after ``retry_in_s`` seconds."""
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ?,"
        " failed_at = ? WHERE id = ? AND state = 'waiting'",
        (error[:2000], time.time() + retry_in_s, time.time(), item_id),
    )


def park(conn: sqlite3.Connection, item_id: int, error: str) -> None:
    """A non-retryable failure: set the item aside, with its error, until a person retries it."""
    conn.execute(
        "UPDATE outbox SET state = 'parked', attempts = attempts + 1, last_error = ?,"
        " failed_at = ? WHERE id = ? AND state = 'waiting'",
        (error[:2000], time.time(), item_id),
    )


def unpark(conn: sqlite3.Connection, item_id: int) -> OutboxItem:
    """Put a parked item back in the queue, due now."""
    item = get_item(conn, item_id)
    if item.state != "parked":
        raise StoreError(f"outbox item {item_id} is {item.state}, not parked", code="not_parked")
    conn.execute(
        "UPDATE outbox SET state = 'waiting', attempts = 0, next_attempt = ?"
        " WHERE id = ?",
        (time.time(), item_id),
    )
    return item


def parked(conn: sqlite3.Connection) -> list[OutboxItem]:
    """Every parked item, oldest first."""
    rows = conn.execute("SELECT * FROM outbox WHERE state = 'parked' ORDER BY id").fetchall()
    return [item_from_row(row) for row in rows]


def status(conn: sqlite3.Connection, destinations: list[str]) -> list[DestinationStatus]:
    """Queue depth, oldest waiting item, last error and parked count per destination."""
    known = list(dict.fromkeys([*destinations, *_destinations_in_use(conn)]))
    return [_status_of(conn, destination) for destination in known]


def _destinations_in_use(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT DISTINCT destination FROM outbox ORDER BY destination")
    return [row["destination"] for row in rows]


def _status_of(conn: sqlite3.Connection, destination: str) -> DestinationStatus:
    counts = conn.execute(
        "SELECT SUM(state = 'waiting') AS waiting, SUM(state = 'parked') AS parked,"
        " SUM(state = 'sent') AS sent, MIN(CASE WHEN state = 'waiting' THEN created END) AS oldest,"
        " MAX(sent) AS last_sent FROM outbox WHERE destination = ?",
        (destination,),
    ).fetchone()
    error = conn.execute(
        "SELECT last_error FROM outbox WHERE destination = ? AND state != 'sent'"
        " AND last_error != '' ORDER BY failed_at DESC LIMIT 1",
        (destination,),
    ).fetchone()
    return DestinationStatus(
        destination=destination, waiting=int(counts["waiting"] or 0),
        oldest=from_text(counts["oldest"]) if counts["oldest"] else None,
        last_error=error["last_error"] if error else "", parked=int(counts["parked"] or 0),
        sent=int(counts["sent"] or 0),
        last_sent=from_text(counts["last_sent"]) if counts["last_sent"] else None,
    )
