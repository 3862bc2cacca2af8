"""Session-scoped real peers on 127.0.0.1: the FHIR server (Node), Orthanc (C-STORE and
DICOMweb), the MLLP receiver, and helpers that read back what each peer holds."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from peers.mllp import MllpPeer

HERE = Path(__file__).resolve().parent
ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout_s} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class FhirPeer:
    """The in-memory FHIR R4 server (Medplum fhir-router) and what it holds."""

    base: str

    def search(self, resource_type: str, **params: str) -> list[dict]:
        """Every resource of a type matching the search, following the paging links."""
        found: list[dict] = []
        while True:  # page by _offset: this server caps _count and gives no next links
            answer = requests.get(f"{self.base}/{resource_type}", timeout=60, params={
                "_count": "1000", "_offset": str(len(found)), **params}).json()
            page = [e["resource"] for e in answer.get("entry", [])]
            found += page
            if len(page) < 1000:
                return found

    def total(self, resource_type: str) -> int:
        """How many resources of a type the server holds."""
        answer = requests.get(f"{self.base}/{resource_type}", params={"_count": "1"},
                              timeout=30).json()
        return int(answer["total"])

    def reports_by_screening(self) -> Counter[str]:
        """How many DiagnosticReports each screening uid has."""
        return Counter(ident["value"] for report in self.search("DiagnosticReport")
                       for ident in report.get("identifier", [])
                       if ident.get("system") == "urn:kiosk:screening")


def start_fhir(log_folder: Path, token: str = "") -> Iterator[FhirPeer]:
    """Run the FHIR server on a free loopback port until the generator is closed."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed (scripts/setup.sh installs it)")
    if not (HERE / "fhir" / "node_modules" / "@medplum" / "fhir-router").exists():
        pytest.skip("the FHIR peer's npm packages are absent: run scripts/setup.sh (npm ci)")
    port = free_port()
    log = (log_folder / "server.log").open("w")
    process = subprocess.Popen(["node", "server.js", str(port)], cwd=HERE / "fhir",
                               stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "FHIR_PEER_TOKEN": token})
    try:
        _wait_http(f"http://127.0.0.1:{port}/fhir/Patient", process, "the FHIR server")
        yield FhirPeer(f"http://127.0.0.1:{port}/fhir")
    finally:
        _stop(process)
        log.close()


@pytest.fixture(scope="session")
def fhir_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirPeer]:
    """The FHIR server on a free loopback port (skips when its npm packages are absent)."""
    yield from start_fhir(tmp_path_factory.mktemp("fhir"))


@pytest.fixture(scope="session")
def mllp_peer() -> Iterator[MllpPeer]:
    """The HL7 v2 MLLP receiver on a free loopback port."""
    peer = MllpPeer()
    yield peer
    peer.stop()


@dataclass
class OrthancPeer:
    """One Orthanc: its DICOM port and AE title, its REST/DICOMweb base, what it holds."""

    dicom_port: int
    http: str
    aet: str = "ORTHANC"

    @property
    def pacs_address(self) -> str:
        """KIOSK_PACS_ADDRESS for it."""
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    @property
    def dicomweb_url(self) -> str:
        """KIOSK_DICOMWEB_URL for it."""
        return f"{self.http}/dicom-web"

    def sop_uids(self) -> Counter[str]:
        """How many stored instances carry each SOP Instance UID."""
        answer = requests.post(f"{self.http}/tools/find", timeout=60, json={
            "Level": "Instance", "Query": {}, "Expand": True}).json()
        return Counter(i["MainDicomTags"]["SOPInstanceUID"] for i in answer)


def _orthanc(folder: Path) -> tuple[subprocess.Popen, OrthancPeer]:
    peer = OrthancPeer(dicom_port=free_port(), http=f"http://127.0.0.1:{free_port()}")
    config = {
        "Name": "kiosk-test", "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"), "Plugins": [str(ORTHANC_PLUGIN)],
        "HttpPort": int(peer.http.rsplit(":", 1)[1]), "DicomPort": peer.dicom_port,
        "DicomAet": peer.aet, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True,
        "DicomModalities": {"kiosk": ["KIOSK", "127.0.0.1", 11112]},
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "OverwriteInstances": False,
        "StorageCompression": False, "ConcurrentJobs": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen(["Orthanc", str(folder / "orthanc.json")], stdout=log,
                               stderr=subprocess.STDOUT)
    log.close()
    _wait_http(f"{peer.http}/system", process, "Orthanc")
    return process, peer


@pytest.fixture(scope="session")
def orthanc_pair() -> Iterator[tuple[OrthancPeer, OrthancPeer]]:
    """Two Orthancs (one for C-STORE, one for STOW-RS), only inside a private network namespace."""
    if os.environ.get("KIOSK_TEST_NETNS") != "1":
        pytest.skip("Orthanc listens on every interface: it runs only inside the private network "
                    "namespace of scripts/test.sh (KIOSK_TEST_NETNS=1)")
    if shutil.which("Orthanc") is None or not ORTHANC_PLUGIN.exists():
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (scripts/setup.sh)")
    # The PACS's own storage lives in memory when it can (its fsyncs are not what is tested).
    shm = Path("/dev/shm")
    folders = [Path(tempfile.mkdtemp(prefix="kiosk-orthanc-", dir=shm if shm.is_dir() else None))
               for _ in (1, 2)]
    started = [_orthanc(folder) for folder in folders]
    try:
        yield started[0][1], started[1][1]
    finally:
        for process, _ in started:
            _stop(process)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
