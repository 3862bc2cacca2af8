"""Training smoke test: PneumoniaMNIST → train → ONNX (parity) → INT8 → signed bundle → kiosk loads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is the optional 'export' extra")

from conftest import shared
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engines.bundle import load_bundle
from export.build import build_bundle, onnx_logits
from export.data import load_mnist
from export.onnx_export import onnx_outputs
from export.recipes import RECIPES
from export.signing import public_key_text
from export.train import train
from kiosk.errors import BundleError

pytestmark = pytest.mark.slow  # trains a small network (torch)


@pytest.fixture(scope="module")
def smoke_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """A bundle trained for one epoch on 28 px films, signed with a throwaway key."""
    npz = shared("cxr", "pneumoniamnist", "pneumoniamnist-balanced-28.npz")
    root = tmp_path_factory.mktemp("smoke")
    recipe = RECIPES["smoke"]
    data = load_mnist(npz, recipe.spec)
    net = train(recipe, data, root / "work", progress=False, log=lambda _: None)
    key = Ed25519PrivateKey.generate()
    folder = build_bundle(
        recipe,
        net,
        data,
        root / "models",
        key=key,
        key_id="throwaway",
        training_data={
            "name": "PneumoniaMNIST",
            "images": len(data.images),
            "patients": len(data.images),
            "licence": "CC BY 4.0",
        },
        notes={"training": "smoke", "command": "pytest"},
        limitations=["smoke only"],
        log=lambda _: None,
    )
    trusted = root / "trusted"
    trusted.mkdir()
    (trusted / "throwaway.pub").write_text(public_key_text(key) + "\n")
    return folder, trusted, data


def test_bundle_is_complete_and_verifies(smoke_bundle: tuple[Path, Path, object]) -> None:
    folder, trusted, _ = smoke_bundle
    bundle = load_bundle(folder, trusted)
    manifest = bundle.manifest
    assert {"model.onnx", "MODEL_CARD.md", "roc.png", "calibration.png"} <= set(manifest["files"])
    assert manifest["outputs"]["cam"] == "cam" and manifest["calibration"]["temperature"] > 0
    point = manifest["findings"][0]["operating_point"]
    assert point["sensitivity_ci"][0] <= point["sensitivity"] <= point["sensitivity_ci"][1]
    low, high = manifest["metrics"]["auc_ci"]
    assert 0.5 < low <= manifest["metrics"]["auc"] <= high <= 1.0
    calibration_images = len(smoke_bundle[2].part("calibration").images)  # type: ignore[attr-defined]
    assert sum(manifest["score_distribution"]["counts"]) == calibration_images
    assert manifest["export"]["parity_max_abs_diff"] < 1e-3
    assert (folder / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (folder / "MODEL_CARD.md").read_text()
    assert "not for clinical decisions" in card.lower() and "95% CI" in card


def test_manifest_bytes_are_sorted_two_space_json(smoke_bundle: tuple[Path, Path, object]) -> None:
    folder, _, _ = smoke_bundle
    raw = (folder / "manifest.json").read_text(encoding="utf-8")
    assert raw == json.dumps(json.loads(raw), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert len((folder / "manifest.sig").read_text().strip().splitlines()) == 1


def test_int8_decision_is_recorded(smoke_bundle: tuple[Path, Path, object]) -> None:
    folder, _, _ = smoke_bundle
    manifest = json.loads((folder / "manifest.json").read_text())
    q = manifest["quantisation"]
    assert {"fp32_ms", "int8_ms", "int8_auc", "fp32_auc", "kept"} <= set(q)
    assert ("int8" in manifest["variants"]) == q["kept"] == (folder / "model.int8.onnx").exists()
    if q["kept"]:  # the rule, on the calibration split, read back from figures rounded to
        # 4 decimals (AUC) and 2 (ms): a 0.04 ms network can record a tie (the suite failed so once here)
        cal = q["calibration_split_auc"]
        assert cal["fp32"] - cal["int8"] < 0.005 + 1e-4 and q["int8_ms"] <= q["fp32_ms"]


def test_dynamic_batch_and_cam_explains_the_logit(smoke_bundle: tuple[Path, Path, object]) -> None:
    folder, _, data = smoke_bundle
    images = data.part("test").images[:5]  # type: ignore[attr-defined]
    spec = json.loads((folder / "manifest.json").read_text())["input"]
    from kiosk.preprocess import scale

    out = onnx_outputs(folder / "model.onnx", scale(images, spec))
    assert out["logits"].shape == (5, 1) and out["cam"].shape[:2] == (5, 1)
    assert np.allclose(out["cam"].mean(axis=(2, 3)), out["logits"], atol=1e-4)
    single = onnx_logits(folder / "model.onnx", images[:1], spec)
    assert np.allclose(single, out["logits"][:1], atol=1e-4)


@pytest.mark.parametrize("victim", ["model.onnx", "manifest.json", "MODEL_CARD.md"])
def test_tampering_is_refused(smoke_bundle: tuple[Path, Path, object], tmp_path: Path, victim: str) -> None:
    folder, trusted, _ = smoke_bundle
    copy = tmp_path / folder.name
    copy.mkdir()
    for file in folder.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    target = copy / victim
    target.write_bytes(target.read_bytes().replace(b"e", b"E", 1))
    with pytest.raises(BundleError):
        load_bundle(copy, trusted)


def test_a_bundle_signed_by_another_key_is_refused(
    smoke_bundle: tuple[Path, Path, object], tmp_path: Path
) -> None:
    folder, _, _ = smoke_bundle
    other = tmp_path / "trusted"
    other.mkdir()
    (other / "throwaway.pub").write_text(public_key_text(Ed25519PrivateKey.generate()) + "\n")
    with pytest.raises(BundleError, match="signature"):
        load_bundle(folder, other)


def test_training_resumes_and_continues_with_a_second_cycle(tmp_path: Path) -> None:
    npz = shared("cxr", "pneumoniamnist", "pneumoniamnist-balanced-28.npz")
    recipe = RECIPES["smoke"]
    data = load_mnist(npz, recipe.spec)
    lines: list[str] = []
    train(recipe, data, tmp_path, progress=False, log=lines.append)
    train(recipe, data, tmp_path, progress=False, log=lines.append, extra_epochs=1, extra_lr=1e-3)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in history["history"]] == [1, 2]
    assert history["stages"][0]["after_epoch"] == 1 and any("resumed at epoch 1" in x for x in lines)


def test_an_ensemble_over_mirrored_views_ships_as_one_graph(tmp_path: Path) -> None:
    """Two members x four views: every combination is scored on the calibration split, the best
    one that fits the size budget ships as one ONNX, parity holds, the map still explains the
    score, and the card records the table."""
    from dataclasses import replace

    from export.build import choose_graph
    from export.train import member_dir

    npz = shared("cxr", "pneumoniamnist", "pneumoniamnist-balanced-28.npz")
    recipe = replace(RECIPES["smoke"], members=2, views=4, sharpness=True)
    data = load_mnist(npz, recipe.spec)
    nets = [
        train(
            recipe, data, member_dir(tmp_path, recipe.task, m), progress=False, log=lambda _: None, member=m
        )
        for m in range(2)
    ]
    first, second = (n.state_dict()["head.weight"] for n in nets)
    assert not np.allclose(first.numpy(), second.numpy())  # the members start from different seeds
    lines: list[str] = []
    graphs = choose_graph(nets, recipe, data.part("calibration"), lines.append)
    assert {(g.members, g.views) for g in graphs} == {
        ((0,), 1),
        ((0,), 4),
        ((1,), 1),
        ((1,), 4),
        ((0, 1), 1),
        ((0, 1), 4),
    }
    assert all(0.5 < g.auc <= 1.0 and g.fits for g in graphs) and "calibration-split AUC" in lines[0]
    assert graphs[0].auc == max(g.auc for g in graphs)
    folder = build_bundle(
        recipe,
        nets,
        data,
        tmp_path / "models",
        key=Ed25519PrivateKey.generate(),
        key_id="throwaway",
        training_data={"name": "PneumoniaMNIST", "images": 1, "patients": 1, "licence": "CC BY 4.0"},
        notes={"training": "smoke", "command": "pytest"},
        limitations=[],
        int8=False,
        log=lambda _: None,
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["export"]["members"] == list(graphs[0].members)
    assert manifest["export"]["views"] == graphs[0].views
    assert manifest["export"]["calibration_split_auc_by_graph"][graphs[0].name] == graphs[0].auc
    from kiosk.preprocess import scale

    out = onnx_outputs(folder / "model.onnx", scale(data.part("test").images[:3], recipe.spec))
    assert np.allclose(out["cam"].mean(axis=(2, 3)), out["logits"], atol=1e-4)
    assert "calibration-split AUC" in (folder / "MODEL_CARD.md").read_text()


def test_a_graph_over_the_size_budget_is_not_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    import export.build as build_module
    from export.build import choose_graph
    from export.nets import build

    recipe = RECIPES["smoke"]
    npz = shared("cxr", "pneumoniamnist", "pneumoniamnist-balanced-28.npz")
    data = load_mnist(npz, recipe.spec)
    nets = [build(1, recipe.widths, recipe.blocks, 1).eval() for _ in range(3)]
    params = sum(p.numel() for p in nets[0].parameters())
    monkeypatch.setattr(build_module, "MAX_BUNDLE_BYTES", int(1.25 * 4 * params * 1.5))  # one network
    graphs = choose_graph(nets, recipe, data.part("calibration"), lambda _: None)
    assert len(graphs[0].members) == 1 and graphs[0].fits
    assert all(not g.fits for g in graphs if len(g.members) > 1)
    assert "over the size budget" in next(g.name for g in graphs if not g.fits)


def test_sharpen_is_identity_at_zero_and_a_blur_at_minus_one() -> None:
    import torch

    from export.train import sharpen

    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(sharpen(x, torch.zeros(2, 1, 1, 1)), x)
    blurred = sharpen(x, -torch.ones(2, 1, 1, 1))
    assert blurred.std() < x.std() * 0.8 and abs(float(blurred.mean() - x.mean())) < 0.02
    sharper = sharpen(x, torch.full((2, 1, 1, 1), 0.6))
    assert sharper.std() > x.std()
