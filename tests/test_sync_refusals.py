"""Refusals understood (issue 18, point 6): a PACS that is not listening, one that rejects the
association for now, one that rejects it for good, and one that answers a failure status are
told apart. What retrying cannot fix is parked at once, with the peer's own words, and shown by
``kiosk sync --status`` and the admin's sync page.

Real peers: Orthanc with its called-AE check on (it rejects "Called AE title not recognised"),
and pynetdicom storage SCPs that reject for a local limit or answer failure statuses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from browser.web_support import add_user, login, make_app
from peers.fixtures import ORTHANC_PLUGIN, OrthancPeer, _stop, _wait_http, free_port
from pydicom import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from store_helpers import screen

from kiosk.config import Config
from kiosk.errors import SyncError
from kiosk.store import Store
from kiosk.sync import make_worker
from kiosk.sync.base import error_kind
from kiosk.sync.hl7 import check_ack
from kiosk.sync.status import sync_status

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def strict_orthanc() -> Iterator[OrthancPeer]:
    """An Orthanc that checks the called AE title (as a hospital PACS usually does)."""
    if os.environ.get("KIOSK_TEST_NETNS") != "1":
        pytest.skip("Orthanc runs only inside the private network namespace (KIOSK_TEST_NETNS=1)")
    if shutil.which("Orthanc") is None or not ORTHANC_PLUGIN.exists():
        pytest.skip("Orthanc is not installed (scripts/setup.sh)")
    folder = Path(tempfile.mkdtemp(prefix="kiosk-orthanc-strict-"))
    peer = OrthancPeer(dicom_port=free_port(), http=f"http://127.0.0.1:{free_port()}",
                       aet="STRICTPACS")
    (folder / "orthanc.json").write_text(json.dumps({
        "Name": "strict", "StorageDirectory": str(folder / "s"), "IndexDirectory": str(folder),
        "HttpPort": int(peer.http.rsplit(":", 1)[1]), "DicomPort": peer.dicom_port,
        "DicomAet": peer.aet, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True}))
    with (folder / "orthanc.log").open("w") as log:
        process = subprocess.Popen(["Orthanc", str(folder / "orthanc.json")], stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        _wait_http(f"{peer.http}/system", process, "Orthanc")
        yield peer
    finally:
        _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def _store(config: Config, pacs_address: str) -> Store:
    return Store.open(replace(config, min_free_disk_mb=1, sync_timeout_s=5.0,
                              pacs_address=pacs_address))


def _one_pass(store: Store) -> dict:
    """One sync pass, then the status as ``kiosk sync --status`` prints it."""
    make_worker(store).run_once()
    return sync_status(store)


def test_a_pacs_that_rejects_our_ae_title_is_parked_with_its_reason(
        config: Config, strict_orthanc: OrthancPeer) -> None:
    store = _store(config, f"NOTTHEPACS@127.0.0.1:{strict_orthanc.dicom_port}")
    screen(store, 601, identifier="REJ-601")
    screen(store, 602, identifier="REJ-602")
    status = _one_pass(store)
    parked = status["parked"]
    assert [p["destination"] for p in parked] == ["dicom", "dicom"], status  # not retried forever
    for item in parked:
        assert "Rejected Permanent" in item["error"] and "not reachable" not in item["error"]
        assert "Called AE title not recognised" in item["error"]
    assert status["waiting"] == 0
    store.close()
    env = {**os.environ, "KIOSK_DATA_DIR": str(config.data_dir), "KIOSK_MIN_FREE_DISK_MB": "1",
           "KIOSK_PACS_ADDRESS": strict_orthanc.pacs_address}  # the AE title put right
    done = subprocess.run([sys.executable, "-m", "kiosk.cli", "sync", "--retry-destination",
                           "dicom"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and '"sent": 2' in done.stdout, done.stdout + done.stderr
    assert len(strict_orthanc.sop_uids()) == 2 * 3  # two overlays and an SR each


def test_kiosk_sync_status_and_the_sync_page_show_the_peers_words(
        config: Config, strict_orthanc: OrthancPeer, tmp_path: Path) -> None:
    address = f"NOTTHEPACS@127.0.0.1:{strict_orthanc.dicom_port}"
    store = _store(config, address)
    screen(store, 603, identifier="REJ-603")
    store.close()
    env = {**os.environ, "KIOSK_DATA_DIR": str(config.data_dir), "KIOSK_PACS_ADDRESS": address,
           "KIOSK_MIN_FREE_DISK_MB": "1", "KIOSK_SYNC_TIMEOUT_S": "5"}
    cli = [sys.executable, "-m", "kiosk.cli", "sync"]
    assert subprocess.run(cli, cwd=ROOT, env=env, capture_output=True).returncode == 1  # parked
    out = subprocess.run([*cli, "--status"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert "Called AE title not recognised" in status["parked"][0]["error"]
    app, store = make_app(replace(config, pacs_address=address, min_free_disk_mb=1))
    add_user(store, "boss", "admin")
    client = app.test_client()
    login(client, "boss")
    page = client.get("/sync").get_data(as_text=True)
    assert "Called AE title not recognised" in page and "Rejected Permanent" in page
    assert "rejected permanent" in page.lower() and "Parked: 1" in page
    store.close()


class _Scp:
    """A pynetdicom storage SCP on loopback answering every C-STORE with ``status``."""

    def __init__(self, status: int = 0x0000, comment: str = "", limit: int = 10) -> None:
        self.ae = AE(ae_title="TESTSCP")
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.ae.add_supported_context(Verification)
        self.ae.maximum_associations = limit
        self.status, self.comment, self.stores = status, comment, 0
        self.port = free_port()
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event: evt.Event) -> Dataset:
        self.stores += 1
        answer = Dataset()
        answer.Status = self.status
        if self.comment:
            answer.ErrorComment = self.comment
        return answer

    @property
    def address(self) -> str:
        return f"TESTSCP@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


def test_a_pacs_at_its_association_limit_is_retried_not_parked(config: Config) -> None:
    scp = _Scp(limit=1)
    holder = AE(ae_title="HOLDER")
    holder.add_requested_context(Verification)
    held = holder.associate("127.0.0.1", scp.port, ae_title="TESTSCP")  # takes the only slot
    try:
        assert held.is_established
        store = _store(config, scp.address)
        screen(store, 604, identifier="BUSY-604")
        status = _one_pass(store)
        [dicom] = [d for d in status["destinations"] if d["destination"] == "dicom"]
        assert dicom["waiting"] == 1 and not status["parked"]
        assert "rejected it for now" in dicom["last_error"]
        assert "Rejected Transient" in dicom["last_error"]
        assert "Local limit exceeded" in dicom["last_error"]
        store.close()
    finally:
        held.release()
        scp.stop()


def test_nothing_listening_is_unreachable_and_retried(config: Config) -> None:
    store = _store(config, f"NOBODY@127.0.0.1:{free_port()}")
    screen(store, 605, identifier="DOWN-605")
    status = _one_pass(store)
    [dicom] = [d for d in status["destinations"] if d["destination"] == "dicom"]
    assert dicom["waiting"] == 1 and not status["parked"]
    assert "no connection to NOBODY@127.0.0.1" in dicom["last_error"]
    store.close()


@pytest.mark.parametrize(("status", "parked", "words"), [
    (0xA900, True, "Data Set Does Not Match SOP Class"),
    (0xC211, True, "patient unknown to this PACS"),
    (0xA700, False, "Out of Resources"),
])
def test_a_failure_status_is_parked_or_retried_by_its_meaning(
        config: Config, status: int, parked: bool, words: str) -> None:
    scp = _Scp(status=status, comment="patient unknown to this PACS" if status == 0xC211 else "")
    try:
        store = _store(config, scp.address)
        screen(store, 606, identifier="STAT-606")
        answer = _one_pass(store)
        [dicom] = [d for d in answer["destinations"] if d["destination"] == "dicom"]
        assert scp.stores >= 1 and bool(answer["parked"]) is parked
        assert f"0x{status:04X}" in dicom["last_error"] and words in dicom["last_error"]
        store.close()
    finally:
        scp.stop()


@pytest.mark.parametrize(("err", "kind"), [
    ("ERR|||203^Unsupported version id^HL70357|E", "rejected_permanent"),  # v2.5 ERR-3
    ("ERR|^^^200&Unsupported message type&HL70357", "rejected_permanent"),  # v2.3 ERR-1
    ("ERR|||207^Application internal error^HL70357|E", "rejected_transient"),
    ("", "rejected_transient"),
])
def test_an_hl7_application_reject_is_parked_only_when_no_resend_can_help(
        err: str, kind: str) -> None:
    ack = "\r".join(filter(None, ["MSH|^~\\&|EHR|EHR|KIOSK|CLINIC|20260101||ACK^R01^ACK|A1|P|2.5",
                                  "MSA|AR|ID1|not now", err])) + "\r"
    with pytest.raises(SyncError) as caught:
        check_ack(ack, "ID1")
    assert error_kind(caught.value.message) == kind
    assert caught.value.retryable is (kind == "rejected_transient")
    assert "not now" in caught.value.message
