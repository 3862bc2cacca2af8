"""``kiosk serve`` as the service runs it: a real process with the web app (waitress), the DICOM
listener and the sync loop; a chest film and a tibia pushed over loopback; SIGTERM stops it.
And the supervisor that restarts a crashed piece."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest
from bundle_builder import build_bundle, make_keys
from conftest import shared
from pynetdicom import AE

from hardware.supervisor import Supervisor
from kiosk.config import load_config
from kiosk.store import Store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_crashed_service_is_restarted_with_backoff_and_stopped_cleanly() -> None:
    calls: list[float] = []
    steady = threading.Event()

    def flaky(stop: threading.Event) -> None:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise RuntimeError(f"crash {len(calls)}")
        steady.set()
        stop.wait()

    blocked = threading.Event()
    supervisor = Supervisor(first_delay_s=0.05, max_delay_s=1.0)
    supervisor.add("flaky", flaky)
    supervisor.add("blocking", lambda stop: blocked.wait(), interrupt=blocked.set)
    supervisor.start()
    assert steady.wait(10)
    status = {s["name"]: s for s in supervisor.status()}
    assert status["flaky"]["restarts"] == 2 and "crash 2" in str(status["flaky"]["last_error"])
    assert status["flaky"]["running"] and status["blocking"]["running"]
    assert calls[2] - calls[1] >= calls[1] - calls[0]  # the delay grows
    supervisor.stop(timeout_s=5)
    assert all(s.thread is not None and not s.thread.is_alive() for s in supervisor.services)


def _wait_http(url: str, process: subprocess.Popen[str], timeout_s: float = 90) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "kiosk serve exited early"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} never answered")


def _push(port: int, paths: list[Path]) -> list[int]:
    ae = AE(ae_title="XRAY1")
    datasets = [pydicom.dcmread(p) for p in paths]
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    deadline = time.monotonic() + 30
    while True:  # the listener thread may still be starting
        assoc = ae.associate("127.0.0.1", port, ae_title="KIOSK")
        if assoc.is_established or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


@pytest.mark.slow  # a whole kiosk process, started and stopped
def test_kiosk_serve_runs_web_listener_and_sync_and_stops_on_sigterm(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys, kind="cxr")
    data_dir = tmp_path / "fresh" / "data"  # does not exist yet: the first start creates it
    web_port, dicom_port = _free_port(), _free_port()
    env = {**os.environ, "KIOSK_DATA_DIR": str(data_dir), "KIOSK_HOST": "127.0.0.1",
           "KIOSK_PORT": str(web_port), "KIOSK_DICOM_HOST": "127.0.0.1",
           "KIOSK_DICOM_PORT": str(dicom_port), "KIOSK_MODELS_DIR": str(tmp_path / "models"),
           "KIOSK_TRUSTED_KEYS": str(keys.trusted_dir), "KIOSK_ENGINE_CACHE_DIR": str(tmp_path / "e"),
           "KIOSK_SANDBOX_WORKERS": "0", "KIOSK_MIN_FREE_DISK_MB": "1", "KIOSK_SYNC_INTERVAL_S": "1"}
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen([sys.executable, "-m", "kiosk.cli", "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert _wait_http(f"http://127.0.0.1:{web_port}/", process) < 500
        assert data_dir.is_dir()
        films = [shared("dicom", "SIIM-CXR-no-pneumothorax.dcm"), shared("dicom", "RG3_J2KR.dcm")]
        assert _push(dicom_port, films) == [0, 0]
        spool = data_dir / "spool"
        deadline = time.monotonic() + 120
        while (list(spool.glob("*.dcm")) or not list((spool / "refused").glob("*.json"))) \
                and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not list(spool.glob("*.dcm")), "films still waiting in the spool"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.seek(0)
        output = log.read()
        log.close()
    for service in ("web", "dicom-listener", "spool-worker", "sync"):
        assert service in output, output
    assert "stopped" in output and "crashed" not in output, output
    (refused,) = (spool / "refused").glob("*.json")
    assert '"wrong_body_part"' in refused.read_text()
    store = Store.open(load_config(env={}, data_dir=data_dir))
    try:
        (screening,) = store.worklist()
        assert screening.results[0]["task"] == "cxr-pneumonia"
    finally:
        store.close()


def test_serve_with_the_listener_disabled_says_so(tmp_path: Path) -> None:
    from kiosk.commands.serve import build

    config = load_config(env={}, data_dir=tmp_path / "data", dicom_port=0)
    kiosk = build(config)
    try:
        names = [s.name for s in kiosk.supervisor.services]
        assert "dicom-listener" not in names and "web" in names and "sync" in names
        assert kiosk.missing == []
    finally:
        kiosk.close()


@pytest.mark.parametrize("missing", ["web"])
def test_a_piece_that_is_not_built_is_reported_not_faked(tmp_path: Path, missing: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from kiosk.commands.serve import build

    monkeypatch.setitem(sys.modules, missing, None)  # import web -> ImportError, as on a bare install
    kiosk = build(load_config(env={}, data_dir=tmp_path / "data", dicom_port=0))
    try:
        assert any(m.startswith("web app") for m in kiosk.missing)
        assert "web" not in [s.name for s in kiosk.supervisor.services]
    finally:
        kiosk.close()
