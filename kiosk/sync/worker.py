"""The sync worker: drains the outbox with exponential backoff, jitter, a cap, and parking.

One worker per data folder at a time (an exclusive lock file, released by the kernel even on
``kill -9``). An item is marked sent only after its destination acknowledged it; a crash between
the acknowledgement and the mark means one resend, which every destination absorbs because the
resend carries the same identifiers (FHIR conditional create, HL7 MSH-10, DICOM SOP UID).
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kiosk.config import Config
from kiosk.errors import KioskError, SyncError
from kiosk.store import OutboxItem, Store
from kiosk.sync.base import Delivery, Destination

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What one pass did, per outcome."""

    sent: int = 0
    retrying: int = 0
    parked: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # time spent per destination


def backoff_s(attempts: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay before the next try: base x 2^attempts, capped, with "equal jitter" (half random)."""
    delay = min(cap_s, base_s * 2 ** min(attempts, 40))
    return delay / 2 + rng.uniform(0, delay / 2)


@contextmanager
def worker_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data folder's sync lock; SyncError when another worker holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "sync.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise SyncError("another sync worker is running on this data folder",
                            code="sync_busy") from exc
        yield
    finally:
        os.close(fd)


class SyncWorker:
    """Sends due outbox items to their destinations, one pass at a time."""

    def __init__(self, store: Store, destinations: Mapping[str, Destination], config: Config,
                 rng: random.Random | None = None):
        self.store = store
        self.destinations = dict(destinations)
        self.config = config
        self.rng = rng or random.Random()  # jitter, not security

    def run_once(self) -> SyncReport:
        """Send every due item once, each destination in its own thread (a slow or stalled
        PACS never holds up the EHR); a destination that is down is skipped for the pass."""
        names = list(self.store.destinations)
        with ThreadPoolExecutor(max_workers=max(1, len(names)),
                                thread_name_prefix="sync") as pool:
            parts = list(pool.map(self._run_destination, names))
        report = SyncReport()
        for part in parts:
            report.sent += part.sent
            report.retrying += part.retrying
            report.parked += part.parked
            report.errors.update(part.errors)
            report.seconds.update(part.seconds)
        return report

    def _run_destination(self, name: str) -> SyncReport:
        """One pass over one destination's due items, oldest first."""
        report = SyncReport()
        down: set[str] = set()
        seen: set[int] = set()
        try:
            while name not in down and (batch := [
                    i for i in self.store.due_items(200, [name]) if i.id not in seen]):
                for item in batch:
                    seen.add(item.id)
                    if name not in down:
                        self._deliver(item, report, down)
        finally:
            if name in self.destinations:
                self.destinations[name].close()
        return report

    def _deliver(self, item: OutboxItem, report: SyncReport, down: set[str]) -> None:
        destination = self.destinations.get(item.destination)
        started = time.monotonic()
        try:
            if destination is None:
                raise SyncError(f"destination {item.destination!r} is not configured",
                                code="not_configured", retryable=True)
            delivery = Delivery(item, self.store.get_screening(item.screening_id), self.store)
            destination.send(delivery)
        except KioskError as exc:
            self._failed(item, exc, report, down)
        except Exception as exc:  # a bug rendering one item must not block the others
            log.exception("sending outbox item %s failed unexpectedly", item.id)
            self._failed(item, SyncError(f"internal error: {exc!r}", retryable=False), report,
                         down)
        else:
            self.store.item_sent(item.id)
            report.sent += 1
            after = getattr(destination, "sent", None)  # optional clean-up once marked sent
            if after is not None:
                after(delivery)
        finally:
            report.seconds[item.destination] = (report.seconds.get(item.destination, 0.0)
                                                + time.monotonic() - started)

    def _failed(self, item: OutboxItem, exc: KioskError, report: SyncReport,
                down: set[str]) -> None:
        report.errors[item.destination] = exc.message
        if exc.retryable:
            delay = backoff_s(item.attempts, self.config.sync_backoff_s,
                              self.config.sync_backoff_max_s, self.rng)
            self.store.item_failed(item.id, exc.message, delay)
            report.retrying += 1
            if exc.code in ("unreachable", "rejected_transient", "not_configured"):
                down.add(item.destination)
            # logs carry codes only: a server's error text may quote the patient's record
            log.info("item %s to %s failed [%s] (retry in %.0f s)", item.id, item.destination,
                     exc.code, delay)
        else:
            self.store.park_item(item.id, exc.message)
            report.parked += 1
            log.warning("item %s to %s parked [%s]; the reason is on the sync page", item.id,
                        item.destination, exc.code)

    def run_forever(self, interval_s: float, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set, sleeping between passes."""
        while not stop.is_set():
            try:
                report = self.run_once()
            except KioskError as exc:  # e.g. the store busy for long: try again next pass
                log.warning("sync pass failed [%s]", exc.code)
                stop.wait(interval_s)
                continue
            if report.sent or report.retrying or report.parked:
                log.info("sync pass: %s sent, %s to retry, %s parked", report.sent,
                         report.retrying, report.parked)
            stop.wait(interval_s)
