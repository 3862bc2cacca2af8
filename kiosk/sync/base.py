"""What every destination shares: the delivery it sends, stable identifiers, credentials."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kiosk.config import Config
from kiosk.errors import ConfigError, SyncError
from kiosk.store import FleetReport, OutboxItem, Screening, Store

#: Namespace of every UUID the kiosk derives from an idempotency key.
KIOSK_NAMESPACE = uuid.UUID("6f1c7a52-3c1e-4f0e-9a3b-2f8d7d0b6a11")


@dataclass(frozen=True)
class Delivery:
    """One outbox item with the screening it reports on, ready to be rendered and sent."""

    item: OutboxItem
    screening: Screening
    store: Store
    #: Notes durably that the item is about to leave (the worker's send journal).
    on_wire: Callable[[], None] | None = None

    def going_out(self) -> None:
        """Say the first byte is about to leave: called by the destination when it sets
        ``notes_intent``, so that a crash while connecting leaves nothing in doubt."""
        if self.on_wire is not None:
            self.on_wire()

    @property
    def final(self) -> bool:
        """True for the report after a clinician's sign-off."""
        return self.item.report_status == "final"

    def image_bytes(self, sha256: str) -> bytes:
        """The bytes of a stored image or heat-map."""
        return self.store.image_path(sha256).read_bytes()


@dataclass(frozen=True)
class ReportDelivery:
    """One outbox item carrying a fleet report (figures only, no patient), ready to be sent."""

    item: OutboxItem
    report: FleetReport
    on_wire: Callable[[], None] | None = None

    def going_out(self) -> None:
        """Say the first byte is about to leave (as ``Delivery.going_out``)."""
        if self.on_wire is not None:
            self.on_wire()


class Destination(Protocol):
    """A place results are sent to; ``send`` raises SyncError saying whether to retry.

    A destination may also define ``sent(delivery)``, called once the item is marked sent;
    ``notes_intent = True`` when it calls ``delivery.going_out()`` itself right before the first
    byte leaves (else the worker notes the intent before ``send``); and ``park_in_doubt = True``
    when its receiver does not de-duplicate (an item left in doubt by a crash is then parked).
    A destination that takes fleet reports (``fleet=True`` in kiosk/destinations.py) defines
    ``send_report(delivery: ReportDelivery)``, idempotent in the same way.
    """

    name: str

    def send(self, delivery: Delivery) -> None:
        """Deliver the item (idempotently: resending it changes nothing at the peer)."""

    def close(self) -> None:
        """Release connections held between sends."""


def stable_uuid(*parts: str) -> uuid.UUID:
    """A UUID that is the same for the same parts, on every kiosk and every retry."""
    return uuid.uuid5(KIOSK_NAMESPACE, "/".join(parts))


def dicom_uid(*parts: str) -> str:
    """A DICOM UID (``2.25.`` + UUID as an integer) derived from the parts."""
    return f"2.25.{stable_uuid(*parts).int}"


def control_id(key: str) -> str:
    """A 20-character message control id (HL7 MSH-10) derived from an idempotency key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20].upper()


def http_auth(setting_name: str, value: str) -> dict[str, str]:
    """HTTP headers for ``bearer:<token>`` or ``basic:<user>:<password>`` (empty: none)."""
    import base64

    if not value:
        return {}
    kind, _, secret = value.partition(":")
    if kind == "bearer" and secret:
        return {"Authorization": f"Bearer {secret}"}
    if kind == "basic" and ":" in secret:
        token = base64.b64encode(secret.encode("utf-8")).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    raise ConfigError(f"KIOSK_{setting_name.upper()} must be bearer:<token> or "
                      "basic:<user>:<password>", code="bad_setting")


def tls_verify(config: Config) -> str | bool:
    """What requests should verify server certificates against."""
    return config.tls_ca_file or True


def host_port(address: str, setting_name: str) -> tuple[str, int]:
    """(host, port) from ``host:port``; ConfigError when malformed."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"KIOSK_{setting_name.upper()} must be host:port, got {address!r}",
                          code="bad_setting")
    return host, int(port)


#: Why a send failed, as the sync page says it; the worker acts on the kind (the SyncError code):
#: unreachable: no connection, or no answer (retry later; the destination is skipped for the pass)
#: rejected_transient: the peer refused for now, e.g. congestion (retry later, skip the pass)
#: rejected_permanent: the peer refuses this kiosk whatever it sends (park: a person fixes it)
#: status_failure: the peer took the item and answered that it failed (park)
#: refused: anything else retrying cannot fix (invalid content, HL7 AE, HTTP 4xx: park)
#: in_doubt: sent before a crash, no acknowledgement noted, to a receiver that does not
#: de-duplicate (park: a person checks whether it arrived)
KIND_WORDS = {"rejected_permanent": "rejected permanently", "status_failure": "failure status",
              "in_doubt": "in doubt after a crash", "refused": "will not succeed by retrying"}


def refused(destination: str, reason: str, kind: str = "refused") -> SyncError:
    """A non-retryable refusal: the item is parked with this reason (the peer's own words)."""
    return SyncError(f"{destination} refused the item ({KIND_WORDS[kind]}): {reason}", code=kind,
                     retryable=False)


def error_kind(message: str) -> str:
    """The kind of a stored error message (the words above), for the sync page and --status."""
    for kind, words in KIND_WORDS.items():
        if f"refused the item ({words})" in message:
            return kind
    if "rejected it for now" in message:
        return "rejected_transient"
    if "not reachable" in message:
        return "unreachable"
    return "other" if message else ""


def unreachable(destination: str, reason: str) -> SyncError:
    """A retryable failure to reach or hear back from a destination."""
    return SyncError(f"{destination} not reachable: {reason}", code="unreachable", retryable=True)


def rejected_for_now(destination: str, reason: str) -> SyncError:
    """The peer answered but refused for now (congestion, a limit): retried later."""
    return SyncError(f"{destination} rejected it for now: {reason}", code="rejected_transient",
                     retryable=True)
