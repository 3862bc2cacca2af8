"""Fleet reports (issue 16.5): one kiosk's figures for one period, kept as they were queued.

Plain functions on an open connection, like ``records``: the caller holds the transaction. A
report holds counts and proportions only (kiosk/lifecycle/fleet.py builds it with small cells
already suppressed), never a patient, so what the outbox sends on every retry is this row.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kiosk.errors import NotFoundError
from kiosk.store.db import to_text, utc_now


@dataclass(frozen=True)
class FleetReport:
    """One kiosk's figures for one period (UTC days, both ends included)."""

    id: int
    kiosk: str
    period_start: str  # ISO date
    period_end: str  # ISO date, included
    created: str
    figures: dict[str, Any]


def _report(row: sqlite3.Row) -> FleetReport:
    return FleetReport(row["id"], row["kiosk"], row["period_start"], row["period_end"],
                       row["created"], json.loads(row["report_json"]))


def idempotency_key(kiosk: str, start: str, end: str, destination: str) -> str:
    """The key of one period's report to one destination, the same on every retry."""
    return f"fleet.{kiosk}.{start}.{end}.{destination}"


def find(conn: sqlite3.Connection, kiosk: str, start: str, end: str) -> FleetReport | None:
    """The report of this kiosk and period, if one was queued."""
    row = conn.execute("SELECT * FROM fleet_reports WHERE kiosk = ? AND period_start = ?"
                       " AND period_end = ?", (kiosk, start, end)).fetchone()
    return _report(row) if row is not None else None


def get(conn: sqlite3.Connection, report_id: int) -> FleetReport:
    """One report by id (NotFoundError when absent)."""
    row = conn.execute("SELECT * FROM fleet_reports WHERE id = ?", (report_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no fleet report {report_id}")
    return _report(row)


def insert(conn: sqlite3.Connection, kiosk: str, start: str, end: str, figures: dict[str, Any],
           actor: str) -> FleetReport:
    """Keep a period's figures (the caller checked that none were queued for it)."""
    cursor = conn.execute(
        "INSERT INTO fleet_reports (kiosk, period_start, period_end, created, actor, report_json)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (kiosk, start, end, to_text(utc_now()), actor, json.dumps(figures, sort_keys=True)))
    return get(conn, int(cursor.lastrowid or 0))


def enqueue(conn: sqlite3.Connection, report: FleetReport, destinations: list[str],
            now: float) -> None:
    """One waiting outbox item per destination for the report, in the caller's transaction."""
    for destination in destinations:
        conn.execute(
            "INSERT INTO outbox (fleet_report_id, destination, report_status, idempotency_key,"
            " next_attempt, created) VALUES (?, ?, 'final', ?, ?, ?)",
            (report.id, destination, idempotency_key(report.kiosk, report.period_start,
                                                     report.period_end, destination),
             now, to_text(utc_now())))


def listed(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The newest reports with their outbox state per destination (for ``kiosk fleet``)."""
    rows = conn.execute(
        "SELECT f.id, f.kiosk, f.period_start, f.period_end, f.created, o.destination, o.state"
        " FROM fleet_reports f LEFT JOIN outbox o ON o.fleet_report_id = f.id"
        " ORDER BY f.id DESC LIMIT ?", (limit,)).fetchall()
    found: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = found.setdefault(row["id"], {
            "id": row["id"], "kiosk": row["kiosk"], "period_start": row["period_start"],
            "period_end": row["period_end"], "created": row["created"], "outbox": {}})
        if row["destination"] is not None:
            entry["outbox"][row["destination"]] = row["state"]
    return list(found.values())


def results_between(conn: sqlite3.Connection, start: datetime, end: datetime) -> list[str]:
    """The result JSON of every screening recorded from ``start`` to before ``end``."""
    rows = conn.execute(
        "SELECT r.result_json FROM results r JOIN screenings s ON s.id = r.screening_id"
        " WHERE s.created >= ? AND s.created < ? ORDER BY r.screening_id, r.position",
        (to_text(start), to_text(end))).fetchall()
    return [str(row["result_json"]) for row in rows]
