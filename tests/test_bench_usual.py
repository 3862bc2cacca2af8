"""The benchmark's usual way runs the bundle's own network in PyTorch eager, from a clone alone.

``python -m bench.screening`` once needed the training run's checkpoints; the usual way now runs
each bundle's ONNX graph node by node with torch operators, so it must compute what onnxruntime
computes on every shipped bundle (mirrored views and the heat-map output included).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BUNDLES = sorted((ROOT / "models").glob("*/manifest.json"))


@pytest.mark.parametrize("manifest", BUNDLES, ids=[p.parent.name for p in BUNDLES])
def test_torch_eager_computes_what_onnxruntime_computes(manifest: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch is the [export] extra")
    import onnxruntime as ort

    from bench.onnx_eager import EagerOnnx

    described = json.loads(manifest.read_text())
    graph = manifest.parent / described["variants"]["fp32"]["file"]
    spec = described["input"]
    batch = np.random.default_rng(1).normal(size=(2, spec["channels"], spec["size"], spec["size"]))
    batch = batch.astype(np.float32)
    expected = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(
        None, {spec.get("name", "image"): batch})
    with torch.inference_mode():
        got = EagerOnnx(graph).eval()(torch.from_numpy(batch))
    assert len(got) == len(expected) >= 1
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape
        assert float(np.abs(have.numpy() - want).max()) < 1e-4


def test_every_task_with_a_bundle_is_benchmarked_without_checkpoints(tmp_path: Path) -> None:
    from bench.inputs import chest_task
    from bench.screening import _ready

    tasks = {chest_task(), "fundus-dr"}
    assert all(_ready(task, ROOT / "models") for task in tasks)
    assert not _ready("fundus-dr", tmp_path)  # no bundle: said, not crashed
