"""The shipped reference bundles: signed by the trusted key, small, honest, and they run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared

from engines.bundle import load_bundle
from export.onnx_export import onnx_outputs
from kiosk.domain import Image
from kiosk.preprocess import prepare

MODELS = Path(__file__).resolve().parent.parent / "models"
TRUSTED = MODELS / "trusted_keys"
SHIPPED = ["fundus-dr-2.0.1", "cxr-pneumonia-1.1.0", "cxr-adult-1.0.1"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundle_verifies_under_the_trusted_key(name: str) -> None:
    bundle = load_bundle(MODELS / name, TRUSTED)
    assert bundle.key_id in ("kiosk-dev-2026", "kiosk-dev-2026b")  # 2026's private key was lost
    assert "not for clinical decisions" in bundle.manifest["intended_use"].lower()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundle_is_small_and_reports_metrics_with_intervals(name: str) -> None:
    folder = MODELS / name
    assert sum(f.stat().st_size for f in folder.iterdir()) < 20 * 2**20
    manifest = json.loads((folder / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["auc_ci"][0] <= metrics["auc"] <= metrics["auc_ci"][1]
    assert "by patient" in metrics["split"] and 0 <= metrics["ece"] < 0.2
    point = manifest["findings"][0]["operating_point"]
    assert point["sensitivity_ci"][0] <= point["sensitivity"] <= point["sensitivity_ci"][1]
    assert point["n_positive"] + point["n_negative"] == metrics["n"]
    assert set(manifest["variants"]) <= {"fp32", "int8"} and "quantisation" in manifest
    card = (folder / "MODEL_CARD.md").read_text()
    for heading in ("Intended use", "Data and provenance", "Behaviour on shifted data", "Limitations"):
        assert heading in card


def test_fundus_model_scores_real_photographs_and_explains_them() -> None:
    folder = shared("fundus", "eyepacs-fullres")
    bundle = load_bundle(MODELS / "fundus-dr-2.0.1", TRUSTED)
    batch = []
    for name in ("10_left.jpeg", "16_left.jpeg"):  # ICDR 0 and ICDR 4
        rgb = cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB)
        batch.append(prepare(Image(rgb, kind="fundus"), bundle.input_spec))
    out = onnx_outputs(bundle.variant_path("fp32"), np.stack(batch))
    assert out["logits"].shape == (2, 1) and out["cam"].shape[:2] == (2, 1)
    assert np.allclose(out["cam"].mean(axis=(2, 3)), out["logits"], atol=1e-3)
    # Proliferative DR scores above a healthy eye.
    assert out["logits"][1, 0] > out["logits"][0, 0]


def test_chest_model_runs_on_films_and_int8_agrees_with_fp32() -> None:
    """In its population (paediatric films of its source), INT8 gives fp32's answers: calibrated
    probabilities within a few hundredths and the same decision at the shipped threshold."""
    bundle = load_bundle(MODELS / "cxr-pneumonia-1.1.0", TRUSTED)
    root = shared("cxr", "kermany-224", "train")
    files = sorted((root / "NORMAL").iterdir())[:10] + sorted((root / "PNEUMONIA").iterdir())[:10]
    films = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    tensor = np.stack([prepare(Image(film, kind="cxr"), bundle.input_spec) for film in films])
    fp32 = onnx_outputs(bundle.variant_path("fp32"), tensor)["logits"]
    assert fp32.shape == (20, 1) and np.isfinite(fp32).all()
    assert "int8" in bundle.manifest["variants"]
    int8 = onnx_outputs(bundle.variant_path("int8"), tensor)["logits"]
    temperature = bundle.manifest["calibration"]["temperature"]
    p32, p8 = (1 / (1 + np.exp(-x[:, 0] / temperature)) for x in (fp32, int8))
    threshold = bundle.manifest["findings"][0]["threshold"]
    assert float(np.median(np.abs(p8 - p32))) < 0.02
    assert int(((p32 >= threshold) == (p8 >= threshold)).sum()) >= 19
    assert (p32[10:] >= threshold).sum() > (p32[:10] >= threshold).sum()  # pneumonia scores higher
