"""The offline store: SQLite (WAL, synchronous=FULL, one writer, migrations), image files,
patients, screenings, sign-offs, users, clinic settings, the hash-chained audit log and the
outbox that ``kiosk.sync`` drains."""

from kiosk.store.fleet import FleetReport
from kiosk.store.models import (
    AuditEntry,
    DestinationStatus,
    OutboxItem,
    Patient,
    ReceivedFilm,
    Screening,
    SignOff,
    User,
)
from kiosk.store.store import Store

__all__ = [
    "AuditEntry",
    "DestinationStatus",
    "FleetReport",
    "OutboxItem",
    "Patient",
    "ReceivedFilm",
    "Screening",
    "SignOff",
    "Store",
    "User",
]
