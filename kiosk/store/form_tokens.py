"""Capture-form tokens: one screening per tap, across threads, web workers and restarts.

The capture page carries a random token. The first request with it claims the token (a row with
no screening yet); the screening it records is bound to the token in the same transaction as the
screening itself (``Store.record_screening(form_token=...)``), so no crash can leave a recorded
screening whose token is still free. A second request with the token waits while the claim is
held and then goes to the same screening; a request sent back to the nurse (retake, identity to
confirm) releases its claim, so the corrected form can be sent with the same token.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta

from kiosk.errors import StoreError
from kiosk.store.db import Database, from_text, to_text, utc_now

#: A claim older than this with no screening is from a request that died (killed worker, power
#: cut): the next request with the token may take it over. Longer than any screening takes.
STALE_CLAIM = timedelta(minutes=2)
#: Tokens are forgotten after this: a form left open longer is sent as a new visit.
KEEP = timedelta(days=2)
#: How often a second request looks whether the first one finished.
POLL_S = 0.1


def claim(db: Database, token: str, *, wait_s: float = 120.0) -> int | None:
    """Claim a token for this request; returns the screening it already made, if any.

    None means the caller owns the token now and must either record a screening with it or
    ``release`` it. While another request holds the claim, this waits (up to ``wait_s``, then
    a retryable StoreError: the page says to try again), reading only: the claim itself is one
    write transaction.
    """
    deadline = time.monotonic() + wait_s
    while True:
        with db.read() as conn:
            state = _state(conn, token)
        if isinstance(state, int):
            return state
        if state == "free":
            with db.write() as conn:
                state = _take(conn, token)
            if state != "held":
                return state if isinstance(state, int) else None
        if time.monotonic() > deadline:
            raise StoreError(f"the form {token[:8]}... is still being screened: try again",
                             code="store_busy", retryable=True)
        time.sleep(POLL_S)


def _state(conn: sqlite3.Connection, token: str) -> int | str:
    """The screening a token made, else "held" (a live claim) or "free"."""
    row = conn.execute("SELECT screening_id, created FROM form_tokens WHERE token = ?",
                       (token,)).fetchone()
    if row is None:
        return "free"
    if row["screening_id"] is not None:
        return int(row["screening_id"])
    return "free" if utc_now() - from_text(row["created"]) > STALE_CLAIM else "held"


def _take(conn: sqlite3.Connection, token: str) -> int | str:
    """Inside a write: claim the token if it is still free ("taken"), else its state now."""
    state = _state(conn, token)
    if state != "free":
        return state
    now = to_text(utc_now())
    conn.execute("DELETE FROM form_tokens WHERE created < ?", (to_text(utc_now() - KEEP),))
    conn.execute("INSERT INTO form_tokens (token, screening_id, created) VALUES (?, NULL, ?) "
                 "ON CONFLICT (token) DO UPDATE SET created = excluded.created", (token, now))
    return "taken"


def bind(conn: sqlite3.Connection, token: str, screening_id: int) -> None:
    """Bind a claimed token to the screening it made (inside that screening's transaction)."""
    conn.execute(
        "INSERT INTO form_tokens (token, screening_id, created) VALUES (?, ?, ?) "
        "ON CONFLICT (token) DO UPDATE SET screening_id = excluded.screening_id",
        (token, screening_id, to_text(utc_now())))


def release(db: Database, token: str) -> None:
    """Give a claim back without a screening (the form went back to the nurse)."""
    with db.write() as conn:
        conn.execute("DELETE FROM form_tokens WHERE token = ? AND screening_id IS NULL", (token,))
