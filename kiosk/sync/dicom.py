"""PACS destinations: C-STORE (pynetdicom) and DICOMweb STOW-RS, both idempotent by SOP UID."""

from __future__ import annotations

import contextlib
import socket
import ssl
import uuid
from pathlib import Path

import requests
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, Association, evt
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS, code_to_category
from pynetdicom.transport import AssociationSocket

from kiosk.config import Config
from kiosk.errors import SyncError
from kiosk.sync.base import (
    Delivery,
    host_port,
    http_auth,
    refused,
    rejected_for_now,
    tls_verify,
    unreachable,
)
from kiosk.sync.spool import release_spool, spooled, sweep_partials


def _close_always(self: AssociationSocket) -> None:
    """Shut down and close the socket: pynetdicom 3.0.4 skips close() when shutdown() fails
    (after a refused connect), leaking a descriptor per failed try; a kiosk retrying for days
    would run out of them."""
    sock = self.socket
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


AssociationSocket._shutdown_socket = _close_always  # type: ignore[method-assign]

#: C-STORE statuses that mean "stored" (success, and warnings such as coercion of elements).
#: 0x0111 "Duplicate SOP Instance" is a failure to the standard, but to an exactly-once sender
#: it says the PACS already holds this UID (our UIDs are derived, never reused): a resend after
#: a crash or a lost answer must not park the item.
STORED = {0x0000, 0xB000, 0xB006, 0xB007, 0x0111}
DUPLICATE = 0x0111
#: Failure statuses worth retrying: out of resources (A7xx), and the general "the SCP is busy
#: or out of resources" codes of PS3.7 C.
BUSY = {0x0122, 0x0124, 0x0210, 0x0211, 0x0212, 0x0213}


def _status_words(status: int, answer: Dataset | None) -> str:
    """The status as the standard names it, with the PACS's own Error Comment when it gave one."""
    words = STORAGE_SERVICE_CLASS_STATUS.get(status, (code_to_category(status), ""))
    text = f"0x{status:04X} {words[0]}" + (f" ({words[1]})" if words[1] else "")
    comment = str(answer.get("ErrorComment", "") or "") if answer is not None else ""
    return text + (f"; the PACS said: {comment.strip()[:200]}" if comment.strip() else "")


def _store_status_error(status: int, sop_uid: str, answer: Dataset | None = None) -> SyncError:
    """The SyncError for a C-STORE failure status (Out of resources: retry; others: park)."""
    text = f"C-STORE of {sop_uid} failed with status {_status_words(status, answer)}"
    if 0xA700 <= status <= 0xA7FF or status in BUSY:
        return rejected_for_now("dicom", text + " (the PACS is busy or out of resources)")
    return refused("dicom", text, kind="status_failure")


class _Handshake:
    """What happened while associating: whether TCP connected (to tell a PACS that is not
    listening from one that answered and refused)."""

    def __init__(self) -> None:
        self.connected = False

    def opened(self, event: evt.Event) -> None:
        """EVT_CONN_OPEN: the TCP connection is up; switch Nagle off."""
        self.connected = True
        _no_delay(event)


def association_failure(assoc: Association, connected: bool, where: str) -> SyncError:
    """Say why no association was made: not reachable, rejected for now (retry), rejected for
    good (park, with the PACS's reason), or no SOP class or transfer syntax accepted (park)."""
    answer = assoc.acceptor.primitive
    if assoc.is_rejected and answer is not None and answer.result in (0x01, 0x02):
        words = f"{answer.result_str}, by the {answer.source_str}: {answer.reason_str}"
        if answer.result == 0x02:
            return rejected_for_now("dicom", f"{where} rejected the association ({words})")
        return refused("dicom", f"{where} rejected the association ({words}); check the AE "
                       "titles in KIOSK_PACS_ADDRESS / KIOSK_PACS_AE_TITLE and the PACS's list "
                       "of known modalities, then retry", kind="rejected_permanent")
    if connected and assoc.rejected_contexts and not assoc.accepted_contexts:
        offered = ", ".join(sorted({getattr(cx.abstract_syntax, "name", "?") for cx in
                                    assoc.rejected_contexts}))
        return refused("dicom", f"{where} accepted none of the SOP classes offered ({offered})",
                       kind="rejected_permanent")
    if connected:
        return unreachable("dicom", f"{where} accepted the connection but aborted or did not "
                           "answer the association request")
    return unreachable("dicom", f"no connection to {where} (refused, timed out or not "
                       "listening)")


