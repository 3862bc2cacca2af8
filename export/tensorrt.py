"""Build TensorRT engines (FP16, and INT8 from the QDQ variant) for a bundle, cached and checked.

Run on the device that will screen (``python -m export tensorrt models/fundus-dr-2.0.1``): an
engine is only valid for the GPU and TensorRT release that built it, so engines are cached under
the kiosk's ``KIOSK_ENGINE_CACHE_DIR`` by (bundle sha256, GPU name, TensorRT version), exactly
where ``engines/tensorrt_engine.py`` looks. TensorRT and cuda-python are imported only inside
the functions here, so this module imports cleanly on machines without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.errors import ExportError

#: Largest tolerated |TensorRT - onnxruntime CPU| on a logit (FP16 / INT8 engines).
TOLERANCE = {"fp16": 0.05, "int8": 0.25}


def _tensorrt() -> Any:
    """The tensorrt module, or ExportError saying where it comes from."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ExportError(
            "TensorRT is not installed here: it comes with JetPack on Jetson or the "
            "NGC TensorRT images; run this step on the GPU device"
        ) from exc
    return tensorrt


def int8_plan_path(fp16_plan: Path) -> Path:
    """The INT8 engine's cache file, beside the FP16 one."""
    return fp16_plan.with_name(fp16_plan.stem + "-int8.plan")


def build_int8(
    trt: Any, qdq_model: Path, target: Path, input_name: str, shape: tuple[int, int, int], max_batch: int
) -> None:
    """Build an explicit-quantisation INT8 engine from a QDQ ONNX graph."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(qdq_model)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {qdq_model.name}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (1, *shape), (1, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT INT8 build of {qdq_model.name} failed")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(plan))


def build_engines(
    bundle_dir: Path, trusted_keys: Path, cache_dir: Path, sample: np.ndarray, max_batch: int = 8
) -> dict[str, Any]:
    """Verify the bundle, build/reuse its FP16 (and INT8) engines, check parity; a report dict."""
    from engines.bundle import load_bundle
    from engines.tensorrt_engine import TensorRtEngine
    from export.onnx_export import onnx_outputs
    from kiosk.config import load_config

    trt = _tensorrt()
    bundle = load_bundle(bundle_dir, trusted_keys)
    config = load_config(env={}, engine_cache_dir=cache_dir, batch_size=max_batch)
    engine = TensorRtEngine(bundle, config)
    engine.load()  # builds (or reuses) the FP16 engine at the kiosk's cache path
    reference = onnx_outputs(bundle.variant_path("fp32"), sample)["logits"]
    report: dict[str, Any] = {
        "gpu": engine.name,
        "tensorrt": trt.__version__,
        "fp16": {"plan": str(engine.plan_path), "max_abs_diff": _parity(engine, sample, reference, "fp16")},
    }
    if "int8" in bundle.manifest["variants"] and engine.plan_path is not None:
        spec = bundle.input_spec
        target = int8_plan_path(engine.plan_path)
        if not target.is_file():
            build_int8(
                trt,
                bundle.variant_path("int8"),
                target,
                bundle.input_name,
                (int(spec["channels"]), int(spec["size"]), int(spec["size"])),
                max_batch,
            )
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine.engine = runtime.deserialize_cuda_engine(target.read_bytes())
        engine.context = engine.engine.create_execution_context()
        report["int8"] = {"plan": str(target), "max_abs_diff": _parity(engine, sample, reference, "int8")}
    return report


def _parity(engine: Any, sample: np.ndarray, reference: np.ndarray, precision: str) -> float:
    """Max |logit difference| against onnxruntime CPU; ExportError above the tolerance."""
    got = np.concatenate([engine.infer(sample[i : i + 1])["logits"] for i in range(len(sample))])
    worst = float(np.abs(got - reference).max())
    if not np.isfinite(worst) or worst > TOLERANCE[precision]:
        raise ExportError(
            f"TensorRT {precision} parity failed: max |diff| {worst:.3g} > {TOLERANCE[precision]}"
        )
    return worst
