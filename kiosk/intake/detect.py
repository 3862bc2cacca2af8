"""What a decoded picture shows when no header says so: a fundus photograph or a chest film."""

from __future__ import annotations

import cv2
import numpy as np

from kiosk.domain import ImageKind
from kiosk.errors import IntakeError
from kiosk.quality.chest import looks_inverted, looks_like_chest
from kiosk.quality.fov import find_field_of_view

#: Mean chroma (max - min channel, 0-255) above which a picture counts as a colour photograph.
COLOUR_CHROMA = 12.0
#: Frame corners darker than this (0-255) are the black surround of a fundus camera's disc.
DARK_CORNER = 40.0


def chroma(pixels: np.ndarray) -> float:
    """Mean spread between the colour channels over the lit pixels (0 for grey)."""
    if pixels.ndim != 3:
        return 0.0
    step = max(1, max(pixels.shape[:2]) // 256)
    sample = pixels[::step, ::step].astype(np.int16)
    spread = sample.max(axis=2) - sample.min(axis=2)
    lit = sample.max(axis=2) > 30
    return float(spread[lit].mean()) if lit.any() else 0.0


def grey_of(pixels: np.ndarray) -> np.ndarray:
    """The (H, W) luminance of grey or RGB uint8 pixels."""
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def rgb_of(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB pixels from grey or RGB."""
    return pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)


def looks_like_fundus(pixels: np.ndarray) -> bool:
    """A lit disc of retina inside a dark frame, filling a good part of the picture."""
    rgb = rgb_of(pixels)
    fov = find_field_of_view(rgb)
    if fov is None:
        return False
    height, width = rgb.shape[:2]
    if not 0.25 * min(height, width) < fov.radius < 0.8 * max(height, width):
        return False
    corner = max(2, min(height, width) // 12)
    grey = grey_of(pixels)
    corners = [grey[:corner, :corner], grey[:corner, -corner:], grey[-corner:, :corner],
               grey[-corner:, -corner:]]
    return sum(float(np.median(c)) < DARK_CORNER for c in corners) >= 3


def detect_kind(pixels: np.ndarray) -> ImageKind | None:
    """'fundus' for a colour disc on black, 'cxr' for a grey chest film, else None."""
    colour = chroma(pixels) >= COLOUR_CHROMA
    if colour:
        return "fundus" if looks_like_fundus(pixels) else None
    grey = grey_of(pixels)
    if looks_like_chest(grey):
        return "cxr"
    return "fundus" if looks_like_fundus(pixels) else None


def as_kind(pixels: np.ndarray, kind: ImageKind | None) -> np.ndarray:
    """Grey pixels for a film, RGB for a photograph, unchanged when the kind is unknown."""
    if kind == "cxr":
        return grey_of(pixels)
    if kind == "fundus":
        return rgb_of(pixels)
    return pixels


def check_chest_content(grey: np.ndarray) -> None:
    """Refuse a film said to be a chest whose pixels are inverted or show something else."""
    if looks_like_chest(grey):
        return
    if looks_inverted(grey):
        raise IntakeError(
            "The film's header says how to display it (MONOCHROME1/2), but its pixels look the "
            "other way round: refused rather than shown inverted. Check the X-ray unit's export "
            "settings.", code="photometric_mismatch")
    raise IntakeError(
        "This does not look like a frontal chest film (no lung fields either side of the "
        "spine): it cannot be screened for chest disease.", code="wrong_body_part")
