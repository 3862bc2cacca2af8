"""The DICOM listener with real senders on loopback: pynetdicom and dcmtk (storescu, echoscu) push
real chest films from ../shared/data/dicom; refused callers, low disk, hostile peers, and a crash
between the acknowledgement and the screening."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import shared
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom import sop_class as sop

from hardware.listener import (
    OUT_OF_RESOURCES,
    SUCCESS,
    DicomListener,
    ListenerLimits,
)
from hardware.spool import Spool, SpoolWorker
from kiosk.config import Config, load_config

CHESTS = ("SIIM-CXR-no-pneumothorax.dcm", "RG1_J2KI.dcm")


def _config(tmp_path: Path, **overrides: object) -> Config:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "dicom_port": 0,
        "dicom_host": "127.0.0.1",
        "dicom_allowed_aes": "XRAY1,STORESCU,ECHOSCU",
        "min_free_disk_mb": 1,
    }
    values.update(overrides)
    return load_config(env={}, **values)


class _Running:
    """A started listener, its spool and the films a worker would screen."""

    def __init__(self, config: Config, limits: ListenerLimits | None = None):
        self.spool = Spool(config.data_dir / "spool", min_free_mb=config.min_free_disk_mb)
        self.listener = DicomListener(config, self.spool, limits=limits)
        self.port = self.listener.start()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[_Running]:
    run = _Running(_config(tmp_path))
    yield run
    run.listener.stop()


def _send(port: int, paths: list[Path], *, calling: str = "XRAY1") -> list[int]:
    """Push files with pynetdicom as the sending modality; the statuses answered."""
    ae = AE(ae_title=calling)
    datasets = [pydicom.dcmread(p) for p in paths]
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="KIOSK")
    assert assoc.is_established, "association refused"
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def test_pynetdicom_push_is_spooled_byte_for_byte(running: _Running) -> None:
    paths = [shared("dicom", name) for name in CHESTS]
    assert _send(running.port, paths) == [SUCCESS, SUCCESS]
    spooled = running.spool.pending()
    assert len(spooled) == 2
    for original_path, spooled_path in zip(paths, spooled, strict=True):
        original, received = pydicom.dcmread(original_path), pydicom.dcmread(spooled_path)
        assert received.SOPInstanceUID == original.SOPInstanceUID
        assert received.PixelData == original.PixelData  # still compressed, untouched
        assert received.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert received.file_meta.SourceApplicationEntityTitle == "XRAY1"
    assert not list(running.spool.folder.glob("*.partial"))


def test_dcmtk_storescu_and_echoscu(running: _Running) -> None:
    if shutil.which("storescu") is None or not Path("/usr/bin/storescu").exists():
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    echo = subprocess.run(["/usr/bin/echoscu", "-aet", "ECHOSCU", "-aec", "KIOSK", "127.0.0.1",
                           str(running.port)], capture_output=True, text=True, timeout=30)
    assert echo.returncode == 0, echo.stderr
    # storescu proposes uncompressed syntaxes unless told the film's own: -xy JPEG 8-bit, -xw J2K lossy
    for name, propose in (("SIIM-CXR-no-pneumothorax.dcm", "-xy"), ("RG1_J2KI.dcm", "-xw")):
        path = shared("dicom", name)
        store = subprocess.run(["/usr/bin/storescu", propose, "-aet", "STORESCU", "-aec", "KIOSK",
                                "127.0.0.1", str(running.port), str(path)],
                               capture_output=True, text=True, timeout=60)
        assert store.returncode == 0, store.stderr
    received = [pydicom.dcmread(p) for p in running.spool.pending()]
    expected = [pydicom.dcmread(shared("dicom", name)) for name in CHESTS]
    assert [r.SOPInstanceUID for r in received] == [e.SOPInstanceUID for e in expected]
    assert [r.PixelData == e.PixelData for r, e in zip(received, expected, strict=True)] == [True, True]
    assert {r.file_meta.SourceApplicationEntityTitle for r in received} == {"STORESCU"}


def test_dcmtk_sender_not_on_the_list_is_rejected(running: _Running) -> None:
    if not Path("/usr/bin/storescu").exists():
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    path = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm")
    result = subprocess.run(["/usr/bin/storescu", "-xy", "-aet", "LAPTOP", "-aec", "KIOSK", "127.0.0.1",
                             str(running.port), str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "reject" in (result.stdout + result.stderr).lower()
    assert running.spool.pending() == []


def test_pynetdicom_echo_and_refused_calling_ae(running: _Running) -> None:
    ae = AE(ae_title="XRAY1")
    ae.add_requested_context(sop.Verification)
    assoc = ae.associate("127.0.0.1", running.port, ae_title="KIOSK")
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == SUCCESS
    assoc.release()
    stranger = AE(ae_title="EVIL")
    stranger.add_requested_context(sop.Verification)
    refused = stranger.associate("127.0.0.1", running.port, ae_title="KIOSK")
    assert refused.is_rejected and not refused.is_established


def test_low_disk_answers_out_of_resources(tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free // 2**20
    run = _Running(_config(tmp_path, min_free_disk_mb=free_mb + 1024))
    try:
        assert _send(run.port, [shared("dicom", CHESTS[0])]) == [OUT_OF_RESOURCES]
        assert run.spool.pending() == []
    finally:
        run.listener.stop()


def _chest_dataset(pixels: bytes) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop.ComputedRadiographyImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.PatientID = "CR", "CHEST", "HOSTILE"
    ds.Rows, ds.Columns = 1024, len(pixels) // 2048
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = pixels
    return ds


def test_dataset_over_the_limit_aborts_the_association(tmp_path: Path) -> None:
    limits = ListenerLimits(max_dataset_bytes=2**20)
    run = _Running(_config(tmp_path), limits=limits)
    try:
        ae = AE(ae_title="XRAY1")
        ae.add_requested_context(sop.ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", run.port, ae_title="KIOSK")
        assert assoc.is_established
        ds = _chest_dataset(bytes(4 * 2**20))
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        status = assoc.send_c_store(ds)
        assert not status  # no answer: the kiosk hung up mid-dataset
        assoc.abort()
        raw = assoc.dul.socket.socket if assoc.dul.socket else None
        if raw is not None:  # pynetdicom's requestor leaves it open when the peer hangs up
            raw.close()
        assert run.spool.pending() == []
        small = _chest_dataset(bytes(2048 * 64))
        small.file_meta = ds.file_meta
        assert _send_one(run.port, small) == SUCCESS  # the listener is still serving
        assert len(run.spool.pending()) == 1
    finally:
        run.listener.stop()


def _send_one(port: int, ds: Dataset) -> int:
    ae = AE(ae_title="XRAY1")
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="KIOSK")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_absurd_pdu_length_closes_the_connection(running: _Running) -> None:
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as peer:
        peer.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0))  # A-ASSOCIATE-RQ of ~4 GiB
        closed = False
        try:
            for _ in range(4096):  # would be 16 MiB; the kiosk hangs up long before
                peer.sendall(bytes(4096))
            closed = peer.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        assert closed
    # and the listener is still there for honest peers
    assert _send(running.port, [shared("dicom", CHESTS[0])]) == [SUCCESS]


def test_spooled_films_survive_a_crash_after_the_answer(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run = _Running(config)  # no worker: as if the kiosk died right after answering
    try:
        assert _send(run.port, [shared("dicom", n) for n in CHESTS]) == [SUCCESS, SUCCESS]
    finally:
        run.listener.stop()
    (run.spool.folder / "half-written.partial").write_bytes(b"never acknowledged")
    screened: list[str] = []
    restarted = Spool(config.data_dir / "spool")
    worker = SpoolWorker(restarted, lambda p: screened.append(pydicom.dcmread(p).SOPInstanceUID))
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while len(screened) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.wait_idle(30)
    stop.set()
    thread.join(timeout=10)
    expected = [str(pydicom.dcmread(shared("dicom", n)).SOPInstanceUID) for n in CHESTS]
    assert sorted(screened) == sorted(expected)
    assert restarted.pending() == [] and not list(restarted.folder.glob("*.partial"))


def test_pushed_films_are_screened_or_refused_with_their_reason(tmp_path: Path) -> None:
    """The whole path in-process: real listener, real pipeline (tiny signed test bundle), real store."""
    import threading

    from bundle_builder import build_bundle, make_keys

    from hardware.pushed import screen_spooled_film
    from kiosk.pipeline import Pipeline
    from kiosk.store import Store

    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys, kind="cxr")
    config = _config(tmp_path, models_dir=tmp_path / "models", trusted_keys=keys.trusted_dir,
                     engine_cache_dir=tmp_path / "engines", sandbox_workers=0)
    pipeline, store = Pipeline.from_config(config), Store.open(config)
    spool = Spool(config.data_dir / "spool", min_free_mb=1)
    worker = SpoolWorker(spool, lambda p: screen_spooled_film(p, pipeline, store))
    listener = DicomListener(config, spool, worker)
    port = listener.start()
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        names = ["SIIM-CXR-no-pneumothorax.dcm", "RG3_J2KR.dcm", "SIIM-CXR-retagged-MONOCHROME1.dcm"]
        assert _send(port, [shared("dicom", n) for n in names]) == [SUCCESS] * 3  # spooled first
        assert worker.wait_idle(120)
        (screening,) = store.worklist()
        chest = pydicom.dcmread(shared("dicom", names[0]))
        assert screening.patient.identifier == str(chest.PatientID)
        (result,) = screening.results
        assert result["task"] == "cxr-pneumonia" and result["error"] is None
        assert result["verdict"] in ("referable", "non_referable", "ungradable")
        reasons = {p.name: r["code"] for p, r in spool.refused()}
        assert sorted(reasons.values()) == ["photometric_mismatch", "wrong_body_part"]
        refusals = [e for e in store.audit_entries() if e.action == "dicom_refused"]
        assert len(refusals) == 2 and {e.actor for e in refusals} == {"dicom:XRAY1"}
        assert spool.pending() == []
        # the X-ray unit sends the same film again: recorded once, the resend audited
        assert _send(port, [shared("dicom", names[0])]) == [SUCCESS]
        assert worker.wait_idle(120)
        assert len(store.worklist()) == 1
        assert [e.action for e in store.audit_entries() if e.action == "dicom_duplicate"] == [
            "dicom_duplicate"]
    finally:
        stop.set()
        listener.stop()
        thread.join(timeout=10)
        pipeline.close()
        store.close()


def test_association_limit_and_idle_peers(tmp_path: Path) -> None:
    limits = ListenerLimits(max_associations=2, network_timeout_s=1.0)
    run = _Running(_config(tmp_path), limits=limits)
    held = []
    try:
        for _ in range(2):
            ae = AE(ae_title="XRAY1")
            ae.add_requested_context(sop.Verification)
            assoc = ae.associate("127.0.0.1", run.port, ae_title="KIOSK")
            assert assoc.is_established
            held.append(assoc)
        third = AE(ae_title="XRAY1")
        third.add_requested_context(sop.Verification)
        refused = third.associate("127.0.0.1", run.port, ae_title="KIOSK")
        assert refused.is_rejected  # "local limit exceeded", not a third thread
        for assoc in held:
            assoc.release()
        # a peer that connects and says nothing is dropped after the network timeout
        with socket.create_connection(("127.0.0.1", run.port), timeout=15) as silent:
            started = time.monotonic()
            assert silent.recv(1) == b""
            assert time.monotonic() - started < 10
    finally:
        run.listener.stop()


def _store_event(dataset: bytes | None) -> object:
    """A C-STORE event built the way pynetdicom hands it to the handler (no network needed)."""
    import io

    from pynetdicom import build_context, evt
    from pynetdicom.ae import ApplicationEntity
    from pynetdicom.association import Association
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.events import Event

    assoc = Association(ApplicationEntity("KIOSK"), "acceptor")
    assoc.requestor.ae_title = "XRAY1"
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = sop.ComputedRadiographyImageStorage
    request.AffectedSOPInstanceUID = generate_uid()
    if dataset is not None:
        request.DataSet = io.BytesIO(dataset)
    context = build_context(sop.ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
    context.context_id = 1
    return Event(assoc, evt.EVT_C_STORE, {"request": request, "context": context.as_tuple})


def test_handler_statuses_for_what_it_cannot_understand_or_store(tmp_path: Path) -> None:
    from hardware.listener import CANNOT_UNDERSTAND, handle_store

    spool = Spool(tmp_path / "spool")
    assert handle_store(_store_event(None), spool, None) == CANNOT_UNDERSTAND  # no dataset at all
    assert spool.pending() == []
    assert handle_store(_store_event(b"\x08\x00\x16\x00UI\x02\x001\x00"), spool, None) == SUCCESS
    shutil.rmtree(spool.folder)  # the disk or folder went away under the kiosk
    assert handle_store(_store_event(b"\x08\x00\x16\x00UI\x02\x001\x00"), spool, None) == OUT_OF_RESOURCES


def test_worker_keeps_a_film_while_no_model_can_screen_it(tmp_path: Path) -> None:
    import threading

    from kiosk.errors import KioskError

    spool = Spool(tmp_path / "spool")
    path = spool.put(shared("dicom", CHESTS[0]).read_bytes())
    attempts: list[Path] = []

    def screen(film: Path) -> None:
        attempts.append(film)
        if len(attempts) < 3:  # as serve does while the models are not loadable yet
            raise KioskError("no model can screen it yet", code="no_model", retryable=True)

    worker = SpoolWorker(spool, screen, retry_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while spool.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=5)
    assert attempts == [path, path, path]
    assert spool.pending() == [] and spool.refused() == []
