"""The one small Engine interface, the registry of back-ends, and choosing one by preference.

Each back-end lives in its own module and imports its runtime (onnxruntime, TensorRT,
tritonclient) only inside ``load()``, so the kiosk imports nothing heavy it does not run.
The back-end that really runs is ``engine.name``; when the configured order skips a back-end
the reason is kept in ``engine.skipped`` and reported, never hidden.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from kiosk.config import Config
from kiosk.errors import EngineError

if TYPE_CHECKING:
    from engines.bundle import Bundle

log = logging.getLogger(__name__)

#: back-end name (as in KIOSK_BACKENDS) -> "module:Class" under engines/
REGISTRY: dict[str, str] = {
    "onnxruntime-cpu": "engines.onnxruntime_engine:CpuEngine",
    "onnxruntime-cuda": "engines.onnxruntime_engine:CudaEngine",
    "onnxruntime-trt": "engines.onnxruntime_engine:TensorRtEpEngine",
    "tensorrt": "engines.tensorrt_engine:TensorRtEngine",
    "triton": "engines.triton_engine:TritonEngine",
}


class Engine:
    """Runs one bundle's network on one back-end: ``load()`` once, then ``infer(batch)``."""

    name = "engine"

    def __init__(self, bundle: Bundle, config: Config) -> None:
        self.bundle = bundle
        self.config = config
        self.variant = "fp32"
        self.skipped: list[str] = []  # back-ends tried before this one, with the reason
        self.warmup_ms: float | None = None

    def load(self) -> None:
        """Prepare the back-end; EngineError when it cannot run here."""
        raise NotImplementedError

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a [N, C, H, W] float32 batch; output name -> array with N rows."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what ``load()`` took (connections, GPU memory); the engine is unusable after."""

    def warm_up(self) -> float:
        """Run one blank image through the network; returns the warm-up latency in ms."""
        spec = self.bundle.input_spec
        size, channels = int(spec["size"]), int(spec["channels"])
        blank = np.zeros((1, channels, size, size), dtype=np.float32)
        start = time.perf_counter()
        outputs = self.infer(blank)
        self.warmup_ms = (time.perf_counter() - start) * 1000.0
        logits = self.bundle.manifest["outputs"].get("logits", "logits")
        if logits not in outputs or outputs[logits].shape != (1, len(self.bundle.labels)):
            raise EngineError(f"{self.name}: warm-up returned {sorted(outputs)} without "
                              f"{logits!r} of shape (1, {len(self.bundle.labels)})")
        return self.warmup_ms

    def describe(self) -> dict[str, object]:
        """What runs: back-end, variant, warm-up latency and any back-ends skipped."""
        return {"backend": self.name, "variant": self.variant, "warmup_ms": self.warmup_ms,
                "skipped": list(self.skipped)}


def engine_class(backend: str) -> type[Engine]:
    """The Engine class registered for ``backend``; EngineError listing the known ones."""
    if backend not in REGISTRY:
        raise EngineError(f"unknown back-end {backend!r}; supported: {', '.join(REGISTRY)}",
                          code="unknown_backend")
    module_name, class_name = REGISTRY[backend].split(":")
    cls: type[Engine] = getattr(importlib.import_module(module_name), class_name)
    return cls


def preference(config: Config) -> list[str]:
    """The configured back-ends in order; EngineError for an empty or unknown entry."""
    order = [name.strip() for name in config.backends.split(",") if name.strip()]
    if not order:
        raise EngineError(f"KIOSK_BACKENDS is empty; supported: {', '.join(REGISTRY)}",
                          code="unknown_backend")
    for name in order:
        engine_class(name)
    return order


def open_engine(bundle: Bundle, config: Config) -> Engine:
    """Load and warm up the first back-end in the configured order that really runs here."""
    skipped: list[str] = []
    for backend in preference(config):
        engine = engine_class(backend)(bundle, config)
        try:
            engine.load()
            engine.warm_up()
        except EngineError as exc:
            engine.close()
            log.warning("back-end %s not used for %s: %s", backend, bundle.task, exc.message)
            reason = exc.message
            skipped.append(reason if reason.startswith(backend) else f"{backend}: {reason}")
            continue
        engine.skipped = skipped
        if skipped:
            log.warning("%s runs on %s, not the first choice (%s)", bundle.task, engine.name,
                        "; ".join(skipped))
        return engine
    raise EngineError(f"no configured back-end can run {bundle.task}: " + "; ".join(skipped),
                      code="no_backend")
