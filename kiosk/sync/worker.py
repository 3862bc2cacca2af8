"""The sync worker: drains the outbox with exponential backoff, jitter, a cap, and parking.

One worker per data folder at a time (an exclusive lock file, released by the kernel even on
``kill -9``). An item is marked sent only after its destination acknowledged it. Around each send
the destination's journal (kiosk/sync/journal.py) durably notes the intent and the
acknowledgement, so a crash between the acknowledgement and the mark no longer means a resend;
a crash while the peer held the item but before its acknowledgement was noted still does, and
every destination's resend carries the same identifiers (FHIR conditional create and PUT to
client-assigned ids, HL7 MSH-10, DICOM SOP Instance UID).
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kiosk.config import Config
from kiosk.errors import KioskError, NotFoundError, SyncError
from kiosk.lifecycle import fleet
from kiosk.store import OutboxItem, Store
from kiosk.sync.base import Delivery, Destination, ReportDelivery, refused
from kiosk.sync.journal import SendJournal

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What one pass did, per outcome."""

    sent: int = 0
    retrying: int = 0
    parked: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # time spent per destination
    settled: int = 0  # acknowledged before a crash, marked sent from the journal, not resent
    in_doubt: int = 0  # sent before a crash with no acknowledgement noted: resent


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
        self.journals = {name: SendJournal(config.data_dir, name)
                         for name in {*store.destinations, *self.destinations}}
        self.in_doubt: set[int] = set()

    def run_once(self) -> SyncReport:
        """Send every due item once, each destination in its own thread (a slow or stalled
        PACS never holds up the EHR); a destination that is down is skipped for the pass."""
        names = list(self.store.destinations)
        settled = self.settle_journals()
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
            report.in_doubt += part.in_doubt
        report.settled = settled + self.settle_journals()  # a mark that failed after its ack
        return report

    def settle_journals(self) -> int:
        """Before a pass: mark sent what the journals show acknowledged but the store does not
        (a crash fell between the two), note what was sent without an acknowledgement, and
        empty the journals; returns how many items were marked sent."""
        marked = 0
        for name, journal in self.journals.items():
            found = journal.read()
            for item_id, key in found.acknowledged.items():
                item = self._waiting_item(item_id, key)
                if item is not None:
                    self.store.item_sent(item_id)
                    marked += 1
                    log.info("item %s to %s was acknowledged before a crash: marked sent",
                             item_id, name)
                    self._after_sent(item)
            self.in_doubt |= {i for i, key in found.in_doubt.items()
                              if self._waiting_item(i, key) is not None}
            journal.clear()
        return marked

    def _waiting_item(self, item_id: int, key: str) -> OutboxItem | None:
        try:
            item = self.store.get_item(item_id)
        except NotFoundError:
            return None
        return item if item.state == "waiting" and item.idempotency_key == key else None

    def _after_sent(self, item: OutboxItem) -> None:
        """The destination's optional clean-up once an item is marked sent."""
        after = getattr(self.destinations.get(item.destination), "sent", None)
        if after is not None and item.screening_id is not None:
            after(Delivery(item, self.store.get_screening(item.screening_id), self.store))

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
            self.journals[name].close()
        return report

    def _deliver(self, item: OutboxItem, report: SyncReport, down: set[str]) -> None:
        destination = self.destinations.get(item.destination)
        started = time.monotonic()
        try:
            if destination is None:
                raise SyncError(f"destination {item.destination!r} is not configured",
                                code="not_configured", retryable=True)
            if item.id in self.in_doubt:
                self._in_doubt(item, destination, report)
            journal = self.journals[item.destination]
            delivery = self._delivery(item, lambda: _note(journal.intent, item))
            if not getattr(destination, "notes_intent", False):
                delivery.going_out()
            _send(destination, delivery)
            _acknowledged(journal, item)  # durable before the slower mark in the store
        except KioskError as exc:
            self._failed(item, exc, report, down)
        except Exception as exc:  # a bug rendering one item must not block the others
            log.exception("sending outbox item %s failed unexpectedly", item.id)
            self._failed(item, SyncError(f"internal error: {exc!r}", retryable=False), report,
                         down)
        else:
            self.store.item_sent(item.id)
            self.in_doubt.discard(item.id)
            report.sent += 1
            after = getattr(destination, "sent", None)  # optional clean-up once marked sent
            if after is not None and isinstance(delivery, Delivery):
                after(delivery)
        finally:
            report.seconds[item.destination] = (report.seconds.get(item.destination, 0.0)
                                                + time.monotonic() - started)

    def _delivery(self, item: OutboxItem, on_wire: Callable[[], None]
                  ) -> Delivery | ReportDelivery:
        """What the item carries: a screening's report, or a fleet report (figures only)."""
        if item.screening_id is None and item.fleet_report_id is not None:
            return ReportDelivery(item, self.store.get_fleet_report(item.fleet_report_id),
                                  on_wire)
        if item.screening_id is None:
            raise SyncError(f"outbox item {item.id} carries nothing", retryable=False)
        return Delivery(item, self.store.get_screening(item.screening_id), self.store,
                        on_wire=on_wire)

    def _in_doubt(self, item: OutboxItem, destination: Destination, report: SyncReport) -> None:
        """An item that went out before (a crash, or no answer came) with no acknowledgement
        noted: resent with the same identifiers (a de-duplicating peer keeps one), or parked
        for a person to check when its receiver does not de-duplicate (``park_in_doubt``)."""
        report.in_doubt += 1
        self.in_doubt.discard(item.id)
        if getattr(destination, "park_in_doubt", False):
            raise refused(item.destination, "it went out before (a crash, or no answer) and no "
                          "acknowledgement was noted: the receiver may already hold it (key "
                          f"{item.idempotency_key}); check there, then retry only if it is "
                          "missing", kind="in_doubt")
        log.info("item %s to %s went out before with no acknowledgement noted: resent",
                 item.id, item.destination)

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

    def daily_fleet_report(self) -> None:
        """KIOSK_FLEET_DAILY: queue yesterday's figures once; a failure never stops the sync."""
        if not self.config.fleet_daily:
            return
        try:
            if fleet.queue_yesterday(self.store) is not None:
                log.info("yesterday's fleet report queued")
        except KioskError as exc:
            log.warning("yesterday's fleet report was not queued [%s]", exc.code)

    def run_forever(self, interval_s: float, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set, sleeping between passes."""
        while not stop.is_set():
            self.daily_fleet_report()
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


def _send(destination: Destination, delivery: Delivery | ReportDelivery) -> None:
    """Hand the delivery to its destination; one that takes no fleet reports refuses them."""
    if isinstance(delivery, Delivery):
        destination.send(delivery)
        return
    send_report = getattr(destination, "send_report", None)
    if send_report is None:
        raise refused(delivery.item.destination, "it takes no fleet reports")
    send_report(delivery)


def _note(write: Callable[[OutboxItem], None], item: OutboxItem) -> None:
    """Write a journal note; the kiosk's own disk failing is retried, never a reason to park."""
    try:
        write(item)
    except OSError as exc:
        raise SyncError(f"could not write the send journal: {exc}", code="journal",
                        retryable=True) from exc


def _acknowledged(journal: SendJournal, item: OutboxItem) -> None:
    """Note the acknowledgement; when the journal cannot be written the store's mark, made
    next, still records it (only the protection against a crash in between is lost)."""
    try:
        journal.acknowledged(item)
    except OSError as exc:
        log.warning("item %s: could not note its acknowledgement in the journal (%s)", item.id,
                    type(exc).__name__)
