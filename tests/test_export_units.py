"""Export tooling without training: metrics, splits, signing, bring-your-own-model, TensorRT guard."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import shared
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engines.bundle import load_bundle
from export.data import kermany_patient, load_real, split_patients
from export.errors import ExportError
from export.signing import generate_key, load_private_key, public_key_text, sign
from kiosk import stats as m
from kiosk.errors import BundleError

EXAMPLE = Path(__file__).resolve().parent.parent / "export" / "examples" / "third-party-cxr.toml"


def brute_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC by comparing every positive with every negative."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def test_auc_matches_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties
    assert m.auc(labels, scores) == pytest.approx(brute_auc(labels, scores), abs=1e-12)
    low, high = m.auc_ci(labels, scores, rounds=300)
    assert low < m.auc(labels, scores) < high


def test_wilson_interval_known_values() -> None:
    low, high = m.wilson(90, 100)
    assert (round(low, 3), round(high, 3)) == (0.826, 0.945)
    assert m.wilson(0, 0) == (0.0, 1.0)


def test_threshold_reaches_target_sensitivity() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 500)
    p = 1 / (1 + np.exp(-rng.normal(labels * 2 - 1, 1.0)))
    threshold = m.threshold_for_sensitivity(labels, p, 0.9)
    point = m.measure(labels, p, threshold)
    assert point.sensitivity >= 0.9
    assert m.measure(labels, p, threshold + 1e-6).sensitivity < 0.9 + 1 / labels.sum() + 1e-9


def test_temperature_recovers_a_known_temperature_and_lowers_ece() -> None:
    rng = np.random.default_rng(3)
    true_logits = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < m.sigmoid(true_logits)).astype(float)
    overconfident = true_logits * 2.5
    t = m.fit_temperature(labels, overconfident)
    assert t == pytest.approx(2.5, rel=0.08)
    assert m.ece(labels, m.sigmoid(overconfident / t)) < m.ece(labels, m.sigmoid(overconfident)) / 2


def test_per_patient_refers_when_either_eye_is_positive() -> None:
    from export.evaluate import per_patient

    patients = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    labels = np.array([0, 1, 0, 0, 0, 0, 1, 0])  # a and d have one referable eye each
    scores = np.array([0.1, 0.2, 0.3, 0.05, 0.6, 0.1, 0.1, 0.9])
    found = per_patient(labels, scores, patients, threshold=0.5, seed=0)
    assert found["n"] == 4 and found["n_positive"] == 2
    # patient scores (highest eye): a 0.2, b 0.3, c 0.6, d 0.9 -> positives a, d; negatives b, c
    assert found["auc"] == pytest.approx(m.auc(np.array([1, 0, 0, 1]), np.array([0.2, 0.3, 0.6, 0.9])))
    point = found["operating_point"]
    assert point["sensitivity"] == 0.5 and point["specificity"] == 0.5  # d found, a missed; c over


def test_split_keeps_each_patient_in_one_split() -> None:
    patients = np.repeat(np.arange(400).astype(str), 2)
    split = split_patients(patients, seed=7)
    for patient in np.unique(patients):
        assert len(set(split[patients == patient])) == 1
    counts = {s: (split == s).mean() for s in ("train", "calibration", "test")}
    assert counts["train"] == pytest.approx(0.70, abs=0.01) and counts["test"] == pytest.approx(
        0.15, abs=0.01
    )
    assert (split == split_patients(patients, seed=7)).all()


def test_training_data_leaves_the_test_split_unopened(tmp_path: Path) -> None:
    """``python -m export train`` reads the train and calibration images only: a copy of the data
    without the test images (as sent to a lent GPU) gives the same split and the same pixels."""
    from export.recipes import RECIPES

    source = shared("fundus", "eyepacs-256")
    recipe = RECIPES["fundus-dr"]
    rows = (source / "labels.csv").read_text().splitlines()[:61]  # header + 60 eyes
    whole = tmp_path / "whole" / "fundus" / "eyepacs-256"
    partial = tmp_path / "part" / "fundus" / "eyepacs-256"
    for folder in (whole, partial):
        (folder / "images").mkdir(parents=True)
        (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    for row in rows[1:]:
        name = row.split(",")[0]
        os.symlink(source / "images" / name, whole / "images" / name)
    full = load_real("fundus-dr", recipe.spec, recipe.seed, data=whole.parent.parent, cache=tmp_path / "c1",
                     fractions=recipe.fractions)
    assert set(full.split) == {"train", "calibration", "test"}
    for name, split in zip(full.names, full.split, strict=True):
        if split != "test":
            os.symlink(source / "images" / name, partial / "images" / name)
    fitting = load_real("fundus-dr", recipe.spec, recipe.seed, data=partial.parent.parent,
                        cache=tmp_path / "c2", fractions=recipe.fractions, splits=("train", "calibration"))
    kept = full.split != "test"
    assert (fitting.names == full.names[kept]).all() and (fitting.split == full.split[kept]).all()
    assert np.array_equal(fitting.images, full.images[kept]) and "test" not in set(fitting.split)


@pytest.mark.parametrize(
    "name, patient",
    [
        ("person1000_bacteria_2931.jpeg", "kermany-person1000"),
        ("IM-0115-0001.jpeg", "kermany-IM-0115"),
        ("NORMAL2-IM-0383-0001.jpeg", "kermany-NORMAL2-IM-0383"),
    ],
)
def test_kermany_patient_ids(name: str, patient: str) -> None:
    assert kermany_patient(name) == patient


def test_keygen_writes_private_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    private, public = tmp_path / "keys" / "k.pem", tmp_path / "trusted" / "k.pub"
    generate_key(private, public)
    assert os.stat(private).st_mode & 0o777 == 0o600
    key = load_private_key(private)
    assert public.read_text().strip() == public_key_text(key)
    with pytest.raises(ExportError, match="refusing"):
        generate_key(private, public)


def test_signing_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KIOSK_SIGNING_KEY", raising=False)
    with pytest.raises(ExportError, match="KIOSK_SIGNING_KEY"):
        load_private_key()
    (tmp_path / "bad.pem").write_text("not a key")
    monkeypatch.setenv("KIOSK_SIGNING_KEY", str(tmp_path / "bad.pem"))
    with pytest.raises(ExportError, match="cannot read"):
        load_private_key()


def test_bring_your_own_model_bundle_loads(tmp_path: Path) -> None:
    from export.wrap import wrap

    model = shared("models", "third-party-cxr-int8", "model_int8.onnx")
    key = Ed25519PrivateKey.generate()
    folder = wrap(EXAMPLE, tmp_path / "models", key, "byom-test", model=model)
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "byom-test.pub").write_text(public_key_text(key) + "\n")
    bundle = load_bundle(folder, trusted)
    assert len(bundle.labels) == 15 and bundle.manifest["outputs"]["activation"] == "softmax"
    assert {f["label"] for f in bundle.manifest["findings"]} >= {"pneumothorax", "effusion"}
    assert bundle.input_name == "input" and bundle.output_names == ["output"]


def test_the_wrapped_model_runs_through_the_kiosk_preprocessing(tmp_path: Path) -> None:
    from export.onnx_export import onnx_outputs
    from export.wrap import wrap
    from kiosk.domain import Image
    from kiosk.preprocess import prepare

    model = shared("models", "third-party-cxr-int8", "model_int8.onnx")
    key = Ed25519PrivateKey.generate()
    folder = wrap(EXAMPLE, tmp_path, key, "k", model=model)
    spec = load_bundle(folder, _trust(tmp_path, key, "k")).input_spec
    film = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (280, 1))
    logits = onnx_outputs(folder / "model.onnx", prepare(Image(film, kind="cxr"), spec)[None])["output"]
    assert logits.shape == (1, 15) and np.isfinite(logits).all()


def test_wrap_refuses_a_finding_that_is_not_a_label(tmp_path: Path) -> None:
    from export.wrap import wrap

    text = EXAMPLE.read_text().replace('label = "nodule"', 'label = "tumour"')
    (tmp_path / "d.toml").write_text(text)
    (tmp_path / "model_int8.onnx").write_bytes(b"unused")
    with pytest.raises(ExportError, match="tumour"):
        wrap(tmp_path / "d.toml", tmp_path / "out", Ed25519PrivateKey.generate(), "k")


def test_tampered_wrapped_signature_is_refused(tmp_path: Path) -> None:
    from export.wrap import wrap

    model = shared("models", "third-party-cxr-int8", "model_int8.onnx")
    key = Ed25519PrivateKey.generate()
    folder = wrap(EXAMPLE, tmp_path, key, "k", model=model)
    (folder / "manifest.sig").write_text(sign(b"something else", key) + "\n")
    with pytest.raises(BundleError, match="signature"):
        load_bundle(folder, _trust(tmp_path, key, "k"))


def test_tensorrt_step_imports_without_tensorrt_and_says_where_to_get_it() -> None:
    import export.tensorrt as trt_step

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(ExportError, match="JetPack"):
            trt_step._tensorrt()
    else:
        pytest.skip("TensorRT is installed here: the GPU test covers it")
    assert trt_step.int8_plan_path(Path("/c/abc-GPU-trt10.plan")).name == "abc-GPU-trt10-int8.plan"


def _trust(folder: Path, key: Ed25519PrivateKey, key_id: str) -> Path:
    """A trusted-keys folder holding only ``key``."""
    trusted = folder / "trusted"
    trusted.mkdir(exist_ok=True)
    (trusted / f"{key_id}.pub").write_text(public_key_text(key) + "\n")
    return trusted


def test_the_screening_point_is_never_less_sensitive_than_the_balanced_one() -> None:
    from export.screening import screening_threshold, youden_threshold

    # A near-perfect separator with most positives saturated at the top: the highest threshold
    # keeping 90% of the positives lies among them, above the gap between the classes.
    labels = np.array([0] * 50 + [1] * 150)
    scores = np.concatenate([np.linspace(0.0, 0.2, 50), np.linspace(0.6, 1.0, 150)])
    sensitive = m.threshold_for_sensitivity(labels, scores, 0.90)
    assert sensitive > 0.6  # the plain rule: within the positives
    chosen = screening_threshold(labels, scores, 0.90)
    assert chosen == youden_threshold(labels, scores) <= 0.6
    assert m.measure(labels, scores, chosen).sensitivity == 1.0
    # A mediocre model: the plain rule's threshold is already below the balanced one, and kept.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = rng.normal(labels * 0.8, 1.0)
    assert screening_threshold(labels, scores, 0.90) == m.threshold_for_sensitivity(labels, scores, 0.90)
