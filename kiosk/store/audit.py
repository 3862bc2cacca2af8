"""The append-only, hash-chained audit log: who did what, when, to which patient.

Each entry's hash covers its own fields and the previous entry's hash, so changing, inserting
or removing an entry anywhere but the very end breaks the chain from there on. Triggers refuse
UPDATE and DELETE; ``verify`` finds the first entry whose hash no longer matches.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

from kiosk.store.db import from_text, to_text, utc_now
from kiosk.store.models import AuditEntry

#: The "previous hash" of the very first entry.
GENESIS = "0" * 64


def entry_hash(prev_hash: str, at: str, actor: str, action: str, patient_id: int | None,
               detail: str) -> str:
    """The sha256 that chains one entry to the one before it."""
    body = json.dumps([prev_hash, at, actor, action, patient_id, detail], ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def append(conn: sqlite3.Connection, actor: str, action: str, *, patient_id: int | None = None,
           detail: str = "") -> None:
    """Add one entry inside the caller's write transaction."""
    row = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    prev_hash = row["hash"] if row else GENESIS
    at = to_text(utc_now())
    digest = entry_hash(prev_hash, at, actor, action, patient_id, detail)
    conn.execute(
        "INSERT INTO audit (at, actor, action, patient_id, detail, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, actor, action, patient_id, detail, prev_hash, digest),
    )


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"], at=from_text(row["at"]), actor=row["actor"], action=row["action"],
        patient_id=row["patient_id"], detail=row["detail"], prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def entries(conn: sqlite3.Connection, query: str = "", limit: int = 200) -> list[AuditEntry]:
    """The newest entries first, filtered by actor, action or detail containing ``query``."""
    like = f"%{query}%"
    rows = conn.execute(
        "SELECT * FROM audit WHERE ? = '' OR actor LIKE ? OR action LIKE ? OR detail LIKE ?"
        " OR CAST(patient_id AS TEXT) = ? ORDER BY id DESC LIMIT ?",
        (query, like, like, like, query, limit),
    ).fetchall()
    return [_entry(row) for row in rows]


def verify(conn: sqlite3.Connection) -> tuple[bool, int | None]:
    """(True, None) when the chain is whole, else (False, id of the first bad entry)."""
    prev_hash = GENESIS
    for row in conn.execute("SELECT * FROM audit ORDER BY id"):
        expected = entry_hash(prev_hash, row["at"], row["actor"], row["action"],
                              row["patient_id"], row["detail"])
        if row["prev_hash"] != prev_hash or row["hash"] != expected:
            return False, int(row["id"])
        prev_hash = row["hash"]
    return True, None
