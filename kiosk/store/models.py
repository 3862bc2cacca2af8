"""Plain records the store hands out: users, patients, screenings, sign-offs, audit, outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kiosk.names import PersonName
from kiosk.result import Result


@dataclass(frozen=True)
class User:
    """A person who may log in: an operator (nurse), a clinician or an admin."""

    id: int
    username: str
    role: str
    password_hash: str


@dataclass(frozen=True)
class Patient:
    """A registered patient, known by the clinic's identifier (e.g. a health-card number).

    ``name`` is the name as people write it (what pages show); ``person_name`` keeps its parts
    for the FHIR, HL7 and DICOM writers (text only for a name that was never split).
    """

    id: int
    identifier: str
    name: str
    birth_date: str | None
    sex: str | None
    created: datetime
    person_name: PersonName = field(default_factory=PersonName)


@dataclass(frozen=True)
class ReceivedFilm:
    """A film a modality pushed, known by its SOP Instance UID and the sha256 of its pixels."""

    sop_uid: str
    pixel_sha256: str
    calling_ae: str = ""
    screening_id: int | None = None


@dataclass(frozen=True)
class SignOff:
    """A clinician's confirmation or overruling of a screening's verdict."""

    clinician: str
    decision: str  # confirm | overrule
    verdict: str  # the verdict the clinician stands behind
    note: str
    signed: datetime


@dataclass(frozen=True)
class Screening:
    """One visit's screening: the per-image results, the overall verdict, and its sign-off.

    ``verdict`` is the kiosk's (AI) overall verdict; a clinician's is in ``sign_off.verdict``.
    ``waited`` is how long the screening has waited since it was recorded.
    """

    id: int
    uid: str
    patient: Patient
    created: datetime
    results: list[Result]
    image_shas: list[str]
    heatmap_shas: list[str | None]
    verdict: str
    priority: int
    sign_off: SignOff | None
    waited: timedelta


@dataclass(frozen=True)
class AuditEntry:
    """One line of the append-only, hash-chained audit log: who did what, when, to whom."""

    id: int
    at: datetime
    actor: str
    action: str
    patient_id: int | None
    detail: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class OutboxItem:
    """One result waiting for (or sent to, or parked at) one destination: a screening's report,
    or (``screening_id`` None) a fleet report of figures only (``fleet_report_id``)."""

    id: int
    screening_id: int | None
    destination: str  # fhir | hl7 | dicom | dicomweb
    report_status: str  # preliminary | final
    idempotency_key: str
    state: str  # waiting | sent | parked
    attempts: int
    next_attempt: datetime
    last_error: str
    created: datetime
    fleet_report_id: int | None = None


@dataclass(frozen=True)
class DestinationStatus:
    """The queue of one destination as the sync status page shows it."""

    destination: str
    waiting: int
    oldest: datetime | None
    last_error: str
    parked: int
    sent: int = 0
    last_sent: datetime | None = field(default=None)
