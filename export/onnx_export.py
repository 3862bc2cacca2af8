"""Export a trained network to one self-contained ONNX file and prove it computes the same."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from export.errors import ExportError
from export.nets import Shipped

#: Largest tolerated |onnxruntime - torch| on real images (fp32 both sides).
PARITY_TOLERANCE = 1e-3


def export_onnx(model: Shipped, path: Path, channels: int, size: int, *, name: str = "") -> None:
    """Write ``model`` as ONNX (input ``image`` [N, C, H, W], outputs ``logits`` and ``cam``)."""
    model = model.eval().float().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    example = torch.zeros(2, channels, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits", "cam"],
            dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}, "cam": {0: "N"}},
            opset_version=17,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    if name:
        graph.doc_string = name
    onnx.save_model(graph, str(path), save_as_external_data=False)


def onnx_outputs(path: Path, batch: np.ndarray, threads: int = 2) -> dict[str, np.ndarray]:
    """Run an ONNX file with onnxruntime on CPU; output name → array."""
    session = cpu_session(path, threads)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: batch}), strict=True))


def cpu_session(path: Path, threads: int = 2) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_parity(model: Shipped, path: Path, batch: np.ndarray) -> float:
    """Max |difference| of logits and cam between torch and onnxruntime; ExportError if too big."""
    model = model.eval().float()
    logits, cam = model(torch.from_numpy(batch))
    ours = onnx_outputs(path, batch)
    worst = max(
        float(np.abs(ours["logits"] - logits.numpy()).max()), float(np.abs(ours["cam"] - cam.numpy()).max())
    )
    if not np.isfinite(worst) or worst > PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX parity check failed for {path.name}: max |diff| {worst:.2e} "
            f"> {PARITY_TOLERANCE:.0e} on {len(batch)} real images"
        )
    return worst
