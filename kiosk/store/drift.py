"""What drift alarms read from the store: a task's recent inputs and scores, and its alarm state.

Plain functions on an open connection, like ``records`` and ``lifecycle``. Only the result
records' ``inputs``, ``score`` and ``model`` are read: never a patient. The alarm state lives in
the audit log itself (the newest ``drift.alarm`` / ``drift.clear`` entry for an alarm's key), so
an alarm is audited once when raised and once when it clears, with no table of its own.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

#: Audit actions of the drift alarms.
RAISED, CLEARED = "drift.alarm", "drift.clear"

_OF_TASK = ("SELECT json_extract(result_json, '$.inputs') AS inputs,"
            " json_extract(result_json, '$.score') AS score,"
            " json_extract(result_json, '$.model.sha256') AS sha256"
            " FROM results WHERE json_extract(result_json, '$.task') = ?"
            " AND json_extract(result_json, '$.inputs') IS NOT NULL")


def recent(conn: sqlite3.Connection, task: str, limit: int) -> list[dict[str, Any]]:
    """The task's newest ``limit`` results that carry input features, oldest first.

    Each: ``inputs`` (the features dict), ``score`` (None when ungradable) and ``sha256`` of the
    bundle that made it.
    """
    rows = conn.execute(_OF_TASK + " ORDER BY screening_id DESC, position DESC LIMIT ?",
                        (task, limit)).fetchall()
    return [_case(row) for row in reversed(rows)]


def first(conn: sqlite3.Connection, task: str, limit: int) -> list[dict[str, Any]]:
    """The task's first ``limit`` results at this site that carry input features."""
    rows = conn.execute(_OF_TASK + " ORDER BY screening_id, position LIMIT ?",
                        (task, limit)).fetchall()
    return [_case(row) for row in rows]


def _case(row: sqlite3.Row) -> dict[str, Any]:
    """One result's features, score and bundle."""
    return {"inputs": json.loads(row["inputs"]), "score": row["score"], "sha256": row["sha256"]}


def raised(conn: sqlite3.Connection, key: str) -> bool:
    """Whether the newest drift audit entry for ``key`` raised its alarm (and none cleared it)."""
    head = f"{key}: "
    row = conn.execute("SELECT action FROM audit WHERE action IN (?, ?)"
                       " AND substr(detail, 1, ?) = ? ORDER BY id DESC LIMIT 1",
                       (RAISED, CLEARED, len(head), head)).fetchone()
    return row is not None and row["action"] == RAISED
