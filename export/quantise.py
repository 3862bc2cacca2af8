"""Static INT8 (QDQ) quantisation with real calibration images, and CPU latency measurement."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from export.onnx_export import cpu_session


class _Images:
    """onnxruntime's CalibrationDataReader over preprocessed images, a few at a time."""

    def __init__(self, name: str, images: np.ndarray, batch: int = 16) -> None:
        self.batches = iter([{name: images[i : i + batch]} for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next calibration batch, or None when done."""
        return next(self.batches, None)


def quantise_static(model: Path, target: Path, calibration: np.ndarray, input_name: str = "image") -> None:
    """Write a QDQ INT8 model calibrated on ``calibration`` (float32 [N, C, H, W] real images)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            _Images(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": 99.99},
        )


def latency_ms(model: Path, sample: np.ndarray, *, runs: int = 30, threads: int = 2) -> float:
    """Median wall time of one single-image inference on CPU (after warm-up), in ms."""
    session = cpu_session(model, threads)
    name = session.get_inputs()[0].name
    one = sample[:1]
    for _ in range(3):
        session.run(None, {name: one})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, {name: one})
        times.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(times))
