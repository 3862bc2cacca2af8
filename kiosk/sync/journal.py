"""The send journal: a durable note of each send begun and each acknowledgement received.

Marking an outbox item sent is a SQLite transaction behind the store's one writer (shared by
the four destination threads, each commit an fsync of the WAL). A kill after the peer's
acknowledgement but before that commit meant a resend, which a receiver that does not
de-duplicate (an HL7 interface without MSH-10 duplicate detection) would file twice. The worker
now appends ``ack`` to this destination's own journal (one small write and one fdatasync,
shared with no other thread) the moment the acknowledgement is read, and before the send an
``intent``. When a worker starts a pass it settles the journal: an item acknowledged there but
still waiting in the store is marked sent without a resend; an item with an intent and no
acknowledgement is "in doubt" (the peer may or may not hold it) and is resent with the same
identifiers. What remains is a kill between the peer's commit and the journal's fdatasync; it is
measured in docs/reliability.md.

A line is ``I|A <item id> <idempotency key>``; a line torn by a kill is ignored.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from kiosk.store import OutboxItem


@dataclass
class Settled:
    """What a journal said about items the store still shows as waiting."""

    acknowledged: dict[int, str] = field(default_factory=dict)  # item id -> idempotency key
    in_doubt: dict[int, str] = field(default_factory=dict)


class SendJournal:
    """One destination's journal, ``data/sync-journal/<destination>.log``."""

    def __init__(self, data_dir: Path, destination: str):
        self.path = data_dir / "sync-journal" / f"{destination}.log"
        self._fd: int | None = None
        self._lock = threading.Lock()

    def intent(self, item: OutboxItem) -> None:
        """Durably note that the item is about to be sent."""
        self._append("I", item)

    def acknowledged(self, item: OutboxItem) -> None:
        """Durably note that the peer acknowledged the item (before marking it sent)."""
        self._append("A", item)

    def _append(self, kind: str, item: OutboxItem) -> None:
        line = f"{kind} {item.id} {item.idempotency_key}\n".encode()
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._fd, line)
            os.fdatasync(self._fd)

    def read(self) -> Settled:
        """Items acknowledged, and items begun but never acknowledged, by the journal alone."""
        settled = Settled()
        try:
            text = self.path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return settled
        for line in text.split("\n"):
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] not in ("I", "A") or not parts[1].isdigit():
                continue  # torn by a kill, or damaged: says nothing
            item_id = int(parts[1])
            if parts[0] == "A":
                settled.acknowledged[item_id] = parts[2]
                settled.in_doubt.pop(item_id, None)
            elif item_id not in settled.acknowledged:
                settled.in_doubt[item_id] = parts[2]
        return settled

    def clear(self) -> None:
        """Empty the journal once the store holds what it said (called between passes)."""
        with self._lock:
            self._close()
            if self.path.exists():
                fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def close(self) -> None:
        """Close the file (it is reopened by the next note)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
