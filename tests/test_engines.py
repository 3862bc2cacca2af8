"""Engines: onnxruntime on the CPU for real, the preference order, and no silent fallback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_builder import build_bundle, make_keys

from engines.base import REGISTRY, engine_class, open_engine
from engines.bundle import Bundle, load_bundle
from engines.onnxruntime_engine import CpuEngine, OnnxRuntimeEngine, physical_cores
from engines.tensorrt_engine import TensorRtEngine, cache_path
from kiosk.config import Config, load_config
from kiosk.errors import EngineError


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    keys = make_keys(tmp_path)
    return load_bundle(build_bundle(tmp_path / "models", keys), keys.trusted_dir)


def _config(tmp_path: Path, **overrides: object) -> Config:
    return load_config(env={}, data_dir=tmp_path / "data", engine_cache_dir=tmp_path / "engines",
                       **overrides)


def test_the_cpu_engine_runs_the_bundle_and_reports_what_ran(tmp_path: Path, bundle) -> None:
    engine = open_engine(bundle, _config(tmp_path))
    assert engine.name == "onnxruntime-cpu" and engine.skipped == []
    assert engine.describe()["providers"] == ["CPUExecutionProvider"]
    assert engine.warmup_ms is not None and engine.warmup_ms > 0
    bright = np.full((2, 3, 32, 32), 1.0, dtype=np.float32)
    outputs = engine.infer(np.concatenate([bright, -bright]))
    assert outputs["logits"].shape == (4, 1) and outputs["cam"].shape == (4, 1, 8, 8)
    # the tiny net's logit is gain x mean(input): 4.0 for the bright pair, -4.0 for the dark
    np.testing.assert_allclose(outputs["logits"][:, 0], [4.0, 4.0, -4.0, -4.0], rtol=1e-5)


def test_threads_default_to_physical_cores_and_follow_kiosk_threads(tmp_path, bundle) -> None:
    assert open_engine(bundle, _config(tmp_path)).describe()["threads"] == physical_cores()
    assert open_engine(bundle, _config(tmp_path, threads=1)).describe()["threads"] == 1


def test_the_int8_variant_runs_on_cpu_when_the_manifest_says_it_holds(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    bundle = load_bundle(build_bundle(tmp_path / "m", keys, int8_variant=True), keys.trusted_dir)
    engine = open_engine(bundle, _config(tmp_path))
    assert engine.variant == "int8"


def test_the_int8_variant_is_not_used_when_it_loses_accuracy(tmp_path: Path) -> None:
    def worse(manifest: dict) -> None:
        manifest["variants"]["int8"]["auc"] = 0.85

    keys = make_keys(tmp_path)
    folder = build_bundle(tmp_path / "m", keys, int8_variant=True, edit=worse)
    engine = open_engine(load_bundle(folder, keys.trusted_dir), _config(tmp_path))
    assert engine.variant == "fp32"


def test_a_missing_provider_falls_to_the_next_choice_and_says_so(tmp_path, bundle) -> None:
    config = _config(tmp_path, backends="onnxruntime-cuda,onnxruntime-cpu")
    engine = open_engine(bundle, config)
    if engine.name == "onnxruntime-cuda":
        pytest.skip("this machine has a working CUDA provider: nothing falls back")
    assert engine.name == "onnxruntime-cpu"
    assert len(engine.skipped) == 1 and engine.skipped[0].startswith("onnxruntime-cuda")
    assert "CUDAExecutionProvider" in engine.skipped[0] and "available:" in engine.skipped[0]
    assert engine.describe()["skipped"] == engine.skipped


def test_when_no_configured_back_end_runs_the_error_lists_each_reason(tmp_path, bundle) -> None:
    import onnxruntime

    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the TensorRT provider")
    config = _config(tmp_path, backends="onnxruntime-trt,triton")
    with pytest.raises(EngineError) as caught:
        open_engine(bundle, config)
    assert caught.value.code == "no_backend"
    assert "TensorrtExecutionProvider" in caught.value.message
    assert "KIOSK_TRITON_URL" in caught.value.message


def test_an_unknown_back_end_is_an_error_listing_the_supported_ones(tmp_path, bundle) -> None:
    with pytest.raises(EngineError) as caught:
        open_engine(bundle, _config(tmp_path, backends="onnxruntime-cpu,openvino"))
    assert caught.value.code == "unknown_backend"
    for name in REGISTRY:
        assert name in caught.value.message


def test_a_session_that_runs_elsewhere_than_asked_is_refused(tmp_path, bundle) -> None:
    """onnxruntime-gpu quietly runs on the CPU when CUDA fails to load; reproduced here for real:
    this engine asks for one provider but hands the session only the CPU one, as the fallback
    does, and the check on ``session.get_providers()`` must catch it."""

    class FallsBack(OnnxRuntimeEngine):
        name = "falls-back"
        provider = "AzureExecutionProvider"  # listed as available by the CPU wheel

        def providers(self) -> list:
            return ["CPUExecutionProvider"]

    import onnxruntime

    if FallsBack.provider not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build lists no second provider to ask for")
    with pytest.raises(EngineError) as caught:
        FallsBack(bundle, _config(tmp_path)).load()
    assert caught.value.code == "provider_fell_back"
    assert "CPUExecutionProvider" in caught.value.message


def test_infer_before_load_is_an_engine_error(tmp_path, bundle) -> None:
    with pytest.raises(EngineError):
        CpuEngine(bundle, _config(tmp_path)).infer(np.zeros((1, 3, 32, 32), np.float32))


def test_every_registered_back_end_imports_without_its_runtime() -> None:
    for name in REGISTRY:
        assert engine_class(name).name == name  # results report the name KIOSK_BACKENDS uses


def test_tensorrt_without_tensorrt_is_a_clear_error(tmp_path, bundle) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here; the GPU test covers it")
    with pytest.raises(EngineError) as caught:
        TensorRtEngine(bundle, _config(tmp_path)).load()
    assert caught.value.code == "provider_missing" and "TensorRT" in caught.value.message


def test_tensorrt_engines_are_cached_per_bundle_gpu_and_version(tmp_path: Path) -> None:
    one = cache_path(tmp_path, "ab" * 32, "NVIDIA Orin (nvgpu)", "10.3.0")
    assert one.parent == tmp_path / "tensorrt" and one.suffix == ".plan"
    assert "NVIDIA_Orin_nvgpu" in one.name and "10.3.0" in one.name
    assert one != cache_path(tmp_path, "ab" * 32, "NVIDIA H100", "10.3.0")
    assert one != cache_path(tmp_path, "ab" * 32, "NVIDIA Orin (nvgpu)", "10.4.0")
    assert one != cache_path(tmp_path, "cd" * 32, "NVIDIA Orin (nvgpu)", "10.3.0")


def _has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and Path("/dev/nvidia0").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["onnxruntime-cuda", "onnxruntime-trt", "tensorrt"])
def test_gpu_back_ends_really_run_on_the_gpu(tmp_path: Path, bundle, backend: str) -> None:
    if not _has_gpu():
        pytest.skip("no CUDA GPU on this machine (nvidia-smi and /dev/nvidia0 absent)")
    reference = open_engine(bundle, _config(tmp_path))
    try:
        engine = open_engine(bundle, _config(tmp_path, backends=backend))
    except EngineError as exc:
        pytest.skip(f"{backend} runtime not installed here: {exc.message}")
    assert engine.name == backend and engine.skipped == []
    batch = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    expected, got = reference.infer(batch), engine.infer(batch)
    np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(got["cam"], expected["cam"], rtol=1e-2, atol=1e-2)
