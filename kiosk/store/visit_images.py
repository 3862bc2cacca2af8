"""The images of a visit kept while another is retaken: per user and patient, in the store.

The capture page keeps the gradable images of a visit (the store's content-addressed files)
while the nurse retakes a bad one, confirms an identity warning, or gives the reason an eye was
not photographed. They were named in the session cookie, which every response rewrites: a
request still in flight (another tab, a heat-map) wrote an older list back, and the kept eyes
were lost. Here each (user, patient) has its own row, so two tabs for two patients keep both
visits, and nothing but the capture itself changes it.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from typing import Any

from kiosk.store.db import Database, from_text, to_text, utc_now

#: A visit left this long is forgotten (the images stay in the store's files, as every image).
KEEP = timedelta(hours=12)


def put(db: Database, username: str, patient_id: int, items: list[dict[str, Any]]) -> None:
    """Keep these images (``sha``, ``name``, ``laterality``, ``kind``, ``task``) for the visit,
    replacing what was kept for it; an empty list forgets the visit."""
    now = utc_now()
    with db.write() as conn:
        conn.execute("DELETE FROM visit_images WHERE updated < ?", (to_text(now - KEEP),))
        if not items:
            _drop(conn, username, patient_id)
            return
        conn.execute(
            "INSERT INTO visit_images (username, patient_id, items, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (username, patient_id) DO UPDATE SET items = excluded.items, "
            "updated = excluded.updated",
            (username, patient_id, json.dumps(items), to_text(now)))


def get(db: Database, username: str, patient_id: int) -> list[dict[str, Any]]:
    """The images kept for this user's visit of this patient (none once older than KEEP)."""
    with db.read() as conn:
        row = conn.execute("SELECT items, updated FROM visit_images WHERE username = ? AND "
                           "patient_id = ?", (username, patient_id)).fetchone()
    if row is None or utc_now() - from_text(row["updated"]) > KEEP:
        return []
    items: list[dict[str, Any]] = json.loads(row["items"])
    return items


def drop(db: Database, username: str, patient_id: int) -> None:
    """Forget the visit's kept images (it was recorded, or the nurse starts again)."""
    with db.write() as conn:
        _drop(conn, username, patient_id)


def _drop(conn: sqlite3.Connection, username: str, patient_id: int) -> None:
    conn.execute("DELETE FROM visit_images WHERE username = ? AND patient_id = ?",
                 (username, patient_id))
