"""Film-level shifts for training views: what changes between hospitals, applied before preprocessing.

A chest film reaches the kiosk after a detector, a hospital's processing and often a JPEG
export. The paediatric model 1.0.0 scored 0.998 on films from its own hospital and about 0.95 on
films it had not seen; what differs between sources is mostly exposure and processing (gamma,
contrast), detector resolution and sharpening, noise, compression and framing. Each cached
training view draws these on the file's own pixels *before* the kiosk's preprocessing (CLAHE,
scale), so the network learns them as the kiosk will see them, not as a post-CLAHE filter.

No left-right mirroring (``Recipe.hflip`` off): the heart's side is information (the cardiac
border, the left lower lobe behind the heart), and what differs between hospitals is acquisition,
not laterality. The quality gate does pass a mirrored film as upright, so the card measures what
mirroring does to the score (export/generalise.py).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from kiosk.preprocess import render

#: What the card says the views were augmented with (probabilities as drawn below).
DESCRIPTION = (
    "film-level shifts drawn on the file's pixels before the kiosk's preprocessing: random crop of "
    "80-100% of the side with aspect 0.9-1.1 (p 0.7), gamma 0.6-1.6 and linear contrast 0.75-1.25 "
    "(p 0.8), resolution loss to 35-80% and back (p 0.4), blur/sharpen (unsharp amount -0.8..1.0, "
    "p 0.5), detector noise sigma 1-6 grey levels (p 0.3), JPEG re-encoding q 20-95 (p 0.6); then "
    "rotation +-7 degrees, zoom 0.9-1.12, shift +-6% and brightness/contrast after CLAHE; no "
    "left-right mirroring"
)


def raw_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` up to (not including) its first contrast step: the film as the file gives it, at
    the model's size, so shifts can be drawn before CLAHE."""
    steps = spec["steps"]
    first = next(i for i, s in enumerate(steps) if s["op"] not in ("grey", "resize"))
    return {**spec, "steps": [*steps[:first], steps[-1]]}


def rest_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The steps of ``spec`` that :func:`raw_spec` leaves out (CLAHE and scale)."""
    steps = spec["steps"]
    first = next(i for i, s in enumerate(steps) if s["op"] not in ("grey", "resize"))
    return {**spec, "steps": steps[first:]}


def crop(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random window of 80-100% of the side (aspect 0.9-1.1), resized back: other framing and
    collimation, and the squashed aspect ratio of another export."""
    h, w = grey.shape
    side, aspect = rng.uniform(0.80, 1.0), rng.uniform(0.9, 1.1)
    ch, cw = min(h, round(h * side / aspect**0.5)), min(w, round(w * side * aspect**0.5))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return cv2.resize(grey[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_AREA)


def tone(grey: np.ndarray, gamma: float, contrast: float) -> np.ndarray:
    """Gamma and linear contrast about mid-grey: another exposure or processing curve."""
    x = (grey.astype(np.float32) / 255.0) ** gamma
    return np.clip(np.rint(((x - 0.5) * contrast + 0.5) * 255.0), 0, 255).astype(np.uint8)


def resolution(grey: np.ndarray, factor: float) -> np.ndarray:
    """Down to ``factor`` of the size and back up: a coarser detector or a smaller export."""
    h, w = grey.shape
    size = (max(8, round(w * factor)), max(8, round(h * factor)))
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def unsharp(grey: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """``x + amount * (x - blur(x))``: amount > 0 sharpens (edge enhancement), < 0 blurs."""
    x = grey.astype(np.float32)
    blurred = cv2.GaussianBlur(x, (0, 0), sigma)
    return np.clip(np.rint(x + amount * (x - blurred)), 0, 255).astype(np.uint8)


def jpeg(grey: np.ndarray, quality: int) -> np.ndarray:
    """Encoded and decoded as JPEG at ``quality``."""
    ok, encoded = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    if decoded is None:
        raise ValueError("JPEG decoding failed")
    return np.asarray(decoded, dtype=np.uint8)


def shift_film(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random draw of every shift (each with its probability), in the order a film meets them:
    framing, exposure curve, detector resolution, processing, noise, export compression."""
    out = np.ascontiguousarray(grey)
    if rng.random() < 0.7:
        out = crop(out, rng)
    if rng.random() < 0.8:
        out = tone(out, float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))), rng.uniform(0.75, 1.25))
    if rng.random() < 0.4:
        out = resolution(out, rng.uniform(0.35, 0.8))
    if rng.random() < 0.5:
        out = unsharp(out, rng.uniform(-0.8, 1.0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        noise = rng.normal(0.0, rng.uniform(1.0, 6.0), out.shape)
        out = np.clip(out + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        out = jpeg(out, int(rng.integers(20, 96)))
    return out


def shifted_views(raw: np.ndarray, spec: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Every raw film (N, H, W, 1 uint8, from :func:`raw_spec`) shifted once and then through the
    rest of the kiosk's preprocessing: rendered uint8 (N, H, W, 1) like ``Dataset.images``."""
    rest = rest_spec(spec)
    out = np.empty_like(raw)
    for index, film in enumerate(raw):
        out[index] = render(shift_film(film[:, :, 0], rng), rest)
    return out
