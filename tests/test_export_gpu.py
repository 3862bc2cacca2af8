"""TensorRT engines built from a freshly trained smoke bundle (GPU machines only)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is the optional 'export' extra")


@pytest.mark.gpu
def test_tensorrt_engines_build_cache_and_match_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (JetPack / NGC images only)")
    from conftest import shared
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from export.build import build_bundle
    from export.data import load_mnist
    from export.recipes import RECIPES
    from export.signing import public_key_text
    from export.tensorrt import build_engines
    from export.train import train
    from kiosk.preprocess import scale

    recipe = RECIPES["smoke"]
    data = load_mnist(shared("cxr", "pneumoniamnist", "pneumoniamnist-balanced-28.npz"), recipe.spec)
    net = train(recipe, data, tmp_path / "work", progress=False, log=lambda _: None)
    key = Ed25519PrivateKey.generate()
    folder = build_bundle(
        recipe,
        net,
        data,
        tmp_path / "models",
        key=key,
        key_id="k",
        training_data={"name": "PneumoniaMNIST", "images": 1, "patients": 1, "licence": "CC BY 4.0"},
        notes={"training": "smoke", "command": "pytest"},
        limitations=[],
        log=lambda _: None,
    )
    (tmp_path / "trusted").mkdir()
    (tmp_path / "trusted" / "k.pub").write_text(public_key_text(key) + "\n")
    sample = scale(data.part("test").images[:8], recipe.spec)
    report = build_engines(folder, tmp_path / "trusted", tmp_path / "cache", sample)
    assert Path(report["fp16"]["plan"]).is_file() and report["fp16"]["max_abs_diff"] < 0.05
    again = build_engines(folder, tmp_path / "trusted", tmp_path / "cache", sample)
    assert again["fp16"]["plan"] == report["fp16"]["plan"]  # the cached engine is reused
