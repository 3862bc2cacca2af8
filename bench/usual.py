"""The usual way to screen an image, as a researcher's script would: the baseline of the benchmark.

Full-size decode (pydicom ``pixel_array`` / Pillow), numpy windowing, the same preprocessing
steps as the bundle's manifest (``kiosk.preprocess`` on the full-size pixels), and the same
network in PyTorch eager mode, float32: the bundle's own ONNX graph run node by node with torch
operators (``bench/onnx_eager.py``), so no training checkpoint is needed. The verdict uses the
manifest's temperature and threshold, so both ways decide alike and only the route to the
number differs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def bundle_folder(models_dir: Path, task: str) -> Path:
    """The newest bundle of a task."""
    found = sorted(models_dir.glob(f"{task}-*/manifest.json"))
    if not found:
        raise SystemExit(f"no bundle for {task} in {models_dir}")
    return found[-1].parent


def bundle_manifest(models_dir: Path, task: str) -> dict[str, Any]:
    """The newest bundle manifest for a task (read as plain JSON, as a script would)."""
    manifest: dict[str, Any] = json.loads((bundle_folder(models_dir, task) / "manifest.json").read_text())
    return manifest


def bundle_onnx(models_dir: Path, task: str) -> Path:
    """The newest bundle's fp32 graph for a task."""
    folder = bundle_folder(models_dir, task)
    return folder / str(bundle_manifest(models_dir, task)["variants"]["fp32"]["file"])


def load_network(models_dir: Path, task: str) -> Any:
    """The bundle's network in PyTorch eager mode (eval), from its own ONNX weights."""
    from bench.onnx_eager import EagerOnnx

    return EagerOnnx(bundle_onnx(models_dir, task)).eval()


def decode_full(path: Path) -> tuple[np.ndarray, str, float | None]:
    """Full-size 8-bit pixels, the image kind ('cxr' for DICOM films, 'fundus' for photos), and
    for DICOM the seconds pydicom's own read and decode (``pixel_array``) took."""
    if path.suffix.lower() == ".dcm":
        grey, pydicom_s = _dicom_to_uint8(path)
        return grey, "cxr", pydicom_s
    from PIL import Image

    with Image.open(path) as opened:
        return np.asarray(opened.convert("RGB")), "fundus", None


def _dicom_to_uint8(path: Path) -> tuple[np.ndarray, float]:
    """pydicom full decode, rescale and VOI window in numpy, MONOCHROME1 inverted."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    start = time.perf_counter()
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    pydicom_s = time.perf_counter() - start
    values = apply_modality_lut(stored, ds).astype(np.float32)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        values = np.asarray(apply_voi_lut(values, ds), dtype=np.float32)
    low, high = np.percentile(values[::4, ::4], [0.1, 99.9])
    grey = np.clip((values - low) * (255.0 / max(float(high - low), 1e-6)), 0, 255).astype(np.uint8)
    return (255 - grey if str(ds.PhotometricInterpretation) == "MONOCHROME1" else grey), pydicom_s


class UsualScreener:
    """Decode, preprocess, run in PyTorch eager, threshold: one image at a time."""

    def __init__(self, models_dir: Path, tasks: list[str]) -> None:
        self.manifests = {task: bundle_manifest(models_dir, task) for task in tasks}
        self.nets = {task: load_network(models_dir, task) for task in tasks}

    def screen(self, path: Path, task: str | None = None) -> dict[str, Any]:
        """Verdict and referable probability of one file, with ``task``'s network (or the
        kind's first task)."""
        import torch

        from kiosk.domain import Image
        from kiosk.preprocess import prepare

        start = time.perf_counter()
        pixels, kind, pydicom_s = decode_full(path)
        decoded = time.perf_counter()
        task = task or next(t for t in self.manifests if t.startswith("cxr" if kind == "cxr" else "fundus"))
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
        if pydicom_s is not None:
            timings["pydicom_decode"] = pydicom_s
        return {
            "task": task,
            "verdict": verdict,
            "score": probability,
            "timings_ms": {k: round(v * 1000, 2) for k, v in timings.items()},
        }
