"""The DICOM listener: a C-STORE / C-ECHO SCP so the clinic's X-ray unit can push films.

The pynetdicom way: handlers ``(event, *bound) -> status`` that never raise and return named
status constants. The C-STORE handler only spools the bytes (write + fsync + rename) and answers;
screening happens later in :class:`hardware.spool.SpoolWorker`, so a slow model never holds the
modality and a crash after the answer loses nothing.

Limits so a hostile or broken peer cannot exhaust memory: the PDU size we accept, a ceiling on
any PDU a peer announces (pynetdicom would otherwise buffer whatever length it is told), a
ceiling on one dataset's bytes, a maximum number of associations, and network timeouts.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from pydicom import uid
from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.events import Event
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from hardware.spool import Spool, SpoolWorker
from kiosk.config import Config
from kiosk.errors import DiskFullError

LOG = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 B.2.3) and the C-ECHO success, by name
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110

#: The Verification SOP class (C-ECHO).
VERIFICATION = UID("1.2.840.10008.1.1")

#: Image storage classes the kiosk accepts: chest films and fundus photographs.
STORAGE_CLASSES: tuple[UID, ...] = (
    uid.ComputedRadiographyImageStorage,
    uid.DigitalXRayImageStorageForPresentation,
    uid.DigitalXRayImageStorageForProcessing,
    uid.SecondaryCaptureImageStorage,
    uid.OphthalmicPhotography8BitImageStorage,
    uid.VLPhotographicImageStorage,
)


@dataclass(frozen=True)
class ListenerLimits:
    """What one peer may cost the kiosk."""

    max_pdu_bytes: int = 64 * 1024  # the largest P-DATA PDU we tell peers to send
    max_announced_pdu: int = 2 * 2**20  # any PDU announcing more is refused outright
    max_dataset_bytes: int = 64 * 2**20
    max_associations: int = 4
    network_timeout_s: float = 30.0

    @classmethod
    def from_config(cls, config: Config) -> ListenerLimits:
        """Limits derived from the configuration (one dataset = the upload limit)."""
        return cls(max_dataset_bytes=config.max_upload_mb * 2**20)


class _BoundedSocket(AssociationSocket):
    """An association socket that refuses to buffer more than the limits allow.

    pynetdicom reads a PDU of whatever length the peer announces, and keeps a whole dataset in
    memory; raising ``OSError`` here makes it treat the connection as closed, before the bytes
    are read. ``received`` counts bytes since the last completed C-STORE (reset by the handler).
    """

    max_announced_pdu = ListenerLimits.max_announced_pdu
    max_stream_bytes = ListenerLimits.max_dataset_bytes + ListenerLimits.max_announced_pdu
    received = 0

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes``, unless that breaks a limit."""
        if nr_bytes > self.max_announced_pdu:
            raise OSError(f"peer announced a {nr_bytes}-byte PDU (limit {self.max_announced_pdu})")
        self.received += nr_bytes
        if self.received > self.max_stream_bytes:
            LOG.warning("peer sent more than %d bytes for one film: connection closed",
                        self.max_stream_bytes)
            raise OSError(f"more than {self.max_stream_bytes} bytes for one dataset")
        return super().recv(nr_bytes)


def _bounded_handler(limits: ListenerLimits) -> type[RequestHandler]:
    """A pynetdicom request handler whose associations use a :class:`_BoundedSocket`."""

    class BoundedSocket(_BoundedSocket):
        max_announced_pdu = limits.max_announced_pdu
        max_stream_bytes = limits.max_dataset_bytes + limits.max_announced_pdu

    class BoundedRequestHandler(RequestHandler):
        def _create_association(self) -> Any:
            assoc = super()._create_association()
            # the same object with a stricter recv(); it adds no state that needs initialising
            assoc.dul.socket.__class__ = BoundedSocket
            return assoc

    return BoundedRequestHandler


def handle_echo(event: Event) -> int:
    """C-ECHO: the kiosk is here."""
    return SUCCESS


