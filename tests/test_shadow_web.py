"""Shadow mode end to end (issue 16.4): web capture, the JSON API and a pushed film, with the
shipped bundles, a re-signed candidate of each, real photographs and a real chest film.

Staff never see a candidate: its version and sha256 are on no result page, API answer or
outbox payload (FHIR, HL7, DICOM SR), while its readings are kept in the store. The admin's
Models page promotes it (new screenings use it) and rolls back in one step; each is audited.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.web_support import add_user, login, make_app, page_token, post_multipart, web_config
from conftest import new_shot, shared
from flask import Flask
from flask.testing import FlaskClient
from shadow_support import Models, make_candidate, models_with

from hardware.pushed import screen_spooled_film
from kiosk.lifecycle import models as lineup
from kiosk.lifecycle.shadow import ShadowRunner
from kiosk.store import Store
from kiosk.store import shadow as kept
from kiosk.sync.base import Delivery
from kiosk.sync.dicom_objects import datasets
from kiosk.sync.fhir import bundle
from kiosk.sync.hl7 import build_oru
from web.security import api_token
from web.services import services

FUNDUS, CHEST = "fundus-dr", "cxr-adult"
EYES = ("10_right.jpeg", "10_left.jpeg")  # EyePACS patient 10, both eyes (grade 0)
FILM = "RG1_J2KI.dcm"  # an adult's CR chest film, Philips, JPEG 2000, with the age in its header


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[tuple[Flask, Store, Models, dict[str, Any]]]:
    """The web app on a fresh store with both shipped bundles and one installed candidate each."""
    models = models_with(tmp_path, FUNDUS, CHEST)
    config = web_config(tmp_path, models_dir=models.folder, trusted_keys=models.trusted,
                        sandbox_workers=0, fhir_url="http://127.0.0.1:9/fhir",
                        hl7_address="127.0.0.1:9", pacs_address="PACS@127.0.0.1:9")
    app, store = make_app(config)  # the lazy pipeline: the active lineup, candidates in shadow
    candidates = {}
    for task in (FUNDUS, CHEST):
        folder, _ = make_candidate(models.shipped[task], tmp_path / "incoming", models.keys)
        candidates[task] = lineup.install(config, store, folder, actor="admin")
    add_user(store, "nurse", "operator")
    add_user(store, "boss", "admin")
    yield app, store, models, candidates
    with app.app_context():
        services().lazy_pipeline.close()
    store.close()


def _photos() -> list[bytes]:
    folder = shared("fundus", "eyepacs-256", "images")
    return [new_shot((folder / name).read_bytes()) for name in EYES]  # each capture a new one


def _capture(client: FlaskClient, patient_id: int) -> int:
    """Both eyes through the capture form; the new screening's id."""
    right, left = _photos()
    token = page_token(client, f"/patients/{patient_id}/capture")
    answer = post_multipart(client, f"/patients/{patient_id}/capture", {
        "csrf_token": token, "right_eye": (io.BytesIO(right), "10_right.jpeg"),
        "left_eye": (io.BytesIO(left), "10_left.jpeg"), "identity_checked": "yes"})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    return int(answer.headers["Location"].rstrip("/").split("/")[-1])


def _drain(app: Flask) -> None:
    with app.app_context():
        shadow = services().pipeline.shadow
    if isinstance(shadow, ShadowRunner):
        shadow.drain()


def _payloads(store: Store, screening_id: int) -> dict[str, str]:
    """What the outbox would send for a screening: the FHIR bundle, the HL7 ORU, the DICOM SR's
    values (every plain value, as str(dataset) shortens long ones)."""
    screening = store.get_screening(screening_id)
    items = {i.destination: i for i in store.due_items() if i.screening_id == screening_id}
    sr = datasets(Delivery(items["dicom"], screening, store), store.config)[-1]
    return {"fhir": json.dumps(bundle(Delivery(items["fhir"], screening, store), store.config)),
            "hl7": build_oru(Delivery(items["hl7"], screening, store), store.config),
            "sr": "\n".join(_values(sr))}


def _values(dataset: Any) -> list[str]:
    """Every plain value in a dataset and its sequences."""
    found: list[str] = []
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                found += _values(item)
        elif isinstance(element.value, str):
            found.append(element.value)
    return found


def _names(task: str, version: str, sha256: str) -> list[str]:
    """How a page or payload names a bundle: its hash, ``task version`` (the model line, HL7,
    SR), ``task@version`` (the FHIR Device) and the JSON ``version`` field."""
    return [sha256, f"{task} {version}", f"{task}@{version}", f'"version": "{version}"',
            f'"version":"{version}"']


def _never_shown(text: str, candidates: dict[str, Any]) -> None:
    for task, candidate in candidates.items():
        shown = [name for name in _names(task, candidate.version, candidate.sha256) if name in text]
        assert not shown, shown


