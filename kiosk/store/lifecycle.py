"""Site validations, referral outcomes and surveillance alarms: reads and writes on a connection.

Plain functions on an open connection (the caller holds the transaction and appends the audit
entry in it), like ``records``; kiosk/lifecycle/ builds the figures on top of them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from kiosk.errors import NotFoundError, StoreError
from kiosk.result import Result
from kiosk.store.db import to_text, utc_now

#: What a referral found later: the disease the model screens for, or not.
OUTCOMES = ("disease", "no_disease")


@dataclass(frozen=True)
class SiteValidation:
    """One validation run of a task's model on labelled local images, and its fate."""

    id: int
    task: str
    model_version: str
    model_sha256: str
    source: str
    created: str
    actor: str
    report: dict[str, Any]
    applied: str | None
    applied_by: str | None
    withdrawn: str | None
    withdrawn_by: str | None

    @property
    def in_force(self) -> bool:
        """Whether its proposed threshold is the task's site operating point now."""
        return self.applied is not None and self.withdrawn is None


def _validation(row: sqlite3.Row) -> SiteValidation:
    """A SiteValidation from its row."""
    return SiteValidation(row["id"], row["task"], row["model_version"], row["model_sha256"],
                          row["source"], row["created"], row["actor"],
                          json.loads(row["report_json"]), row["applied"], row["applied_by"],
                          row["withdrawn"], row["withdrawn_by"])


def insert_validation(conn: sqlite3.Connection, report: dict[str, Any], *, source: str,
                      actor: str) -> int:
    """Keep a validation report (figures only) and return its id."""
    model = report["model"]
    cursor = conn.execute(
        "INSERT INTO site_validations (task, model_version, model_sha256, source, created, actor,"
        " report_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (report["task"], model["version"], model["sha256"], source, to_text(utc_now()), actor,
         json.dumps(report, sort_keys=True)))
    return int(cursor.lastrowid or 0)


def get_validation(conn: sqlite3.Connection, validation_id: int) -> SiteValidation:
    """One validation run (NotFoundError when absent)."""
    row = conn.execute("SELECT * FROM site_validations WHERE id = ?", (validation_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no site validation {validation_id}")
    return _validation(row)


def validations(conn: sqlite3.Connection, task: str | None = None, limit: int = 50
                ) -> list[SiteValidation]:
    """The newest validation runs, of one task or all."""
    rows = conn.execute(
        "SELECT * FROM site_validations WHERE ? IS NULL OR task = ? ORDER BY id DESC LIMIT ?",
        (task, task, limit)).fetchall()
    return [_validation(row) for row in rows]


def in_force(conn: sqlite3.Connection, task: str) -> SiteValidation | None:
    """The validation whose threshold is the task's site operating point, if any."""
    row = conn.execute(
        "SELECT * FROM site_validations WHERE task = ? AND applied IS NOT NULL"
        " AND withdrawn IS NULL ORDER BY applied DESC, id DESC LIMIT 1", (task,)).fetchone()
    return _validation(row) if row else None


def mark_applied(conn: sqlite3.Connection, validation_id: int, actor: str) -> SiteValidation:
    """Put a validation's threshold in force (the one in force before it is withdrawn)."""
    chosen = get_validation(conn, validation_id)
    if chosen.applied is not None:
        raise StoreError(f"site validation {validation_id} was applied already",
                         code="already_applied")
    mark_withdrawn(conn, chosen.task, actor)
    conn.execute("UPDATE site_validations SET applied = ?, applied_by = ? WHERE id = ?",
                 (to_text(utc_now()), actor, validation_id))
    return get_validation(conn, validation_id)


def mark_withdrawn(conn: sqlite3.Connection, task: str, actor: str) -> SiteValidation | None:
    """Withdraw the task's site threshold in force (None: there was none)."""
    current = in_force(conn, task)
    if current is None:
        return None
    conn.execute("UPDATE site_validations SET withdrawn = ?, withdrawn_by = ? WHERE id = ?",
                 (to_text(utc_now()), actor, current.id))
    return get_validation(conn, current.id)


def set_outcome(conn: sqlite3.Connection, screening_id: int, outcome: str, note: str,
                actor: str) -> None:
    """Record (or correct) what the referral of a screening found."""
    if outcome not in OUTCOMES:
        raise StoreError(f"unknown referral outcome {outcome!r}; choose one of "
                         f"{', '.join(OUTCOMES)}", code="bad_outcome")
    conn.execute(
        "INSERT INTO referral_outcomes (screening_id, outcome, note, entered, actor)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (screening_id) DO UPDATE SET"
        " outcome = excluded.outcome, note = excluded.note, entered = excluded.entered,"
        " actor = excluded.actor",
        (screening_id, outcome, note, to_text(utc_now()), actor))


def get_outcome(conn: sqlite3.Connection, screening_id: int) -> dict[str, str] | None:
    """The referral outcome entered for a screening, if any."""
    row = conn.execute("SELECT outcome, note, entered, actor FROM referral_outcomes"
                       " WHERE screening_id = ?", (screening_id,)).fetchone()
    return {key: str(row[key]) for key in ("outcome", "note", "entered", "actor")} if row else None


def decided_screenings(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every screening a clinician signed or whose referral outcome is known, with both.

    Rows: ``results`` (a JSON list of the screening's results: :func:`results_of`),
    ``decision``, ``verdict`` (the clinician's), ``outcome`` (the referral's) and the internal
    ``patient_id`` (to keep a patient's eyes together when resampling); nothing that names anyone.
    """
    return conn.execute(
        "SELECT s.id, s.patient_id, (SELECT json_group_array(json(r.result_json)) FROM"
        "  (SELECT result_json FROM results WHERE screening_id = s.id ORDER BY position) r)"
        " AS results,"
        " o.decision, o.verdict, x.outcome"
        " FROM screenings s LEFT JOIN sign_offs o ON o.screening_id = s.id"
        " LEFT JOIN referral_outcomes x ON x.screening_id = s.id"
        " WHERE o.screening_id IS NOT NULL OR x.screening_id IS NOT NULL ORDER BY s.id"
    ).fetchall()


def results_of(row: sqlite3.Row) -> list[Result]:
    """The results of a row of :func:`decided_screenings`."""
    results: list[Result] = json.loads(row["results"])
    return results


def raise_alarm(conn: sqlite3.Connection, key: str, detail: str) -> bool:
    """Remember an alarm; True when it is new (the caller audits it then)."""
    cursor = conn.execute("INSERT OR IGNORE INTO surveillance_alarms (key, raised, detail)"
                          " VALUES (?, ?, ?)", (key, to_text(utc_now()), detail))
    return cursor.rowcount == 1


def clear_alarm(conn: sqlite3.Connection, key: str) -> bool:
    """Forget an alarm whose estimate recovered; True when there was one."""
    return conn.execute("DELETE FROM surveillance_alarms WHERE key = ?", (key,)).rowcount == 1


def alarms(conn: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """Alarms raised and not cleared, by key."""
    rows = conn.execute("SELECT key, raised, detail FROM surveillance_alarms").fetchall()
    return {row["key"]: {"raised": row["raised"], "detail": row["detail"]} for row in rows}