def handle_store(event: Event, spool: Spool, worker: SpoolWorker | None) -> int:
    """C-STORE: spool the bytes durably, then answer; never raises."""
    calling_ae = str(event.assoc.requestor.ae_title).strip()
    try:
        meta = event.file_meta
        meta.SourceApplicationEntityTitle = calling_ae
        dataset = event.encoded_dataset(include_meta=False)
        data = b"".join((b"\x00" * 128, b"DICM", encode_file_meta(meta), dataset))
    except (AttributeError, ValueError, TypeError, KeyError) as exc:
        LOG.warning("C-STORE from %s not understood: %s", calling_ae, exc)
        return CANNOT_UNDERSTAND
    finally:
        _reset_count(event)
    try:
        path = spool.put(data)
    except DiskFullError as exc:
        LOG.error("C-STORE from %s refused: %s", calling_ae, exc.message)
        return OUT_OF_RESOURCES
    except OSError as exc:
        LOG.error("C-STORE from %s not spooled: %s", calling_ae, exc)
        return OUT_OF_RESOURCES
    LOG.info("C-STORE from %s: %d bytes spooled as %s", calling_ae, len(data), path.name)
    if worker is not None:
        worker.notify(path)
    return SUCCESS


def _reset_count(event: Event) -> None:
    """Start counting the next dataset's bytes from zero."""
    sock = event.assoc.dul.socket
    if isinstance(sock, _BoundedSocket):
        sock.received = 0


def allowed_calling_aes(config: Config) -> list[str]:
    """The calling AE titles allowed to send, from ``KIOSK_DICOM_ALLOWED_AES`` (empty: any)."""
    return [name.strip() for name in config.dicom_allowed_aes.split(",") if name.strip()]


def make_ae(config: Config, limits: ListenerLimits) -> AE:
    """The kiosk's application entity, with its contexts and limits."""
    ae = AE(ae_title=config.dicom_ae_title)
    ae.maximum_pdu_size = limits.max_pdu_bytes
    ae.maximum_associations = limits.max_associations
    ae.acse_timeout = limits.network_timeout_s
    ae.dimse_timeout = limits.network_timeout_s
    ae.network_timeout = limits.network_timeout_s
    ae.require_calling_aet = allowed_calling_aes(config)
    ae.add_supported_context(VERIFICATION)
    for storage_class in STORAGE_CLASSES:
        ae.add_supported_context(storage_class, ALL_TRANSFER_SYNTAXES)
    return ae


class DicomListener:
    """The running SCP: spools what it receives and hands it to the worker."""

    def __init__(self, config: Config, spool: Spool, worker: SpoolWorker | None = None,
                 *, host: str | None = None, port: int | None = None,
                 limits: ListenerLimits | None = None) -> None:
        self.config = config
        self.spool = spool
        self.worker = worker
        self.host = config.dicom_host if host is None else host
        self.port = config.dicom_port if port is None else port
        self.limits = limits or ListenerLimits.from_config(config)
        self._server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen; returns the port really bound (useful with port 0 in tests)."""
        # pynetdicom logs every association at INFO: keep the service log for what matters
        verbose = LOG.isEnabledFor(logging.DEBUG)
        logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbose else logging.WARNING)
        ae = make_ae(self.config, self.limits)
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_C_STORE, handle_store, [self.spool, self.worker]),
        ]
        server = ae.make_server(
            (self.host, self.port),
            evt_handlers=handlers,
            server_class=ThreadedAssociationServer,
            request_handler=_bounded_handler(self.limits),
        )
        ae._servers.append(server)  # as ae.start_server() does; server.shutdown() expects it
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="dicom-listener",
                                        daemon=True)
        self._thread.start()
        self.port = int(server.server_address[1])
        LOG.info("DICOM listener %s on %s:%d (allowed callers: %s)", self.config.dicom_ae_title,
                 self.host, self.port, ", ".join(allowed_calling_aes(self.config)) or "any")
        return self.port

    def serve(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (for the supervisor); raises if the server thread dies."""
        self.start()
        try:
            while not stop.wait(1.0):
                if self._thread is not None and not self._thread.is_alive():
                    raise OSError("the DICOM listener thread stopped")
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop listening and close open associations."""
        if self._server is not None:
            self._server.shutdown()  # also closes the socket and open associations
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
