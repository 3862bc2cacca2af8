"""No patient identifier, name or birth date reaches the logs during a screening and sync round.

Everything runs for real: the web app with the real store and pipeline (tiny signed bundles), a
nurse registering a patient (and mistyping the form once), two eyes uploaded and a chest film
refused, a clinician's sign-off, a film pushed by DICOM and one refused, then sync to the HL7
MLLP peer on loopback while the FHIR destination is unreachable (the error paths log most).
Every log record of every logger, at DEBUG, is searched for the patient's details.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from browser.screening_setup import model_settings, open_pipeline
from browser.web_support import add_user, login, make_app, page_token, post_multipart, web_config
from builders import chest_phantom, film_dicom, limb_phantom
from conftest import shared
from flask.testing import FlaskClient
from peers.mllp import MllpPeer

from hardware.pushed import screen_spooled_film
from kiosk.errors import KioskError
from kiosk.sync import make_worker

IDENTIFIER, GIVEN, FAMILY, BIRTH = "PHI-93417-X", "Thandiwe", "Nkosazana", "1958-07-23"
SECRETS = [IDENTIFIER, GIVEN, FAMILY, BIRTH, BIRTH.replace("-", ""), "DICOM-PHI-5521", "Okonkwo"]


def _register(client: FlaskClient) -> int:
    token = page_token(client, "/patients")
    mistyped = client.post("/patients", data={"identifier": IDENTIFIER, "name": f"{GIVEN} {FAMILY}",
                                              "birth_date": "23/07/58", "sex": "female", "csrf_token": token})
    assert mistyped.status_code == 400
    answer = client.post("/patients", data={"identifier": IDENTIFIER, "name": f"{GIVEN} {FAMILY}",
                                            "birth_date": BIRTH, "sex": "female", "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:1000]
    return int(answer.headers["Location"].split("/")[2])


def _upload(client: FlaskClient, patient_id: int, **files: tuple[bytes, str]) -> object:
    data: dict[str, object] = {"csrf_token": page_token(client, f"/patients/{patient_id}/capture")}
    for field, (content, name) in files.items():
        data[field] = (io.BytesIO(content), name)
    return post_multipart(client, f"/patients/{patient_id}/capture", data)


def _pushed_film(folder: Path, name: str, pixels: np.ndarray, body_part: str) -> Path:
    data = film_dicom(pixels, body_part=body_part)
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(data))
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = "DICOM-PHI-5521", "Okonkwo^Thandiwe", "19580723"
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return model_settings(tmp_path_factory.mktemp("models"))


def test_no_patient_identifier_reaches_the_logs(
        tmp_path: Path, models: dict[str, object], mllp_peer: MllpPeer,
        caplog: pytest.LogCaptureFixture) -> None:
    left, right = shared("fundus", "eyepacs-fullres", "13_left.jpeg"), shared(
        "fundus", "eyepacs-fullres", "13_right.jpeg")
    config = web_config(tmp_path, **models, hl7_address=f"127.0.0.1:{mllp_peer.port}",
                        fhir_url="http://127.0.0.1:9/fhir", sync_timeout_s=2.0)
    pipeline = open_pipeline(config)
    app, store = make_app(config, pipeline=pipeline)
    add_user(store, "nurse", "operator")
    add_user(store, "doctor", "clinician")
    caplog.set_level(logging.DEBUG)
    try:
        nurse = app.test_client()
        login(nurse, "nurse")
        patient_id = _register(nurse)
        assert nurse.get(f"/api/patients?q={GIVEN}").status_code == 200
        refused = _upload(nurse, patient_id, chest=(b"%PDF-1.4 " + FAMILY.encode(), f"{FAMILY}.pdf"))
        assert refused.status_code == 422  # type: ignore[attr-defined]
        answer = _upload(nurse, patient_id, right_eye=(right.read_bytes(), f"{FAMILY}_R.jpg"),
                         left_eye=(left.read_bytes(), f"{FAMILY}_L.jpg"))
        assert answer.status_code == 302  # type: ignore[attr-defined]
        location = answer.headers["Location"]  # type: ignore[attr-defined]
        screening_id = int(location.rsplit("/", 1)[1])
        assert nurse.get(location).status_code == 200
        doctor = app.test_client()
        login(doctor, "doctor")
        token = page_token(doctor, f"/screenings/{screening_id}")
        signed = doctor.post(f"/screenings/{screening_id}/sign-off", data={
            "decision": "overrule", "verdict": "non_referable", "csrf_token": token,
            "note": f"Discussed with {GIVEN} {FAMILY}; artefact"})
        assert signed.status_code == 302
        assert doctor.get(f"/screenings/{screening_id}/slip.pdf").status_code == 200
        good = _pushed_film(tmp_path, "pushed.dcm", chest_phantom(256), "CHEST")
        screen_spooled_film(good, pipeline, store)
        with pytest.raises(KioskError):
            limb = _pushed_film(tmp_path, "limb.dcm", limb_phantom(256), "KNEE")
            screen_spooled_film(limb, pipeline, store)
        report = make_worker(store).run_once()
        assert report.sent >= 1 and report.retrying >= 1  # HL7 delivered, FHIR unreachable
    finally:
        pipeline.close()
        store.close()
    assert len(caplog.records) >= 5, "nothing was logged: the check would prove nothing"
    leaks = [f"{r.name}:{r.levelname}: {r.getMessage()} {r.exc_text or ''}"[:400]
             for r in caplog.records
             if any(secret.lower() in f"{r.getMessage()} {r.exc_text or ''}".lower() for secret in SECRETS)]
    assert leaks == []


class _QuotingFhirServer:
    """A stand-in FHIR server (a mock: the real Medplum peer accepts the kiosk's valid resources)
    that refuses every transaction with an OperationOutcome quoting the patient's name, as real
    servers' validation messages do (e.g. "Invalid value 'Thandiwe' for Patient.name")."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("utf-8", "replace")
                names = [part for part in (GIVEN, FAMILY, IDENTIFIER) if part in body]
                outcome = {"resourceType": "OperationOutcome", "issue": [{
                    "severity": "error", "code": "invalid",
                    "diagnostics": f"Invalid value '{' '.join(names)}' for Patient.name"}]}
                data = json.dumps(outcome).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# A sync bug found by this test was fixed in 09fe784 (diagnostics no longer logged or kept).
def test_a_fhir_refusal_quoting_the_patient_is_not_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from store_helpers import screen

    from kiosk.config import load_config
    from kiosk.store import Store

    server = _QuotingFhirServer()
    store = Store.open(load_config(env={}, data_dir=tmp_path / "data", fhir_url=server.base,
                                   min_free_disk_mb=1, sync_timeout_s=2.0))
    caplog.set_level(logging.DEBUG)
    try:
        screen(store, 1, identifier=IDENTIFIER)
        store.upsert_patient(IDENTIFIER, f"{GIVEN} {FAMILY}", BIRTH, "female", actor="nurse")
        make_worker(store).run_once()
        assert store.parked_items(), "the refusal should park the item"
    finally:
        store.close()
        server.close()
    leaks = [r.getMessage()[:300] for r in caplog.records
             if any(s.lower() in r.getMessage().lower() for s in SECRETS)]
    assert leaks == []
