"""Native TensorRT: an engine built on this device from the bundle's ONNX, cached, then run.

TensorRT and the CUDA runtime bindings (``cuda-python``) come with JetPack or the NGC images and
cannot be installed on every machine, so both are imported inside ``load()`` only; without them
``load()`` raises EngineError and the next configured back-end is tried (and reported).
Engines are cached under ``KIOSK_ENGINE_CACHE_DIR`` by (bundle sha256, GPU name, TensorRT
version): an engine is only valid for the GPU and TensorRT release that built it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine
from kiosk.errors import EngineError


def cache_path(cache_dir: Path, bundle_sha256: str, gpu_name: str, trt_version: str) -> Path:
    """Where the engine for this bundle, GPU and TensorRT version is cached."""
    gpu = re.sub(r"[^A-Za-z0-9.]+", "_", gpu_name).strip("_") or "gpu"
    trt = re.sub(r"[^A-Za-z0-9.]+", "_", trt_version)
    return Path(cache_dir) / "tensorrt" / f"{bundle_sha256[:16]}-{gpu}-trt{trt}.plan"


def _cudart() -> Any:
    """The CUDA runtime bindings of cuda-python (module moved in cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def _check(result: Any) -> Any:
    """Unwrap a cuda-python (error, value...) tuple; EngineError on a CUDA error."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise EngineError(f"tensorrt: CUDA error {error}", code="cuda_error", retryable=True)
    return values[0] if len(values) == 1 else values


class TensorRtEngine(Engine):
    """A TensorRT engine (FP16 where the GPU has fast FP16) with a dynamic batch profile."""

    name = "tensorrt"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trt: Any = None
        self.cudart: Any = None
        self.engine: Any = None
        self.context: Any = None
        self.stream: Any = None
        self.plan_path: Path | None = None
        self.fast_fp16 = False
        self.gpu = ""

    def load(self) -> None:
        """Import TensorRT, build or reuse the cached engine, and make an execution context."""
        try:
            import tensorrt as trt

            self.cudart = _cudart()
        except ImportError as exc:
            raise EngineError(f"tensorrt: TensorRT or cuda-python is not installed ({exc}); "
                              "it comes with JetPack / the NGC images", code="provider_missing") from exc
        self.trt = trt
        gpu = self._gpu_name()
        self.plan_path = cache_path(self.config.engine_cache_dir, self.bundle.sha256, gpu,
                                    trt.__version__)
        logger = trt.Logger(trt.Logger.WARNING)
        self.fast_fp16 = bool(getattr(trt.Builder(logger), "platform_has_fast_fp16", False))
        if not self.plan_path.is_file():
            self._build(logger, self.plan_path)
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise EngineError(f"tensorrt: cached engine {self.plan_path} does not load; delete it "
                              "to rebuild", code="engine_load_failed")
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.variant = "fp16" if self.fast_fp16 else "fp32"
        self.gpu = gpu

    def _gpu_name(self) -> str:
        """The name of CUDA device 0; EngineError when there is no GPU."""
        count = _check(self.cudart.cudaGetDeviceCount())
        if count < 1:
            raise EngineError("tensorrt: no CUDA GPU found", code="provider_missing")
        props = _check(self.cudart.cudaGetDeviceProperties(0))
        name = props.name
        return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)

    def _build(self, logger: Any, target: Path) -> None:
        """Parse the ONNX, build with a 1..batch_size profile, write the plan atomically."""
        trt = self.trt
        builder = trt.Builder(logger)
        explicit = 0  # TensorRT 10 networks are always explicit-batch; 8.x needs the flag
        if int(trt.__version__.split(".")[0]) < 10:
            explicit = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(explicit)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(self.bundle.variant_path("fp32"))):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"tensorrt: cannot parse the ONNX: {errors}", code="engine_load_failed")
        config = builder.create_builder_config()
        if self.fast_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        spec = self.bundle.input_spec
        shape = (int(spec["channels"]), int(spec["size"]), int(spec["size"]))
        profile = builder.create_optimization_profile()
        largest = max(1, self.config.batch_size)
        profile.set_shape(self.bundle.input_name, (1, *shape), (1, *shape), (largest, *shape))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise EngineError("tensorrt: the engine build failed", code="engine_load_failed")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(bytes(plan))
        partial.replace(target)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Copy the batch to the GPU, run the engine, copy the outputs back."""
        if self.context is None:
            raise EngineError("tensorrt: infer() before load()", code="engine_not_loaded")
        cudart = self.cudart
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.context.set_input_shape(self.bundle.input_name, batch.shape)
        host = {self.bundle.input_name: batch}
        for name in self.bundle.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            host[name] = np.empty(shape, dtype=np.float32)
        device = {name: _check(cudart.cudaMallocAsync(array.nbytes, self.stream))
                  for name, array in host.items()}
        try:
            to_gpu = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            _check(cudart.cudaMemcpyAsync(device[self.bundle.input_name], batch.ctypes.data,
                                          batch.nbytes, to_gpu, self.stream))
            for name, pointer in device.items():
                self.context.set_tensor_address(name, int(pointer))
            if not self.context.execute_async_v3(self.stream):
                raise EngineError("tensorrt: execution failed", code="infer_failed", retryable=True)
            for name in self.bundle.output_names:
                _check(cudart.cudaMemcpyAsync(host[name].ctypes.data, device[name],
                                              host[name].nbytes, to_host, self.stream))
            _check(cudart.cudaStreamSynchronize(self.stream))
        finally:
            for pointer in device.values():
                cudart.cudaFreeAsync(pointer, self.stream)
        return {name: host[name] for name in self.bundle.output_names}

    def describe(self) -> dict[str, object]:
        """The base description plus the cached engine file."""
        info = super().describe()
        info.update(gpu=self.gpu, engine_file=str(self.plan_path) if self.plan_path else None)
        return info
