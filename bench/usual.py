"""The usual way to screen an image, as a researcher's script would: the baseline of the benchmark.

Full-size decode (pydicom ``pixel_array`` / Pillow), numpy windowing, the same preprocessing
steps as the bundle's manifest (``kiosk.preprocess`` on the full-size pixels), and the same
network in PyTorch eager mode, rebuilt from the model engineer's ``export/`` code and its
training checkpoint. The verdict uses the manifest's temperature and threshold, so both ways
decide alike and only the route to the number differs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def bundle_manifest(models_dir: Path, task: str) -> dict[str, Any]:
    """The newest bundle manifest for a task (read as plain JSON, as a script would)."""
    found = sorted(models_dir.glob(f"{task}-*/manifest.json"))
    if not found:
        raise SystemExit(f"no bundle for {task} in {models_dir}")
    manifest: dict[str, Any] = json.loads(found[-1].read_text())
    return manifest


def load_network(task: str, work: Path, manifest: dict[str, Any], weights_from: Path | None = None) -> Any:
    """The bundle's network in eval mode (PyTorch eager), built by export/'s recipe.

    The manifest's ``export`` block says which ensemble members and how many mirrored views the
    bundle's graph averages. Weights come from the members' training checkpoints, or, when
    ``weights_from`` names the bundle's ONNX (training went on after the bundle was built), from
    that graph's initialisers.
    """
    import torch

    from export.nets import Shipped, build
    from export.recipes import RECIPES
    from export.train import member_dir

    recipe = RECIPES[task]
    shipped_as = manifest.get("export", {})
    members = list(shipped_as.get("members", [0]))
    nets = [
        build(recipe.spec["channels"], recipe.widths, recipe.blocks, recipe.outputs).float().eval()
        for _ in members
    ]
    shipped = Shipped(nets, recipe.head_index, int(shipped_as.get("views", 1))).eval()
    if weights_from is not None:
        load_onnx_weights(shipped, weights_from)
        return shipped
    for member, net in zip(members, nets, strict=True):
        checkpoint = member_dir(work, task, member) / "best.pt"
        if not checkpoint.is_file():
            raise SystemExit(
                f"no checkpoint {checkpoint}: the usual way needs the trained network "
                f"(python -m export train {task} --member {member})"
            )
        net.load_state_dict(torch.load(checkpoint, weights_only=False)["ema"])
    return shipped


def load_onnx_weights(model: Any, onnx_file: Path) -> None:
    """Copy an exported graph's (BatchNorm-folded) convolutions back into the torch module.

    The exporter folds each BatchNorm into the convolution before it; here each convolution
    takes the folded weight and its BatchNorm becomes an identity plus the folded bias. Modules
    and graph nodes are paired in execution order.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_file)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    order: list[Any] = []
    hooks = [
        m.register_forward_hook(lambda m, *_: order.append(m))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.BatchNorm2d)
    ]
    channels, size = model.nets[0].stem[0].in_channels, 32
    with torch.inference_mode():
        model(torch.zeros(1, channels, size, size))
    for hook in hooks:
        hook.remove()
    convs = [
        (m, order[i + 1] if i + 1 < len(order) and isinstance(order[i + 1], torch.nn.BatchNorm2d) else None)
        for i, m in enumerate(order)
        if isinstance(m, torch.nn.Conv2d)
    ]
    if len(convs) != len(nodes):
        raise SystemExit(f"{onnx_file}: {len(nodes)} convolutions, the module has {len(convs)}")
    with torch.no_grad():
        for (conv, norm), node in zip(convs, nodes, strict=True):
            weight = torch.from_numpy(values[node.input[1]].copy())
            if weight.shape != conv.weight.shape:
                raise SystemExit(
                    f"{onnx_file}: {node.name} {tuple(weight.shape)} does not fit {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(weight)
            bias = torch.from_numpy(values[node.input[2]].copy()) if len(node.input) > 2 else None
            if norm is None:
                if bias is not None:
                    conv.bias.copy_(bias)
                continue
            norm.weight.fill_(1.0)
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
            norm.bias.copy_(bias if bias is not None else torch.zeros_like(norm.bias))


def decode_full(path: Path) -> tuple[np.ndarray, str]:
    """Full-size 8-bit pixels and the image kind ('cxr' for DICOM films, 'fundus' for photos)."""
    if path.suffix.lower() == ".dcm":
        return _dicom_to_uint8(path), "cxr"
    from PIL import Image

    with Image.open(path) as opened:
        return np.asarray(opened.convert("RGB")), "fundus"


def _dicom_to_uint8(path: Path) -> np.ndarray:
    """pydicom full decode, rescale and VOI window in numpy, MONOCHROME1 inverted."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        values = np.asarray(apply_voi_lut(values, ds), dtype=np.float32)
    low, high = np.percentile(values[::4, ::4], [0.1, 99.9])
    grey = np.clip((values - low) * (255.0 / max(float(high - low), 1e-6)), 0, 255).astype(np.uint8)
    return 255 - grey if str(ds.PhotometricInterpretation) == "MONOCHROME1" else grey


class UsualScreener:
    """Decode, preprocess, run in PyTorch eager, threshold: one image at a time."""

    def __init__(
        self, models_dir: Path, work: Path, tasks: list[str], weights_from: dict[str, Path] | None = None
    ) -> None:
        self.manifests = {task: bundle_manifest(models_dir, task) for task in tasks}
        weights_from = weights_from or {}
        self.nets = {
            task: load_network(task, work, self.manifests[task], weights_from.get(task)) for task in tasks
        }

    def screen(self, path: Path) -> dict[str, Any]:
        """Verdict and referable probability of one file."""
        import torch

        from kiosk.domain import Image
        from kiosk.preprocess import prepare

        start = time.perf_counter()
        pixels, kind = decode_full(path)
        decoded = time.perf_counter()
        task = "cxr-pneumonia" if kind == "cxr" else "fundus-dr"
        manifest = self.manifests[task]
        tensor = prepare(Image(pixels=pixels, kind=kind), manifest["input"])  # type: ignore[arg-type]
        prepared = time.perf_counter()
        with torch.inference_mode():
            logits, _cam = self.nets[task](torch.from_numpy(tensor[None]))
        inferred = time.perf_counter()
        temperature = float(manifest["calibration"]["temperature"])
        probability = float(torch.sigmoid(logits[0, 0] / temperature))
        threshold = float(manifest["findings"][0]["threshold"])
        verdict = "referable" if probability >= threshold else "non_referable"
        timings = {"decode": decoded - start, "preprocess": prepared - decoded, "infer": inferred - prepared}
        return {
            "task": task,
            "verdict": verdict,
            "score": probability,
            "timings_ms": {k: round(v * 1000, 2) for k, v in timings.items()},
        }
