"""The append-only, hash-chained audit log: who did what, when, to which patient.

Each entry's hash covers its own fields and the previous entry's hash, so changing, inserting
or removing an entry anywhere but the very end breaks the chain from there on. Triggers refuse
UPDATE and DELETE; ``verify`` finds the first entry whose hash no longer matches. A chain alone
cannot show that its newest entries were cut off, so the head (last id and hash) is also kept in
a file beside the database after every commit (written, fsync-ed, renamed): the database may run
ahead of that file (a crash between the commit and the file write) but never behind it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

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


def _head(conn: sqlite3.Connection) -> tuple[int, str] | None:
    row = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row else None


def write_head(conn: sqlite3.Connection, head_file: Path) -> None:
    """Record the chain's newest (id, hash) beside the database (after a commit)."""
    head = _head(conn)
    if head is None:
        return
    text = f"{head[0]} {head[1]}\n"
    try:
        if head_file.read_text() == text:
            return
    except OSError:
        pass
    temp = head_file.with_name(f".{head_file.name}.{os.getpid()}.tmp")
    with open(temp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())  # never an empty head after a power cut: that reads as tampering
    os.replace(temp, head_file)
    folder = os.open(head_file.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _recorded_head(head_file: Path | None) -> tuple[int, str] | None:
    if head_file is None or not head_file.exists():
        return None
    try:
        id_text, digest = head_file.read_text().split()
        return int(id_text), digest
    except (OSError, ValueError):
        return (0, "unreadable")


def verify(conn: sqlite3.Connection, head_file: Path | None = None) -> tuple[bool, int | None]:
    """(True, None) when the chain is whole, else (False, id of the first bad entry).

    With ``head_file``, entries cut off the end (or a head file tampered with) are found too:
    the recorded head must still be in the chain with the same hash.
    """
    prev_hash = GENESIS
    hashes: dict[int, str] = {}
    for row in conn.execute("SELECT * FROM audit ORDER BY id"):
        expected = entry_hash(prev_hash, row["at"], row["actor"], row["action"],
                              row["patient_id"], row["detail"])
        if row["prev_hash"] != prev_hash or row["hash"] != expected:
            return False, int(row["id"])
        prev_hash = row["hash"]
        hashes[int(row["id"])] = prev_hash
    recorded = _recorded_head(head_file)
    if recorded is not None and hashes.get(recorded[0]) != recorded[1]:
        return False, recorded[0]
    return True, None
