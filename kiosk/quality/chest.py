"""Gradability of a chest film, and the intensity layout that says a picture is a chest at all.

A frontal chest film in MONOCHROME2 sense (bright = dense) has two dark lung fields either side
of a brighter mediastinum and spine, and the bright abdomen below the diaphragm. Rotated,
upside-down or inverted films, and films of other body parts, break that layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.domain import QualityReason, QualityReport

#: The layout is read on a square thumbnail of this many pixels a side.
GRID = 64


@dataclass(frozen=True)
class ChestLayout:
    """Brightness contrasts of a chest film's regions, on a 0-1 scale (positive = chest-like)."""

    mediastinum: float  # mediastinum brighter than the darker-looking of the two lung fields
    abdomen: float  # abdomen below the diaphragm brighter than the lung fields
    asymmetry: float  # difference between the two lung fields

    @property
    def score(self) -> float:
        """One number: above zero for a frontal chest film the right way up and not inverted."""
        return self.mediastinum + self.abdomen - 0.5 * self.asymmetry


def _thumbnail(grey: np.ndarray) -> np.ndarray:
    """A GRID x GRID float thumbnail stretched to 0-1 over its 1-99 % range."""
    small = cv2.resize(grey, (GRID, GRID), interpolation=cv2.INTER_AREA).astype(np.float32)
    low, high = np.percentile(small, [1, 99])
    return np.clip((small - low) / max(float(high - low), 1.0), 0.0, 1.0)


def _region(thumb: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> float:
    """Median brightness of a region given as fractions of the height and width."""
    r0, r1 = (round(f * GRID) for f in rows)
    c0, c1 = (round(f * GRID) for f in cols)
    return float(np.median(thumb[r0:r1, c0:c1]))


def chest_layout(grey: np.ndarray) -> ChestLayout:
    """The region contrasts of a grey (H, W) uint8 film in MONOCHROME2 sense."""
    thumb = _thumbnail(grey)
    lungs = (0.2, 0.65)
    left = _region(thumb, lungs, (0.14, 0.38))
    right = _region(thumb, lungs, (0.62, 0.86))
    middle = _region(thumb, lungs, (0.44, 0.56))
    abdomen = _region(thumb, (0.85, 1.0), (0.3, 0.7))
    darker = max(left, right)
    return ChestLayout(middle - darker, abdomen - darker, abs(left - right))


def looks_like_chest(grey: np.ndarray) -> bool:
    """True when the film has the layout of a frontal chest film, as stored."""
    layout = chest_layout(grey)
    return layout.score > 0.1 and layout.abdomen > 0.0


def looks_inverted(grey: np.ndarray) -> bool:
    """True when the negative of the film reads as a chest far better than the film itself."""
    return chest_layout(grey).score < -0.1 and looks_like_chest(255 - grey)


def assess_chest(grey: np.ndarray) -> QualityReport:
    """Orientation, inversion and exposure of a chest film."""
    reasons: list[QualityReason] = []
    layout = chest_layout(grey)
    measures = {"chest_layout": layout.score}
    if looks_inverted(grey):
        reasons.append(QualityReason(
            "inverted", "The film looks inverted (bones dark, lungs bright): check the export "
                        "settings of the X-ray unit and send it again."))
    elif layout.score <= 0.1:
        reasons.append(QualityReason(
            "orientation", "This does not look like an upright frontal chest film: check it is a "
                           "chest PA/AP view, the right way up, and send it again."))
    return QualityReport(gradable=not reasons, reasons=tuple(reasons), measures=measures)
