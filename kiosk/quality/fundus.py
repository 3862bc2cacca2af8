"""Gradability of a fundus photograph: field of view, centring, focus and exposure.

Every measure is taken inside the field-of-view disc at one working scale (the disc resized to
``DISC_DIAMETER`` pixels across), so that a 4928-pixel camera image and a 256-pixel export are
judged alike.
"""

from __future__ import annotations

import cv2
import numpy as np

from kiosk.domain import QualityReason, QualityReport
from kiosk.pixels.fov import FieldOfView

#: Measures are taken with the field-of-view disc resized to this many pixels across.
DISC_DIAMETER = 256
#: Thresholds, chosen on EyePACS (full resolution and 256 px) against degraded copies.
MAX_CENTRE_OFFSET = 0.2  # disc centre from the frame centre, in disc radii
MIN_DISC_IN_FRAME = 0.8  # share of the disc's area inside the frame
MIN_DISC_RADIUS = 0.2  # disc radius as a share of the frame's smaller side
MIN_FOCUS = 9.0  # sharpness (vessel edges) inside the disc
MIN_BRIGHTNESS = 40.0  # median green brightness (0-255) inside the disc
MAX_BRIGHTNESS = 190.0
MAX_FLOOR = 120.0  # 5th percentile of green: vessels and shadows stay dark unless hazed over
MIN_CONTRAST = 15.0  # 5th to 95th percentile spread of green inside the disc

REASONS = {
    "no_field_of_view": "No retina found in the picture: aim the camera at the pupil and retake "
                        "(is this a fundus photograph?).",
    "off_centre": "The retina is not centred in the picture: centre the pupil and retake.",
    "field_of_view_small": "The retina fills too little of the picture: move the camera closer "
                           "or dilate the pupil, and retake.",
    "blurred": "The photograph is out of focus: refocus the camera on the retina and retake.",
    "too_dark": "The photograph is too dark: check the flash and the pupil size, and retake.",
    "washed_out": "The photograph is washed out (too bright or hazy): lower the flash, check for "
                  "reflections and retake.",
}


def _reason(code: str) -> QualityReason:
    """The reason with its message for the nurse."""
    return QualityReason(code, REASONS[code])


def _at_working_scale(rgb: np.ndarray, fov: FieldOfView) -> tuple[np.ndarray, np.ndarray]:
    """The green channel and the disc mask, resized so the disc is DISC_DIAMETER across."""
    scale = min(4.0, DISC_DIAMETER / (2.0 * fov.radius))
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    green = cv2.resize(np.ascontiguousarray(rgb[:, :, 1]), size, interpolation=interpolation)
    inner = FieldOfView(fov.cx, fov.cy, fov.radius * 0.85).scaled(scale)
    return green, inner.mask(green.shape)


def focus_measure(green: np.ndarray, mask: np.ndarray) -> float:
    """Standard deviation of the Laplacian inside the disc (vessel and nerve-fibre edges)."""
    laplacian = cv2.Laplacian(green.astype(np.float32), cv2.CV_32F, ksize=3)
    return float(laplacian[mask].std()) if mask.any() else 0.0


def geometry_measures(rgb: np.ndarray, fov: FieldOfView) -> dict[str, float]:
    """Centring, share of the disc inside the frame, and disc size."""
    height, width = rgb.shape[:2]
    offset = np.hypot(fov.cx - width / 2.0, fov.cy - height / 2.0) / fov.radius
    scale = min(1.0, 256.0 / max(height, width))
    small = fov.scaled(scale).mask((max(1, round(height * scale)), max(1, round(width * scale))))
    in_frame = float(small.sum()) / (np.pi * (fov.radius * scale) ** 2)
    return {"centre_offset": float(offset), "disc_in_frame": min(1.0, in_frame),
            "disc_radius": fov.radius / min(height, width)}


def assess_fundus(rgb: np.ndarray, fov: FieldOfView | None) -> QualityReport:
    """Is this fundus photograph gradable, and if not, what should the nurse do?

    ``fov`` is the field of view found in ``rgb`` (``Image.field_of_view``), None when none was.
    """
    if fov is None:
        return QualityReport(False, (_reason("no_field_of_view"),), {})
    measures = geometry_measures(rgb, fov)
    green, mask = _at_working_scale(rgb, fov)
    values = green[mask] if mask.any() else np.zeros(1, np.uint8)
    low, median, high = np.percentile(values, [5, 50, 95])
    measures.update(brightness=float(median), contrast=float(high - low), floor=float(low),
                    focus=focus_measure(green, mask))
    reasons = [_reason(code) for code in _failures(measures)]
    return QualityReport(not reasons, tuple(reasons), measures)


def _failures(m: dict[str, float]) -> list[str]:
    """The reason codes the measures call for, most actionable first."""
    codes = []
    if m["centre_offset"] > MAX_CENTRE_OFFSET or m["disc_in_frame"] < MIN_DISC_IN_FRAME:
        codes.append("off_centre")
    if m["disc_radius"] < MIN_DISC_RADIUS:
        codes.append("field_of_view_small")
    if m["brightness"] < MIN_BRIGHTNESS:
        codes.append("too_dark")
    elif (m["brightness"] > MAX_BRIGHTNESS or m["floor"] > MAX_FLOOR
          or m["contrast"] < MIN_CONTRAST):
        codes.append("washed_out")
    if m["focus"] < MIN_FOCUS and not {"too_dark", "washed_out"} & set(codes):
        codes.append("blurred")
    return codes
