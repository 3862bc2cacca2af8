"""Tiny screenings built in code for the store and sync tests."""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image as PILImage

from kiosk.store import Screening, Store


def png_bytes(seed: int, size: int = 32) -> bytes:
    """A small RGB PNG whose pixels depend on the seed (so every seed gives new bytes)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def result(verdict: str = "referable", laterality: str = "L", score: float = 0.82) -> dict:
    """A result JSON of interfaces.md for one fundus photograph."""
    positive = verdict == "referable"
    return {
        "input": f"eye-{laterality}.png", "task": "fundus-dr", "verdict": verdict,
        "score": score,
        "findings": [{"label": "referable_dr", "display": "Referable diabetic retinopathy",
                      "probability": score, "threshold": 0.23, "positive": positive,
                      "urgent": False, "ppv": 0.31, "npv": 0.98}],
        "quality": {"gradable": verdict != "ungradable", "reasons": [], "measures": {}},
        "model": {"id": "fundus-dr", "version": "1.0.0", "sha256": "ab" * 32},
        "backend": "onnxruntime-cpu", "laterality": laterality, "priority": int(positive),
        "timings_ms": {"total": 27.0}, "error": None,
    }


def screen(store: Store, seed: int, *, identifier: str | None = None,
           verdicts: tuple[str, ...] = ("referable", "non_referable")) -> Screening:
    """Register a patient and record a two-eye screening with images and heat-maps."""
    patient = store.upsert_patient(identifier or f"P{seed:05d}", f"Patient {seed}",
                                   "1960-01-31", "female", actor="nurse")
    results, shas, heatmaps = [], [], []
    for index, (verdict, side) in enumerate(zip(verdicts, ("L", "R"), strict=False)):
        results.append(result(verdict, side, 0.2 + 0.3 * index))
        shas.append(store.save_image(png_bytes(seed * 10 + index), ".png"))
        heatmaps.append(store.save_image(png_bytes(seed * 10 + index + 5), ".png"))
    return store.record_screening(patient.id, results, actor="nurse", image_shas=shas,
                                  heatmap_shas=heatmaps)


def crc(data: bytes) -> int:
    """A short checksum for messages."""
    return zlib.crc32(data)