class CStoreDestination:
    """Sends the SR and Secondary Captures to a PACS (``AET@host:port``) by C-STORE."""

    name = "dicom"
    #: The worker's send journal notes the intent once associated, not before.
    notes_intent = True

    def __init__(self, config: Config):
        self.config = config
        called, _, address = config.pacs_address.rpartition("@")
        self.called_ae = called or "ANY-SCP"
        self.host, self.port = host_port(address, "pacs_address")
        sweep_partials(config)  # made with the sync lock held: no rendering is under way

    def _ae(self, objects: list[Path]) -> AE:
        ae = AE(ae_title=self.config.pacs_ae_title or self.config.dicom_ae_title)
        for sop_class, syntax in sorted({_context(path) for path in objects}):
            ae.add_requested_context(sop_class, syntax)
        timeout = self.config.sync_timeout_s
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
        ae.connection_timeout = timeout
        return ae

    def _associate(self, objects: list[Path]) -> Association:
        tls = None
        if self.config.pacs_tls:
            context = ssl.create_default_context(cafile=self.config.tls_ca_file or None)
            tls = (context, self.host)
        handshake = _Handshake()
        assoc = self._ae(objects).associate(self.host, self.port, ae_title=self.called_ae,
                                            tls_args=tls,
                                            evt_handlers=[(evt.EVT_CONN_OPEN, handshake.opened)])
        if not assoc.is_established:
            raise association_failure(assoc, handshake.connected,
                                      f"{self.called_ae}@{self.host}:{self.port}")
        return assoc

    def send(self, delivery: Delivery) -> None:
        """C-STORE every object of the item on one association; the PACS keeps one copy per
        SOP Instance UID, so a resend after a lost response stores nothing twice."""
        objects = spooled(delivery, self.config)
        assoc = self._associate(objects)
        delivery.going_out()  # associated: from here the PACS may store (in doubt)
        try:
            for path in objects:
                _store(assoc, path)
        finally:
            if assoc.is_established:
                assoc.release()

    def sent(self, delivery: Delivery) -> None:
        """Drop the rendering once no PACS route still needs it."""
        release_spool(delivery, self.config)

    def close(self) -> None:
        """Nothing is held between items (one association per item)."""


def _no_delay(event: evt.Event) -> None:
    """Switch Nagle off: a C-STORE is several small PDU writes that would each wait an ACK."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _context(path: Path) -> tuple[str, str]:
    dataset = dcmread(path, stop_before_pixels=True)
    syntax = dataset.file_meta.get("TransferSyntaxUID") or ExplicitVRLittleEndian
    return str(dataset.SOPClassUID), str(syntax)


def _store(assoc: Association, path: Path) -> None:
    try:
        status = assoc.send_c_store(path)
    except ValueError as exc:  # no accepted presentation context for this object
        raise refused("dicom", f"the PACS accepts none of {path.name}: {exc}",
                      kind="rejected_permanent") from exc
    except (RuntimeError, OSError) as exc:
        raise unreachable("dicom", f"C-STORE interrupted: {exc}") from exc
    if not status or "Status" not in status:
        raise unreachable("dicom", "no C-STORE response (connection lost or timed out)")
    if int(status.Status) not in STORED:
        raise _store_status_error(int(status.Status), path.name, status)


def multipart(parts: list[bytes]) -> tuple[bytes, str]:
    """A multipart/related body of DICOM files and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
        for part in parts
    ) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


class StowDestination:
    """Sends the same objects by DICOMweb STOW-RS (``POST {base}/studies``)."""

    name = "dicomweb"

    def __init__(self, config: Config):
        self.config = config
        self.url = config.dicomweb_url.rstrip("/") + "/studies"
        self.session = requests.Session()
        self.session.headers.update(http_auth("dicomweb_auth", config.dicomweb_auth))
        self.session.headers["Accept"] = "application/dicom+json"
        self.session.verify = tls_verify(config)
        sweep_partials(config)

    def send(self, delivery: Delivery) -> None:
        """POST every object of the item in one request."""
        body, content_type = multipart([p.read_bytes() for p in spooled(delivery, self.config)])
        try:
            response = self.session.post(self.url, data=body, timeout=self.config.sync_timeout_s,
                                         headers={"Content-Type": content_type})
        except requests.RequestException as exc:
            raise unreachable("dicomweb", str(exc)) from exc
        check_stow(response)

    def sent(self, delivery: Delivery) -> None:
        """Drop the rendering once no PACS route still needs it."""
        release_spool(delivery, self.config)

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()


def check_stow(response: requests.Response) -> None:
    """Return when the STOW-RS answer says every instance was stored; otherwise say which kind
    of failure it was, with the server's own words (its body, the instances' Failure Reasons)."""
    status = response.status_code
    reasons = _failure_reasons(response)
    if status in (200, 202, 409) and all(r == DUPLICATE for r in reasons) and (
            reasons or status != 409):
        return  # stored, or already held (a resend): 409 with only "Duplicate SOP Instance"
    text = f"STOW-RS answered HTTP {status}: {response.text[:300]}"
    if reasons:
        text += "; failure reasons: " + ", ".join(_status_words(r, None) for r in reasons)
    busy = reasons and all(0xA700 <= r <= 0xA7FF or r in BUSY for r in reasons)
    if status in (408, 429) or status >= 500 or busy:
        raise rejected_for_now("dicomweb", text)
    if status in (401, 403):  # credentials: retried, the sync page shows the words meanwhile
        raise SyncError(text, code="auth", retryable=True)
    raise refused("dicomweb", text, kind="status_failure")


def _failure_reasons(response: requests.Response) -> list[int]:
    """The Failure Reason (0008,1197) of every instance in the Failed SOP Sequence."""
    try:
        answer = response.json()
    except ValueError:
        return []
    failed = answer.get("00081198", {}).get("Value", []) if isinstance(answer, dict) else []
    reasons = []
    for entry in failed if isinstance(failed, list) else []:
        value = (entry.get("00081197", {}).get("Value") or [0x0110]) if isinstance(
            entry, dict) else [0x0110]  # no reason given: "processing failure"
        reasons.append(int(value[0]) if str(value[0]).isdigit() else 0x0110)
    return reasons