def test_a_candidate_reads_every_case_in_shadow_and_staff_never_see_it(
        kiosk: tuple[Flask, Store, Models, dict[str, Any]], tmp_path: Path) -> None:
    app, store, _, candidates = kiosk
    nurse = app.test_client()
    login(nurse, "nurse")
    patient = store.upsert_patient("SH-1", "Ama Mensah", "1960-01-01", "female", actor="nurse")
    by_web = _capture(nurse, patient.id)
    film = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes()
    with app.test_request_context():
        bearer = {"Authorization": f"Bearer {api_token(store.get_user('nurse'))}"}
    api = app.test_client()  # a bearer token, no session: an API client
    answer = post_multipart(api, "/api/screenings", headers=bearer, data={
        "patient_id": str(patient.id), "image": (io.BytesIO(film), "siim.dcm"),
        "identity_checked": "yes"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    by_api = answer.get_json()["id"]
    spooled = tmp_path / "pushed.dcm"
    shutil.copy(shared("dicom", FILM), spooled)
    with app.app_context():
        screen_spooled_film(spooled, services().pipeline, store)  # the listener's worker step
    by_listener = max(s.id for s in store.worklist())
    _drain(app)
    for screening_id, task in ((by_web, FUNDUS), (by_api, CHEST), (by_listener, CHEST)):
        screening = store.get_screening(screening_id)
        active = [r for r in screening.results if r["task"] == task]
        assert active and all(r["model"]["sha256"] != candidates[task].sha256 for r in active)
        with store.db.read() as conn:
            shadows = [r for r in kept.shadow_results(conn, screening_id) if r["task"] == task]
        graded = [r for r in active if r["verdict"] in ("referable", "non_referable")]
        assert len(shadows) == len(graded) > 0, (screening_id, task)
        assert {(r["model"]["version"], r["model"]["sha256"]) for r in shadows} == {
            (candidates[task].version, candidates[task].sha256)}
        page = nurse.get(f"/screenings/{screening_id}").get_data(as_text=True)
        payloads = _payloads(store, screening_id)
        for result in active:  # every result names the exact bundle that made it
            assert result["model"]["sha256"] in page
            for name, payload in payloads.items():
                assert result["model"]["sha256"] in payload, name
        _never_shown(page, candidates)
        _never_shown(api.get(f"/api/screenings/{screening_id}", headers=bearer)
                     .get_data(as_text=True), candidates)
        for payload in payloads.values():
            _never_shown(payload, candidates)
        slip = nurse.get(f"/screenings/{screening_id}/slip.pdf").data.decode("latin-1")
        model = active[0]["model"]
        assert f"{task} {model['version']}" in slip  # its text is searchable: absence means something
        _never_shown(slip, candidates)
    _never_shown(nurse.get("/worklist").get_data(as_text=True), candidates)
    assert len(store.audit_entries("model.shadow")) == 3


def test_an_admin_promotes_a_candidate_and_rolls_back_in_one_step(
        kiosk: tuple[Flask, Store, Models, dict[str, Any]]) -> None:
    app, store, _, candidates = kiosk
    nurse, boss = app.test_client(), app.test_client()
    login(nurse, "nurse")
    login(boss, "boss")
    assert nurse.get("/admin/models/").status_code == 403
    patient = store.upsert_patient("SH-2", "Kofi Boateng", "1958-05-05", "male", actor="nurse")
    before = store.get_screening(_capture(nurse, patient.id)).results[0]["model"]
    page = boss.get("/admin/models/").get_data(as_text=True)
    assert candidates[FUNDUS].sha256 in page and "candidate, in shadow" in page
    _drain(app)
    assert "images read by both" in boss.get("/admin/models/").get_data(as_text=True)
    token = page_token(boss, "/admin/models/")
    promoted = boss.post("/admin/models/promote", data={
        "csrf_token": token, "task": FUNDUS, "version": candidates[FUNDUS].version})
    assert promoted.status_code == 302
    after = store.get_screening(_capture(nurse, patient.id)).results[0]["model"]
    assert (after["version"], after["sha256"]) == (candidates[FUNDUS].version,
                                                   candidates[FUNDUS].sha256)
    rolled = boss.post("/admin/models/rollback", data={"csrf_token": token, "task": FUNDUS})
    assert rolled.status_code == 302
    again = store.get_screening(_capture(nurse, patient.id)).results[0]["model"]
    assert (again["version"], again["sha256"]) == (before["version"], before["sha256"])
    promotions = store.audit_entries("model.promote")
    rollbacks = store.audit_entries("model.rollback")
    assert [e.actor for e in promotions] == ["boss"] and [e.actor for e in rollbacks] == ["boss"]
    assert candidates[FUNDUS].sha256[:12] in promotions[0].detail
