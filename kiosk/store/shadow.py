"""Which bundle is active per task, and the candidate bundles' shadow results: reads and writes.

Plain functions on an open connection (the caller holds the transaction and appends the audit
entry in it), like ``records``; kiosk/lifecycle/ decides what to write. Shadow results live in
their own table, never in ``results``: every page, report and outbox writer reads ``results``,
so a candidate's reading cannot reach staff or the central record by mistake.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from kiosk.result import Result
from kiosk.store.db import to_text, utc_now


@dataclass(frozen=True)
class BundleName:
    """A bundle as the store names it: its version and the sha256 of its manifest."""

    version: str
    sha256: str


@dataclass(frozen=True)
class LineupRow:
    """What the store says of one task: the active bundle and the one it replaced."""

    task: str
    active: BundleName
    previous: BundleName | None
    changed: str
    actor: str


def lineup(conn: sqlite3.Connection) -> dict[str, LineupRow]:
    """Every task's recorded active and previous bundle (empty on a fresh kiosk)."""
    rows = conn.execute("SELECT * FROM model_lineup ORDER BY task").fetchall()
    return {row["task"]: _lineup_row(row) for row in rows}


def _lineup_row(row: sqlite3.Row) -> LineupRow:
    """A LineupRow from its row."""
    previous = (BundleName(row["previous_version"], row["previous_sha256"])
                if row["previous_version"] is not None else None)
    return LineupRow(row["task"], BundleName(row["active_version"], row["active_sha256"]),
                     previous, row["changed"], row["actor"])


def set_lineup(conn: sqlite3.Connection, task: str, active: BundleName,
               previous: BundleName | None, *, actor: str) -> None:
    """Record the task's active bundle and the one a rollback would return to."""
    conn.execute(
        "INSERT INTO model_lineup (task, active_version, active_sha256, previous_version,"
        " previous_sha256, changed, actor) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (task) DO UPDATE SET active_version = excluded.active_version,"
        " active_sha256 = excluded.active_sha256, previous_version = excluded.previous_version,"
        " previous_sha256 = excluded.previous_sha256, changed = excluded.changed,"
        " actor = excluded.actor",
        (task, active.version, active.sha256, previous.version if previous else None,
         previous.sha256 if previous else None, to_text(utc_now()), actor))


#: The setting touched when a bundle is installed (a running kiosk then starts its shadow).
INSTALLED = "models:installed"


def lineup_stamp(conn: sqlite3.Connection) -> str:
    """Changes whenever a task's lineup changes or a bundle is installed (a running kiosk
    reloads its models then)."""
    row = conn.execute("SELECT COUNT(*) AS n, MAX(changed) AS last FROM model_lineup").fetchone()
    installed = conn.execute("SELECT value FROM settings WHERE name = ?", (INSTALLED,)).fetchone()
    return f"{row['n']}:{row['last'] or ''}:{installed['value'] if installed else ''}"


def note_install(conn: sqlite3.Connection, *, actor: str) -> None:
    """Say that a bundle was installed (see ``lineup_stamp``)."""
    now = to_text(utc_now())
    conn.execute("INSERT INTO settings (name, value, updated, actor) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                 " updated = excluded.updated, actor = excluded.actor",
                 (INSTALLED, now, now, actor))


def insert_shadow(conn: sqlite3.Connection, screening_id: int, position: int,
                  result: Result) -> None:
    """Keep a candidate's reading of the screening's result at ``position`` (once per bundle)."""
    model = result.get("model")
    if model is None:
        return
    conn.execute(
        "INSERT OR IGNORE INTO shadow_results (screening_id, position, task, model_version,"
        " model_sha256, result_json, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (screening_id, position, str(result.get("task")), model["version"], model["sha256"],
         json.dumps(result, sort_keys=True), to_text(utc_now())))


@dataclass(frozen=True)
class ShadowPair:
    """A candidate's result beside the active result it shadowed, and the clinician's verdict."""

    screening_id: int
    position: int
    active: Result
    shadow: Result
    signed_verdict: str | None


def shadow_pairs(conn: sqlite3.Connection, task: str, sha256: str) -> list[ShadowPair]:
    """Every shadow result of one candidate bundle with its active result and any sign-off."""
    rows = conn.execute(
        "SELECT s.screening_id, s.position, s.result_json AS shadow_json,"
        " r.result_json AS active_json, o.verdict AS signed_verdict"
        " FROM shadow_results s"
        " JOIN results r ON r.screening_id = s.screening_id AND r.position = s.position"
        " LEFT JOIN sign_offs o ON o.screening_id = s.screening_id"
        " WHERE s.task = ? AND s.model_sha256 = ? ORDER BY s.screening_id, s.position",
        (task, sha256)).fetchall()
    return [ShadowPair(row["screening_id"], row["position"], json.loads(row["active_json"]),
                       json.loads(row["shadow_json"]), row["signed_verdict"]) for row in rows]


def shadowed_bundles(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each bundle that has shadow results: task, version, sha256, how many and the last one."""
    rows = conn.execute(
        "SELECT task, model_version, model_sha256, COUNT(*) AS n, MAX(created) AS last"
        " FROM shadow_results GROUP BY task, model_version, model_sha256"
        " ORDER BY task, model_version").fetchall()
    return [dict(row) for row in rows]


def shadow_results(conn: sqlite3.Connection, screening_id: int) -> list[Result]:
    """The shadow results of one screening (for tests and the admin's audit, never staff)."""
    rows = conn.execute("SELECT result_json FROM shadow_results WHERE screening_id = ?"
                        " ORDER BY position, model_sha256", (screening_id,)).fetchall()
    return [json.loads(row["result_json"]) for row in rows]
