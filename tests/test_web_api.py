"""The JSON API against its own OpenAPI description: every documented operation exists, every
/api route is documented, and real answers match the documented schemas and status codes."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.screening_setup import darkened, model_settings, open_pipeline
from browser.web_support import add_user, make_app, post_multipart, web_config
from conftest import shared
from flask import Flask
from jsonschema import Draft202012Validator

from kiosk.store import Store
from web.openapi import openapi_document
from web.security import api_token

DOC = openapi_document()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return model_settings(tmp_path_factory.mktemp("models"))


@pytest.fixture
def kiosk(tmp_path: Path, models: dict[str, object]) -> Iterator[tuple[Flask, Store]]:
    config = web_config(tmp_path, hl7_address="127.0.0.1:9", **models)
    pipeline = open_pipeline(config)
    app, store = make_app(config, pipeline=pipeline)
    add_user(store, "nurse", "operator")
    add_user(store, "doctor", "clinician")
    yield app, store
    pipeline.close()
    store.close()


def _headers(app: Flask, store: Store, username: str) -> dict[str, str]:
    with app.test_request_context():
        return {"Authorization": f"Bearer {api_token(store.get_user(username))}"}


def _conforms(path: str, method: str, response: Any) -> Any:
    """Assert the status is documented for the operation and the body matches its schema."""
    operation = DOC["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (path, method, status, response.get_data(as_text=True))
    body = response.get_json()
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": DOC["components"]})
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, (path, method, [e.message for e in errors])
    return body


def test_every_documented_operation_is_a_real_route_and_back(kiosk) -> None:
    app, _ = kiosk
    real = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            real |= {(path, m.lower()) for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    documented = {(p, m) for p, ops in DOC["paths"].items() for m in ops}
    assert documented == real


def test_the_document_is_served_and_well_formed(kiosk) -> None:
    app, store = kiosk
    client = app.test_client(use_cookies=False)
    served = client.get("/api/openapi.json", headers=_headers(app, store, "nurse")).get_json()
    assert served == DOC and served["openapi"].startswith("3.1")
    ids = [op["operationId"] for ops in DOC["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, ops in DOC["paths"].items():
        for op in ops.values():
            for name in re.findall(r"{(\w+)}", path):
                assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"])


def test_health_reports_back_ends_and_queue_depth(kiosk) -> None:
    app, store = kiosk
    client = app.test_client(use_cookies=False)
    body = _conforms("/api/health", "get", client.get("/api/health",
                                                      headers=_headers(app, store, "nurse")))
    assert body["status"] == "ok" and body["backends"] == ["onnxruntime-cpu"]
    assert {m["id"] for m in body["models"]} == {"fundus-dr", "cxr-pneumonia"}
    assert body["queue"][0]["destination"] == "hl7" and body["queue_depth"] == 0
    _conforms("/api/health", "get", client.get("/api/health"))  # 401 documented


def test_patient_screening_read_and_sign_off_through_the_api(kiosk) -> None:
    app, store = kiosk
    client = app.test_client(use_cookies=False)
    nurse = _headers(app, store, "nurse")
    patient = _conforms("/api/patients", "post", client.post(
        "/api/patients", json={"identifier": "API-1", "name": "Yaw Asante", "sex": "male"},
        headers=nurse))
    _conforms("/api/patients", "post", client.post("/api/patients", json={"name": "x"},
                                                   headers=nurse))  # 400
    found = _conforms("/api/patients", "get", client.get("/api/patients?q=Asante", headers=nurse))
    assert found["patients"][0]["id"] == patient["id"]
    assert (patient["family_name"], patient["given_names"]) == (None, [])  # one text: never split
    parts = _conforms("/api/patients", "post", client.post("/api/patients", json={
        "identifier": "API-3", "family_name": "de la Cruz", "given_names": "José Luis"},
        headers=nurse))
    assert (parts["name"], parts["family_name"], parts["given_names"]) == (
        "José Luis de la Cruz", "de la Cruz", ["José Luis"])
    chest = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes()
    created = post_multipart(client, "/api/screenings", headers=nurse, data={
        "patient_id": str(patient["id"]), "image": (io.BytesIO(chest), "siim.dcm"),
        "identity_checked": "yes"})  # the film's own PatientID is not ours: checked
    screening = _conforms("/api/screenings", "post", created)
    assert created.status_code == 201 and screening["results"][0]["task"] == "cxr-pneumonia"
    assert store.outbox_status()[0].waiting == 1
    again = post_multipart(client, "/api/screenings", headers=nurse, data={
        "patient_id": str(patient["id"]), "image": (io.BytesIO(chest), "siim-again.dcm"),
        "identity_checked": "yes"})  # the same film again: never a second screening
    seen = _conforms("/api/screenings", "post", again)
    assert again.status_code == 409 and seen["code"] == "film_seen_before"
    assert seen["screening_id"] == screening["id"] and store.outbox_status()[0].waiting == 1
    url = f"/api/screenings/{screening['id']}"
    read = _conforms("/api/screenings/{screening_id}", "get", client.get(url, headers=nurse))
    assert read["verdict"] == screening["verdict"] and "not for clinical" in read["intended_use"]
    _conforms("/api/screenings/{screening_id}", "get", client.get("/api/screenings/999",
                                                                  headers=nurse))  # 404
    sign = "/api/screenings/{screening_id}/sign-off"
    denied = client.post(url + "/sign-off", json={"decision": "confirm"}, headers=nurse)
    assert denied.status_code == 403
    _conforms(sign, "post", denied)
    doctor = _headers(app, store, "doctor")
    signed = _conforms(sign, "post", client.post(url + "/sign-off", json={
        "decision": "confirm", "note": "agree"}, headers=doctor))
    assert signed["sign_off"]["decision"] == "confirm" and signed["sign_off"]["clinician"] == "doctor"
    assert store.audit_entries("api_read_screening")


def test_an_ungradable_upload_is_a_documented_422_with_the_retake(kiosk) -> None:
    app, store = kiosk
    client = app.test_client(use_cookies=False)
    nurse = _headers(app, store, "nurse")
    patient = client.post("/api/patients", json={"identifier": "API-2", "name": "Abena"},
                          headers=nurse).get_json()
    photo = shared("fundus", "eyepacs-fullres", "13_left.jpeg").read_bytes()
    refused = post_multipart(client, "/api/screenings", headers=nurse, data={
        "patient_id": str(patient["id"]), "left_eye": (io.BytesIO(darkened(photo)), "dark.jpg")})
    body = _conforms("/api/screenings", "post", refused)
    assert refused.status_code == 422 and body["code"] == "retake"
    assert body["retakes"][0]["line"].startswith("Retake the photo: ")
    assert store.worklist() == []
    missing = post_multipart(client, "/api/screenings", headers=nurse,
                             data={"patient_id": str(patient["id"])})
    _conforms("/api/screenings", "post", missing)
    assert missing.status_code == 400


def test_the_instant_gate_answers_without_storing(kiosk) -> None:
    app, store = kiosk
    client = app.test_client(use_cookies=False)
    nurse = _headers(app, store, "nurse")
    photo = shared("fundus", "eyepacs-fullres", "13_left.jpeg").read_bytes()
    good = _conforms("/api/check", "post", post_multipart(client, "/api/check", headers=nurse,
                     data={"image": (io.BytesIO(photo), "13_left.jpeg"), "task": "fundus-dr"}))
    # a bearer client gets no handle: only the capture page's session resends a checked photo
    assert good == {"gradable": True, "retakes": [], "warnings": [], "handles": []}
    bad = _conforms("/api/check", "post", post_multipart(client, "/api/check", headers=nurse,
                    data={"image": (io.BytesIO(darkened(photo)), "dark.jpg")}))
    assert bad["gradable"] is False and "too dark" in bad["retakes"][0]["line"].lower()
    assert store.worklist() == []


def test_csrf_endpoint_conforms(kiosk) -> None:
    app, store = kiosk
    client = app.test_client(use_cookies=False)
    body = _conforms("/api/csrf", "get", client.get("/api/csrf",
                                                    headers=_headers(app, store, "nurse")))
    assert body["csrf_token"]


def test_a_refused_bundle_shows_on_admin_and_degrades_health(tmp_path: Path) -> None:
    from browser.web_support import login
    from bundle_builder import build_bundle, make_keys

    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys, kind="fundus")
    bad = build_bundle(tmp_path / "models", keys, kind="cxr")
    (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes() + b"tampered")
    config = web_config(tmp_path, models_dir=tmp_path / "models", trusted_keys=keys.trusted_dir,
                        sandbox_workers=0)
    app, store = make_app(config)  # the pipeline loads on first use, as in `kiosk serve`
    add_user(store, "boss", "admin")
    client = app.test_client()
    login(client, "boss")
    page = client.get("/admin/").get_data(as_text=True)
    assert "refused" in page and "cxr-pneumonia-1.0.0" in page and "verified" in page
    body = _conforms("/api/health", "get", client.get("/api/health"))
    assert body["status"] == "degraded" and body["backends"] == ["onnxruntime-cpu"]
    app.extensions["kiosk"].pipeline.close()


def test_an_existing_id_with_other_details_is_never_silently_renamed(kiosk) -> None:
    app, store = kiosk
    client = app.test_client(use_cookies=False)
    nurse = _headers(app, store, "nurse")
    first = {"identifier": "API-9", "family_name": "Tesfaye", "given_names": "Abebe",
             "birth_date": "1970-01-02", "sex": "male"}
    patient = _conforms("/api/patients", "post", client.post("/api/patients", json=first,
                                                             headers=nurse))
    other = {**first, "given_names": "Almaz", "sex": "female"}
    clash = client.post("/api/patients", json=other, headers=nurse)
    _conforms("/api/patients", "post", clash)
    assert clash.status_code == 409 and clash.get_json()["code"] == "confirm_change"
    assert store.get_patient(patient["id"]).sex == "male"  # nothing changed
    changed = client.post("/api/patients", json={**other, "confirm_change": "API-9"},
                          headers=nurse)
    assert changed.status_code == 201 and store.get_patient(patient["id"]).sex == "female"
    assert store.audit_entries("patient.change_confirmed")


def test_the_api_needs_both_eyes_or_a_reason_and_a_checked_identity(kiosk) -> None:
    app, store = kiosk
    client = app.test_client(use_cookies=False)
    nurse = _headers(app, store, "nurse")
    patient = client.post("/api/patients", json={"identifier": "API-E", "name": "Efua Sey"},
                          headers=nurse).get_json()
    photo = shared("fundus", "eyepacs-fullres", "13_left.jpeg").read_bytes()
    one = post_multipart(client, "/api/screenings", headers=nurse, data={
        "patient_id": str(patient["id"]), "left_eye": (io.BytesIO(photo), "13_left.jpeg")})
    assert one.status_code == 422 and _conforms("/api/screenings", "post", one)["code"] == \
        "incomplete_visit"
    swapped = post_multipart(client, "/api/screenings", headers=nurse, data={
        "patient_id": str(patient["id"]), "right_eye": (io.BytesIO(photo), "13_left.jpeg"),
        "missing_L": "the patient declined"})
    assert swapped.status_code == 422 and swapped.get_json()["code"] == "check_identity"
    assert store.worklist() == []
    kept = post_multipart(client, "/api/screenings", headers=nurse, data={
        "patient_id": str(patient["id"]), "left_eye": (io.BytesIO(photo), "13_left.jpeg"),
        "missing_R": "the patient declined"})
    body = _conforms("/api/screenings", "post", kept)
    assert kept.status_code == 201 and "Right eye not photographed" in body["action"]


def test_an_error_keeps_the_kiosks_english_and_gives_the_readers_words(kiosk) -> None:
    app, store = kiosk
    client = app.test_client(use_cookies=False)
    headers = {**_headers(app, store, "nurse"), "Accept-Language": "fr-FR"}
    refused = _conforms("/api/screenings/{screening_id}", "get",
                        client.get("/api/screenings/424242", headers=headers))
    assert refused["code"] == "not_found"
    assert "424242" in refused["message"]  # the kiosk's own (English) words
    assert refused["words"] == "Cet enregistrement n'existe pas (ou plus)."
