"""A new task with no code change (issue 15.1's proof).

Someone else's chest model (../shared/data/models/third-party-cxr-int8), wrapped with
``python -m export wrap`` and signed with a key the project has never seen, runs beside the
shipped paediatric chest bundle on the same film. Its title, population and codes reach the
result page, the referral slip, the FHIR bundle, the HL7 message and the DICOM SR; nothing in
the kiosk names it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser.web_support import add_user, login, make_app, page_token, post_multipart, web_config
from conftest import shared

from kiosk.pipeline import Pipeline
from kiosk.sync.base import Delivery
from kiosk.sync.dicom_objects import datasets
from kiosk.sync.fhir import bundle
from kiosk.sync.hl7 import build_oru

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "export" / "examples" / "third-party-cxr.toml"
TITLE = "Chest findings (third-party model)"


def _export(*args: str) -> None:
    """Run the export tool as a user would (it needs no torch for keygen and wrap)."""
    done = subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def wrapped(tmp_path: Path) -> tuple[Path, Path]:
    """Models folder: the shipped paediatric chest bundle plus the wrapped third-party one."""
    model = shared("models", "third-party-cxr-int8", "model_int8.onnx")
    shipped = sorted((ROOT / "models").glob("cxr-pneumonia-*"))
    if not shipped:
        pytest.skip("no shipped cxr-pneumonia bundle in models/")
    trusted = tmp_path / "trusted"
    shutil.copytree(ROOT / "models" / "trusted_keys", trusted)
    _export("keygen", str(tmp_path / "outsider-2026.pem"), str(trusted / "outsider-2026.pub"))
    _export("wrap", str(EXAMPLE), "--model", str(model), "--out", str(tmp_path / "models"),
            "--key", str(tmp_path / "outsider-2026.pem"))
    shutil.copytree(shipped[-1], tmp_path / "models" / shipped[-1].name)
    return tmp_path / "models", trusted


def test_a_wrapped_model_runs_beside_the_shipped_one(tmp_path: Path, wrapped: tuple[Path, Path]) -> None:
    models, trusted = wrapped
    config = web_config(tmp_path, models_dir=models, trusted_keys=trusted, sandbox_workers=0,
                        fhir_url="http://127.0.0.1:9/fhir", hl7_address="127.0.0.1:9",
                        pacs_address="PACS@127.0.0.1:9")
    pipeline = Pipeline.from_config(config)
    app, store = make_app(config, pipeline=pipeline)
    try:
        assert {"cxr-findings", "cxr-pneumonia"} <= set(pipeline.tasks())
        add_user(store, "nurse", "operator")
        patient = store.upsert_patient("T-1", "Abebe Bikila", None, None, actor="nurse")
        client = app.test_client()
        login(client, "nurse")
        film = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes()
        token = page_token(client, f"/patients/{patient.id}/capture")
        import io

        answer = post_multipart(client, f"/patients/{patient.id}/capture",
                                {"csrf_token": token, "chest": (io.BytesIO(film), "film.dcm"),
                                 "identity_checked": "yes"})  # the film's own PatientID differs
        assert answer.status_code == 302, answer.get_data(as_text=True)
        screening_id = int(answer.headers["Location"].rstrip("/").split("/")[-1])
        screening = store.get_screening(screening_id)
        tasks = sorted(str(r["task"]) for r in screening.results)
        assert tasks == ["cxr-findings", "cxr-pneumonia"]  # age unknown: both ran, said so
        page = client.get(f"/screenings/{screening_id}").get_data(as_text=True)
        assert TITLE in page and "Chest X-ray (children)" in page and "age is not known" in page
        assert "adults from one US hospital (NIH ChestX-ray14)" in page
        slip = client.get(f"/screenings/{screening_id}/slip.pdf").data
        assert TITLE.replace("(", "\\(").replace(")", "\\)").encode() in slip  # PDF string escapes
        _writers_name_it(store, screening)
    finally:
        pipeline.close()
        store.close()


def _writers_name_it(store, screening) -> None:
    """FHIR, HL7 and the SR carry the third-party task's title and its standard codes."""
    items = {item.destination: item for item in store.due_items()}
    fhir = json.dumps(bundle(Delivery(items["fhir"], screening, store), store.config))
    assert TITLE in fhir and "36118008" in fhir  # SNOMED CT pneumothorax, from the TOML
    oru = build_oru(Delivery(items["hl7"], screening, store), store.config)
    assert "cxr-findings" in oru and "36118008^Pneumothorax^SCT" in oru and TITLE in oru
    sr = datasets(Delivery(items["dicom"], screening, store), store.config)[-1]
    values = set(_values(sr))
    assert TITLE in values and "36118008" in values and "cxr-findings 0.1.0" in values


def _values(dataset) -> list[str]:
    """Every plain value in a dataset and its sequences (str(dataset) shortens long ones)."""
    found: list[str] = []
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                found += _values(item)
        elif isinstance(element.value, str):
            found.append(element.value)
    return found
