"""``kiosk doctor`` says which back-ends could run here and why not; the GPU extras are pinned."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from engines.available import availability, gpu_devices
from engines.base import REGISTRY
from kiosk.commands.doctor import check_runtimes
from kiosk.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_back_end_is_judged_with_a_reason(tmp_path: Path) -> None:
    found = availability(load_config(env={}, data_dir=tmp_path))
    assert [a.backend for a in found] == list(REGISTRY)
    by_name = {a.backend: a for a in found}
    assert by_name["onnxruntime-cpu"].can_run and "CPUExecutionProvider" in by_name["onnxruntime-cpu"].reason
    assert not by_name["triton"].can_run and "KIOSK_TRITON_URL" in by_name["triton"].reason
    if gpu_devices():
        pytest.skip("a GPU is visible here: the no-GPU reasons cannot be checked")
    for name in ("onnxruntime-cuda", "onnxruntime-trt", "tensorrt"):
        assert not by_name[name].can_run, by_name[name]
        assert by_name[name].reason  # says why: the CPU build, no tensorrt module, or no GPU


def test_doctor_fails_when_no_configured_back_end_can_run(tmp_path: Path) -> None:
    if gpu_devices():
        pytest.skip("a GPU is visible here")
    only_gpu = load_config(env={"KIOSK_BACKENDS": "onnxruntime-cuda"}, data_dir=tmp_path)
    checks = check_runtimes(only_gpu)
    assert [c.status for c in checks if c.detail.startswith("onnxruntime-cuda")] == ["WARN"]
    assert checks[-1].status == "FAIL" and "onnxruntime-cpu" in checks[-1].fix
    usual = check_runtimes(load_config(env={}, data_dir=tmp_path))
    assert "FAIL" not in {c.status for c in usual}
    assert {c.status for c in usual if "cannot run" in c.detail} == {"INFO"}


def test_gpu_and_jetson_extras_are_pinned_for_both_pythons() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in ("gpu", "jetson"):
        assert extras[name] and all("==" in pin for pin in extras[name]), extras[name]
    gpu = extras["gpu"]
    for package in ("onnxruntime-gpu", "tensorrt-cu", "cuda-python"):
        pins = [p for p in gpu if p.startswith(package)]
        assert any(">= '3.11'" in p for p in pins) and any("< '3.11'" in p for p in pins), pins
