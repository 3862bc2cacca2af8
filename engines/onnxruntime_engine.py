"""ONNX Runtime back-ends: CPU, the CUDA execution provider and the TensorRT execution provider.

onnxruntime-gpu imports on a machine without a GPU, lists the CUDA and TensorRT providers,
logs an error and quietly runs on the CPU. So after making the session we read
``session.get_providers()`` and refuse (EngineError) unless the provider asked for is the one
that really runs first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engines.base import Engine
from kiosk.errors import EngineError


def physical_cores() -> int:
    """Physical CPU cores (hyper-threads share one core's units), at least one."""
    import psutil

    return max(1, psutil.cpu_count(logical=False) or psutil.cpu_count() or 1)


class OnnxRuntimeEngine(Engine):
    """An onnxruntime InferenceSession on one execution provider."""

    name = "onnxruntime"
    provider = "CPUExecutionProvider"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session: Any = None
        self.threads = 0

    def load(self) -> None:
        """Make the session, check the provider really runs, and keep the output names."""
        import onnxruntime as ort

        available = ort.get_available_providers()
        if self.provider not in available:
            raise EngineError(f"{self.name}: onnxruntime {ort.__version__} has no "
                              f"{self.provider} (available: {', '.join(available)})",
                              code="provider_missing")
        self.variant = self.choose_variant()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.threads = self.config.threads or physical_cores()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        path = str(self.bundle.variant_path(self.variant))
        try:
            self.session = ort.InferenceSession(path, sess_options=options,
                                                providers=self.providers())
        except Exception as exc:  # onnxruntime raises its own Fail/RuntimeException types
            raise EngineError(f"{self.name}: could not load {path}: {exc}",
                              code="engine_load_failed") from exc
        running = self.session.get_providers()
        if not running or running[0] != self.provider:
            raise EngineError(f"{self.name}: asked for {self.provider} but the session runs on "
                              f"{', '.join(running)} (onnxruntime fell back)", code="provider_fell_back")

    def providers(self) -> list[Any]:
        """The provider list handed to the session (the CPU provider takes unsupported nodes)."""
        return [self.provider]

    def choose_variant(self) -> str:
        """Which graph to run: fp32 unless a subclass knows better."""
        return "fp32"

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the batch; output name -> array."""
        if self.session is None:
            raise EngineError(f"{self.name}: infer() before load()", code="engine_not_loaded")
        names = self.bundle.output_names
        feed = {self.bundle.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        try:
            results = self.session.run(names, feed)
        except Exception as exc:  # onnxruntime's own exception types
            raise EngineError(f"{self.name}: inference failed: {exc}", code="infer_failed",
                              retryable=True) from exc
        return dict(zip(names, (np.asarray(r) for r in results), strict=True))

    def describe(self) -> dict[str, object]:
        """The base description plus the provider list and threads."""
        info = super().describe()
        info["providers"] = self.session.get_providers() if self.session is not None else []
        info["threads"] = self.threads
        return info


class CpuEngine(OnnxRuntimeEngine):
    """onnxruntime on the CPU; runs the INT8 variant when the manifest says it holds up."""

    name = "onnxruntime-cpu"
    provider = "CPUExecutionProvider"

    def choose_variant(self) -> str:
        """INT8 when the bundle has it and it is faster without losing AUC, else fp32."""
        return "int8" if self.bundle.prefers_int8_on_cpu() else "fp32"


class CudaEngine(OnnxRuntimeEngine):
    """onnxruntime with the CUDA execution provider (fp32 graph)."""

    name = "onnxruntime-cuda"
    provider = "CUDAExecutionProvider"

    def providers(self) -> list[Any]:
        """CUDA first; the CPU provider only takes nodes CUDA cannot run."""
        return [self.provider, "CPUExecutionProvider"]


class TensorRtEpEngine(OnnxRuntimeEngine):
    """onnxruntime with the TensorRT execution provider; engines cached on this device."""

    name = "onnxruntime-trt"
    provider = "TensorrtExecutionProvider"

    def providers(self) -> list[Any]:
        """TensorRT (FP16, engine cache under KIOSK_ENGINE_CACHE_DIR), then CUDA, then CPU."""
        cache = self.config.engine_cache_dir / "ort-trt" / self.bundle.sha256[:16]
        cache.mkdir(parents=True, exist_ok=True)
        options = {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                   "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                   "trt_timing_cache_path": str(cache), **self.profile_shapes()}
        return [(self.provider, options), "CUDAExecutionProvider", "CPUExecutionProvider"]

    def profile_shapes(self) -> dict[str, str]:
        """TensorRT optimisation profile for the dynamic batch axis: 1 to KIOSK_BATCH_SIZE."""
        spec = self.bundle.input_spec
        image = f"{int(spec['channels'])}x{int(spec['size'])}x{int(spec['size'])}"
        name = self.bundle.input_name
        largest = max(1, self.config.batch_size)
        return {"trt_profile_min_shapes": f"{name}:1x{image}",
                "trt_profile_opt_shapes": f"{name}:1x{image}",
                "trt_profile_max_shapes": f"{name}:{largest}x{image}"}
