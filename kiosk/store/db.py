"""The SQLite connection: WAL + synchronous=FULL checked at start-up, one writer, migrations."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from kiosk.errors import DiskFullError, StoreError
from kiosk.store.migrations import MIGRATIONS

UTC = timezone.utc  # datetime.UTC is Python 3.11+; JetPack 6 runs 3.10

log = logging.getLogger(__name__)

#: SQLite's numeric value of ``PRAGMA synchronous=FULL``.
SYNCHRONOUS_FULL = 2


def utc_now() -> datetime:
    """The current time, UTC, to the microsecond."""
    return datetime.now(UTC)


def to_text(moment: datetime) -> str:
    """A datetime as the ISO text the store keeps."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_text(text: str) -> datetime:
    """The datetime back from its stored ISO text."""
    return datetime.fromisoformat(text)


class Database:
    """One connection guarded by one lock: every write is a ``BEGIN IMMEDIATE`` transaction.

    A kiosk process has exactly one writer; other processes (``kiosk sync``) queue behind
    SQLite's own write lock for up to ``busy_timeout_ms``.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int = 30_000):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        #: Called with the connection after every committed write (e.g. the audit head file).
        self.after_commit: list[Callable[[sqlite3.Connection], None]] = []
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        self._conn.row_factory = sqlite3.Row
        self._configure(busy_timeout_ms)
        migrate(self)

    def _configure(self, busy_timeout_ms: int) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        # NORMAL in WAL mode can lose the last commits on power loss: refuse to run without FULL.
        if str(mode).lower() != "wal" or synchronous != SYNCHRONOUS_FULL:
            raise StoreError(
                f"the store at {self.path} must run in WAL mode with synchronous=FULL "
                f"(got journal_mode={mode}, synchronous={synchronous})",
                code="store_unsafe",
            )

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _store_error(exc) from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _store_error(exc) from exc
                raise
            for hook in self.after_commit:
                try:
                    hook(self._conn)
                except (OSError, sqlite3.Error) as exc:  # the write itself is committed and safe
                    log.warning("after-commit step failed: %s", type(exc).__name__)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection for reading (a consistent snapshot per statement)."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise _store_error(exc) from exc

    def connection(self) -> sqlite3.Connection:
        """The raw connection, for the backup API only."""
        return self._conn

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        with self._lock:
            self._conn.close()


def _store_error(exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "disk is full" in text:
        return DiskFullError(
            "The kiosk's disk is full: nothing was saved. Free some space and try again.",
        )
    if "locked" in text or "busy" in text:
        return StoreError(f"the store is busy: {text}", code="store_busy", retryable=True)
    return StoreError(f"the store failed: {text}")


def migrate(db: Database) -> int:
    """Apply every migration newer than the store's ``user_version``; returns the version."""
    with db.write() as conn:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise StoreError(
                f"the store at {db.path} has schema version {current}, newer than this kiosk "
                f"knows ({len(MIGRATIONS)}): upgrade the kiosk",
                code="store_too_new",
            )
        for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        return len(MIGRATIONS)
