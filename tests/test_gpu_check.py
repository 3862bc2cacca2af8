"""The prepared GPU check (scripts/gpu-check.sh, bench/gpu_check.py) runs end to end without a GPU:
the CPU reference is measured on real images, and every GPU back-end is reported with the reason
it could not run, so the same script on a lent GPU fills in the numbers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from engines.available import gpu_devices
from tests.conftest import shared

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_check_reports_every_back_end_on_every_bundle(tmp_path: Path) -> None:
    shared("fundus", "eyepacs-fullres")
    if gpu_devices():
        pytest.skip("a GPU is here: run scripts/gpu-check.sh itself")
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "bench.gpu_check", "prepare", "--out",
                    str(inputs)], cwd=ROOT, check=True, capture_output=True, timeout=600)
    env = {**os.environ, "KIOSK_GPU_INPUTS": str(inputs), "KIOSK_GPU_WHEELS": str(tmp_path / "none"),
           "PYTHON": str(ROOT / ".venv" / "bin" / "python"), "KIOSK_GPU_BUDGET_S": "300"}
    done = subprocess.run(["bash", "scripts/gpu-check.sh", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NOT installed: onnxruntime-gpu" in (out / "install.txt").read_text()  # no wheels offered
    report = json.loads((out / "gpu-check.json").read_text())
    assert set(report["environment"]["backends"]) >= {"onnxruntime-cuda", "tensorrt"}
    shipped = len(list((ROOT / "models").glob("*/manifest.json")))
    assert len(report["bundles"]) == shipped
    for found in report["bundles"].values():
        rows = found["rows"]
        assert found["images"] == 10 and rows["onnxruntime-cpu"]["batch8"]["median_ms"] > 0
        for backend in ("onnxruntime-cuda", "onnxruntime-trt", "tensorrt", "tensorrt-int8"):
            assert rows[backend]["error"], backend  # says why it could not run here
    table = (out / "gpu-check.md").read_text()
    assert table.count("| onnxruntime-cuda |") == shipped
