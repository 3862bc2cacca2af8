"""``kiosk doctor`` on a healthy installation with real peers on loopback (an HTTP server for
the EHR, a TCP listener for HL7, the kiosk's own DICOM SCP as the PACS), then broken ones: each
problem is named with its fix, and any FAIL makes the exit status 1."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from bundle_builder import build_bundle, make_keys

from hardware.listener import DicomListener
from hardware.spool import Spool
from kiosk.cli import main
from kiosk.commands.doctor import Check, check_clock, check_store, run_checks
from kiosk.config import Config, load_config
from kiosk.store import Store


class _Http(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.end_headers()
        self.wfile.write(b'{"resourceType": "CapabilityStatement"}')


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[dict[str, str]]:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Http)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    hl7 = socket.socket()
    hl7.bind(("127.0.0.1", 0))
    hl7.listen(4)
    pacs_config = load_config(env={}, data_dir=tmp_path / "pacs", dicom_ae_title="PACS",
                              dicom_host="127.0.0.1", dicom_port=0)
    pacs = DicomListener(pacs_config, Spool(tmp_path / "pacs" / "spool"))
    pacs_port = pacs.start()
    yield {"fhir_url": f"http://127.0.0.1:{http.server_address[1]}/fhir",
           "hl7_address": f"127.0.0.1:{hl7.getsockname()[1]}",
           "pacs_address": f"PACS@127.0.0.1:{pacs_port}"}
    pacs.stop()
    hl7.close()
    http.shutdown()
    http.server_close()


def _installation(tmp_path: Path, **overrides: object) -> Config:
    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys, kind="cxr")
    values: dict[str, object] = {"data_dir": tmp_path / "data", "models_dir": tmp_path / "models",
                                 "trusted_keys": keys.trusted_dir, "engine_cache_dir": tmp_path / "e",
                                 "sandbox_workers": 0, "min_free_disk_mb": 1, "dicom_port": 0}
    values.update(overrides)
    return load_config(env={}, **values)


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_healthy_installation_passes(tmp_path: Path, peers: dict[str, str]) -> None:
    checks = run_checks(_installation(tmp_path, **peers))
    found = _by_name(checks)
    assert [c for c in checks if c.status == "FAIL"] == []
    for name in ("data folder", "disk space", "store", "store integrity", "audit log", "models",
                 "back-end", "FHIR", "HL7", "PACS"):
        assert found[name].status == "OK", found[name]
    assert "synchronous=2" in found["store"].detail and "journal_mode=wal" in found["store"].detail
    assert "cxr-pneumonia 1.0.0 verified" in found["models"].detail
    assert "onnxruntime-cpu" in found["back-end"].detail
    assert "C-ECHO" in found["PACS"].detail


def test_unreachable_peers_warn_but_do_not_fail(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    config = _installation(tmp_path, fhir_url=f"http://127.0.0.1:{dead}/fhir",
                           hl7_address=f"127.0.0.1:{dead}", pacs_address=f"PACS@127.0.0.1:{dead}")
    found = _by_name(run_checks(config))
    for name in ("FHIR", "HL7", "PACS"):
        assert found[name].status == "WARN" and "outbox" in found[name].fix
    assert all(c.status != "FAIL" for c in found.values())


def test_a_tampered_model_fails_with_its_reason(tmp_path: Path) -> None:
    config = _installation(tmp_path)
    model = next((tmp_path / "models").glob("*/model.onnx"))
    model.write_bytes(model.read_bytes() + b"\x00")
    found = _by_name(run_checks(config, quick=True))
    assert found["models"].status == "FAIL" and "signed copy" in found["models"].fix


def test_low_disk_and_unwritable_data_folder_fail(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("a file where the data folder should be")
    config = _installation(tmp_path, data_dir=tmp_path / "not-a-folder" / "data",
                           min_free_disk_mb=10**9)
    found = _by_name(run_checks(config, quick=True))
    assert found["data folder"].status == "FAIL" and "KIOSK_DATA_DIR" in found["data folder"].fix
    assert found["disk space"].status == "FAIL"


def test_a_broken_audit_chain_and_a_damaged_store_fail(tmp_path: Path) -> None:
    config = _installation(tmp_path)
    store = Store.open(config)
    store.audit("nurse", "login")
    store.audit("nurse", "capture")
    store.close()
    with sqlite3.connect(config.db_path) as conn:  # an edit behind the kiosk's back
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("UPDATE audit SET actor = 'someone else' WHERE id = 1")
    found = _by_name(check_store(config))
    assert found["audit log"].status == "FAIL" and "entry 1" in found["audit log"].detail
    damaged = _installation(tmp_path / "other")
    damaged.data_dir.mkdir(parents=True)
    damaged.db_path.write_bytes(b"this is not a database" * 100)
    assert check_store(damaged)[0].status == "FAIL"


def test_clock_before_the_release_or_behind_the_store_fails(tmp_path: Path) -> None:
    config = _installation(tmp_path)
    (check,) = check_clock(config, now=datetime(2020, 1, 1, tzinfo=UTC))
    assert check.status == "FAIL" and "timedatectl" in check.fix
    config.data_dir.mkdir(parents=True)
    Store.open(config).close()
    future = time.time() + 86400
    os.utime(config.db_path, (future, future))
    (check,) = check_clock(config)
    assert check.status == "FAIL" and "backwards" in check.detail
    os.utime(config.db_path, (time.time(), time.time()))
    assert check_clock(config)[0].status in ("OK", "WARN")


def test_the_command_prints_fixes_and_exits_1_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _installation(tmp_path)
    for name, value in {"DATA_DIR": config.data_dir, "MODELS_DIR": config.models_dir,
                        "TRUSTED_KEYS": config.trusted_keys, "MIN_FREE_DISK_MB": 1,
                        "DICOM_PORT": 0, "SANDBOX_WORKERS": 0}.items():
        monkeypatch.setenv(f"KIOSK_{name}", str(value))
    assert main(["doctor", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "[ OK ] models" in out and "0 failed" in out
    monkeypatch.setenv("KIOSK_MODELS_DIR", str(tmp_path / "no-models-here"))
    assert main(["doctor", "--quick", "--json"]) == 1
    checks = json.loads(capsys.readouterr().out)
    (models,) = [c for c in checks if c["name"] == "models"]
    assert models["status"] == "FAIL" and "KIOSK_MODELS_DIR" in models["fix"]
