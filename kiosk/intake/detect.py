"""What a decoded picture shows when no header says so: a fundus photograph or a chest film."""

from __future__ import annotations

import numpy as np

from kiosk.domain import ImageKind
from kiosk.errors import IntakeError
from kiosk.pixels import MIN_SATURATION, as_grey, as_rgb, saturation
from kiosk.pixels.fov import find_field_of_view
from kiosk.quality.chest import STRONG, chest_layouts, is_inverted, looks_like_chest, plausible_shape

#: Frame corners darker than this (0-255) are the black surround of a fundus camera's disc.
DARK_CORNER = 40.0


def looks_like_fundus(pixels: np.ndarray) -> bool:
    """A lit disc of retina inside a dark frame, filling a good part of the picture."""
    rgb = as_rgb(pixels)
    fov = find_field_of_view(rgb)
    if fov is None:
        return False
    height, width = rgb.shape[:2]
    if not 0.25 * min(height, width) < fov.radius < 0.8 * max(height, width):
        return False
    corner = max(2, min(height, width) // 12)
    grey = as_grey(pixels)
    corners = [grey[:corner, :corner], grey[:corner, -corner:], grey[-corner:, :corner],
               grey[-corner:, -corner:]]
    return sum(float(np.median(c)) < DARK_CORNER for c in corners) >= 3


def detect_kind(pixels: np.ndarray) -> ImageKind | None:
    """'fundus' for a colour disc on black, 'cxr' for a grey chest film, else None."""
    colour = saturation(pixels) >= MIN_SATURATION
    if colour:
        return "fundus" if looks_like_fundus(pixels) else None
    if not looks_like_chest(as_grey(pixels)) and looks_like_fundus(pixels):
        return "fundus"  # a red-free (grey) fundus photograph
    return "cxr"


def as_kind(pixels: np.ndarray, kind: ImageKind | None) -> np.ndarray:
    """Grey pixels for a film, RGB for a photograph, unchanged when the kind is unknown."""
    if kind == "cxr":
        return as_grey(pixels)
    if kind == "fundus":
        return as_rgb(pixels)
    return pixels


def check_chest_content(grey: np.ndarray) -> None:
    """Refuse a film said to be a chest whose pixels are inverted or show something else."""
    layouts = chest_layouts(grey)
    if not plausible_shape(layouts["as_is"]):
        raise IntakeError(
            "The exposed part of this film is shaped like a limb or a dental film, not a chest: "
            "it cannot be screened for chest disease.", code="wrong_body_part")
    if is_inverted(layouts):
        raise IntakeError(
            "The film's header says how to display it (MONOCHROME1/2), but its pixels look the "
            "other way round: refused rather than shown inverted. Check the X-ray unit's export "
            "settings.", code="photometric_mismatch")
    if max(layout.score for name, layout in layouts.items() if name != "inverted") < -STRONG:
        raise IntakeError(
            "This does not look like a frontal chest film (no lung fields either side of the "
            "spine): it cannot be screened for chest disease.", code="wrong_body_part")
