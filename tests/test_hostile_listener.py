"""Hostile C-STORE datasets against the DICOM listener and the spool worker behind it.

The films are pushed over a real association on loopback (pynetdicom sends the file's dataset
bytes as they are), spooled by the real listener and taken up by the real spool worker. The
worker's processor here is only ``read_header`` (the first step of ``screen_spooled_film``), so
no model is needed to show what one malformed film does to every film after it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config

from hardware.listener import SUCCESS, DicomListener
from hardware.pushed import read_header
from hardware.spool import Spool, SpoolWorker
from kiosk.config import load_config
from kiosk.errors import KioskError

CR = "1.2.840.10008.5.1.4.1.1.1"
IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
#: Found by fuzz/fuzz_listener.py: bytes that make pydicom raise struct.error / NotImplementedError.
MALFORMED = {
    "short-tag": (IMPLICIT, b"\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x05"),
    "unknown-vr": (EXPLICIT, b"\x10\x000\x00DA\x00\x00" + b"\x10\x00\x40\x00C\xff\x02\x00M "),
}
# Found and fixed: hardware.pushed.read_header let pydicom's struct.error / NotImplementedError
# escape and SpoolWorker._handle caught only KioskError and OSError, so its thread died; both
# now refuse the film (spool/refused/) and the worker carries on.


def _part10(syntax: str, dataset: bytes, uid: str) -> bytes:
    """A file with valid file meta and the given dataset bytes after it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    buffer = io.BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta)
    return buffer.getvalue() + dataset


def _good_dataset(uid: str) -> bytes:
    """An explicit VR little endian header naming a patient and the SOP instance."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CR, uid
    ds.PatientID, ds.PatientName, ds.Modality = "P-7", "Good^Film", "CR"
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_read_header_refuses_a_malformed_dataset_with_a_kiosk_error(case: str) -> None:
    syntax, dataset = MALFORMED[case]
    with pytest.raises(KioskError):
        read_header(_part10(syntax, dataset, generate_uid()))


class _Kiosk:
    """A listener on loopback, its spool, and a spool worker thread reading headers."""

    def __init__(self, tmp_path: Path) -> None:
        config = load_config(env={}, data_dir=tmp_path / "data", dicom_port=0, dicom_host="127.0.0.1",
                             min_free_disk_mb=1)
        self.spool = Spool(config.data_dir / "spool", min_free_mb=1)
        self.read: list[str] = []
        self.worker = SpoolWorker(self.spool, lambda p: self.read.append(read_header(p.read_bytes()).sop_uid),
                                  retry_s=0.2)
        self.listener = DicomListener(config, self.spool, self.worker)
        self.port = self.listener.start()
        self.thread = threading.Thread(target=self.worker.run, daemon=True, name="spool-worker")
        self.thread.start()

    def push(self, files: list[Path]) -> list[int]:
        """Send the files' bytes as they are (chunked from the file, not re-encoded)."""
        ae = AE(ae_title="XRAY1")
        for syntax in (IMPLICIT, EXPLICIT):
            ae.add_requested_context(CR, syntax)
        assoc = ae.associate("127.0.0.1", self.port, ae_title="KIOSK")
        assert assoc.is_established
        try:
            return [int(assoc.send_c_store(path).Status) for path in files]
        finally:
            assoc.release()

    def close(self) -> None:
        self.worker.stop()
        self.listener.stop()
        self.thread.join(5)


@pytest.fixture
def kiosk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Kiosk]:
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    running = _Kiosk(tmp_path)
    yield running
    running.close()


def _files(tmp_path: Path, *cases: str) -> list[Path]:
    paths = []
    for index, case in enumerate(cases):
        uid = f"1.2.826.0.1.3680043.8.498.{index + 10}"
        syntax, dataset = MALFORMED[case] if case in MALFORMED else (EXPLICIT, _good_dataset(uid))
        path = tmp_path / f"{index}-{case}.dcm"
        path.write_bytes(_part10(syntax, dataset, uid))
        paths.append(path)
    return paths


def test_good_films_pushed_over_loopback_are_spooled_and_read(kiosk: _Kiosk, tmp_path: Path) -> None:
    assert kiosk.push(_files(tmp_path, "good", "good")) == [SUCCESS, SUCCESS]
    assert kiosk.worker.wait_idle(20)
    assert sorted(kiosk.read) == ["1.2.826.0.1.3680043.8.498.10", "1.2.826.0.1.3680043.8.498.11"]


def test_a_malformed_film_is_refused_and_the_next_film_is_still_read(kiosk: _Kiosk, tmp_path: Path) -> None:
    assert kiosk.push(_files(tmp_path, "unknown-vr", "good")) == [SUCCESS, SUCCESS]
    kiosk.worker.wait_idle(10)
    assert kiosk.thread.is_alive(), "the spool worker thread died on the malformed film"
    assert kiosk.read == ["1.2.826.0.1.3680043.8.498.11"]
    assert len(kiosk.spool.refused()) == 1 and kiosk.spool.pending() == []
