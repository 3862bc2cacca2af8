"""The model at this site, in the browser's words (issue 16.2, 16.3): an admin validates the
shipped fundus model on real labelled EyePACS photographs, sees the change, applies it; the
result page and the referral slip then say where the threshold comes from; a clinician enters a
referral's outcome; the admin undoes the change. Real store, real bundles, real images.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.web_support import add_user, login, make_app, page_token, web_config
from conftest import ROOT, shared
from flask import Flask
from test_site_validation import bundle_threshold, eyepacs

from engines.bundle import find_bundles
from kiosk.lifecycle import surveillance
from kiosk.pipeline import Pipeline
from kiosk.store import Store
from kiosk.visit import Offered, record, screen

pytestmark = pytest.mark.slow  # the real fundus bundle on 155 real photographs

TASK = "fundus-dr"


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[tuple[Flask, Store, Pipeline]]:
    if not any(p.name.startswith(f"{TASK}-") for p in find_bundles(ROOT / "models")):
        pytest.skip(f"the real {TASK} bundle is not in models/")
    config = web_config(tmp_path, sandbox_workers=0)
    pipeline = Pipeline.from_config(config)
    app, store = make_app(config, pipeline=pipeline)
    add_user(store, "doctor", "clinician")
    add_user(store, "boss", "admin")
    yield app, store, pipeline
    pipeline.close()
    store.close()


def _screening(store: Store, pipeline: Pipeline) -> int:
    """A real photograph screened and recorded for a patient, as the capture page does."""
    photo = shared("fundus", "eyepacs-256", "images", "10009_left.jpeg")
    patient = store.upsert_patient("P-1", "Ada Test", "1960-01-01", "female", actor="nurse")
    screened = screen(pipeline, [Offered(photo.read_bytes(), photo.name, "L", kind="fundus")])
    return record(store, patient.id, screened, actor="nurse").id


def test_validate_apply_show_enter_an_outcome_and_undo(kiosk, tmp_path: Path) -> None:
    app, store, pipeline = kiosk
    folder, labels = eyepacs(tmp_path, positives=45, negatives=110)
    admin = app.test_client()
    login(admin, "boss")
    page = admin.get("/admin/site/")
    assert page.status_code == 200 and "Surveillance from the clinicians" in page.get_data(as_text=True)
    sent = admin.post("/admin/site/validate", data={
        "csrf_token": page_token(admin, "/admin/site/"), "task": TASK, "source": "folder",
        "labels": str(labels), "folder": str(folder), "target": "90"})
    assert sent.status_code == 302, sent.get_data(as_text=True)
    report = admin.get(sent.headers["Location"]).get_data(as_text=True)
    assert "The change, before it is applied" in report
    assert f"{bundle_threshold(pipeline):.4f}" in report  # the threshold in force, shown
    assert "Apply the proposed threshold" in report
    assert pipeline.operating_point(TASK) == "screening"  # shown, not applied
    run_id = int(re.search(r"/runs/(\d+)", sent.headers["Location"]).group(1))
    applied = admin.post(f"/admin/site/runs/{run_id}/apply",
                         data={"csrf_token": page_token(admin, "/admin/site/")})
    assert applied.status_code == 302 and pipeline.operating_point(TASK) == "site"
    assert store.audit_entries("site_validation.apply")[0].actor == "boss"

    screening_id = _screening(store, pipeline)
    doctor = app.test_client()
    login(doctor, "doctor")
    result = doctor.get(f"/screenings/{screening_id}").get_data(as_text=True)
    assert "Calibrated at this site on" in result and "n = 155." in result
    if shutil.which("pdftotext"):
        pdf = doctor.get(f"/screenings/{screening_id}/slip.pdf").get_data()
        (tmp_path / "slip.pdf").write_bytes(pdf)
        text = subprocess.run(["pdftotext", str(tmp_path / "slip.pdf"), "-"], check=True,
                              capture_output=True, text=True).stdout
        assert "Calibrated at this site on" in " ".join(text.split())
    form = doctor.get(f"/admin/site/outcome/{screening_id}")
    assert form.status_code == 200
    saved = doctor.post(f"/admin/site/outcome/{screening_id}", data={
        "csrf_token": page_token(doctor, f"/admin/site/outcome/{screening_id}"),
        "outcome": "no_disease", "note": "seen at the eye clinic"})
    assert saved.status_code == 302
    assert surveillance.outcome_of(store, screening_id)["outcome"] == "no_disease"
    assert doctor.get("/admin/site/").status_code == 403  # the admin's page only

    french = admin.get("/admin/site/?lang=fr").get_data(as_text=True)
    assert "Le modèle sur ce site" in french and "Seuil en vigueur" in french
    undone = admin.post(f"/admin/site/{TASK}/undo",
                        data={"csrf_token": page_token(admin, "/admin/site/")})
    assert undone.status_code == 302 and pipeline.operating_point(TASK) == "screening"
    assert store.audit_entries("site_validation.undo")[0].actor == "boss"


def test_a_refused_proposal_cannot_be_applied(kiosk, tmp_path: Path) -> None:
    app, _store, pipeline = kiosk
    folder, labels = eyepacs(tmp_path, positives=10, negatives=110)
    admin = app.test_client()
    login(admin, "boss")
    sent = admin.post("/admin/site/validate", data={
        "csrf_token": page_token(admin, "/admin/site/"), "task": TASK, "source": "folder",
        "labels": str(labels), "folder": str(folder), "target": "90"})
    report = admin.get(sent.headers["Location"]).get_data(as_text=True)
    assert "No threshold is proposed" in report
    assert "Only 10 positive images: at least 40 are needed." in report
    assert "even finding every one" in report and "35 are needed" in report
    assert "Apply the proposed threshold" not in report
    run_id = int(re.search(r"/runs/(\d+)", sent.headers["Location"]).group(1))
    refused = admin.post(f"/admin/site/runs/{run_id}/apply",
                         data={"csrf_token": page_token(admin, "/admin/site/")})
    assert refused.status_code == 422 and pipeline.operating_point(TASK) == "screening"
