"""The hand-made intensity layout of a chest film, kept for intake's checks on DICOM films.

A frontal chest film in MONOCHROME2 sense (bright = dense) has two dark lung fields either side
of a brighter mediastinum and spine, and the bright abdomen below the diaphragm. Intake
(``kiosk.intake.detect``) uses this layout to refuse a DICOM film whose pixels contradict its
header (``photometric_mismatch``) or whose exposed area is shaped like a limb, and to tell a grey
fundus photograph from a film. The quality gate no longer uses it: orientation, polarity and
"is this a chest" are judged there by the learned check (``chest_check``).

Thresholds were chosen on the adult films in ``cxr/samples``, the DICOM chests and 400 Kermany
films (all upright and not inverted), against their inverted, rotated and flipped copies, the
tibia and dental films, and fundus photographs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.quality.film import exposed_area

#: The layout is read on a square thumbnail of the exposed area, this many pixels a side.
GRID = 64
#: Width/height of the exposed area that a frontal chest film can have.
ASPECT_RANGE = (0.6, 1.7)
#: Layout score below which a film is not read as an upright chest in its stated polarity.
MIN_SCORE = 0.0
#: A film whose negative scores this much better than the film itself is inverted.
POLARITY_MARGIN = 0.1
#: A film scoring below -STRONG in every orientation is not a chest.
STRONG = 0.2


@dataclass(frozen=True)
class ChestLayout:
    """Brightness contrasts of a chest film's regions on a 0-1 scale (positive = chest-like)."""

    mediastinum: float  # mediastinum brighter than the brighter of the two lung fields
    abdomen: float  # abdomen below the diaphragm brighter than the lung fields
    asymmetry: float  # difference between the two lung fields
    upright: float  # abdomen brighter than the neck and shoulders
    aspect: float  # width/height of the exposed area

    @property
    def score(self) -> float:
        """One number: above zero for a frontal chest film the right way up and not inverted."""
        return self.mediastinum + self.abdomen + 0.5 * self.upright - 0.5 * self.asymmetry


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


def _layout_of_thumbnail(thumb: np.ndarray, aspect: float) -> ChestLayout:
    """The region contrasts of a GRID x GRID thumbnail."""
    lungs = (0.2, 0.65)
    left = _region(thumb, lungs, (0.14, 0.38))
    right = _region(thumb, lungs, (0.62, 0.86))
    middle = _region(thumb, lungs, (0.44, 0.56))
    abdomen = _region(thumb, (0.85, 1.0), (0.3, 0.7))
    neck = _region(thumb, (0.0, 0.15), (0.25, 0.75))
    brighter = max(left, right)
    return ChestLayout(middle - brighter, abdomen - brighter, abs(left - right), abdomen - neck,
                       aspect)


def chest_layouts(grey: np.ndarray) -> dict[str, ChestLayout]:
    """The layout as given ('as_is'), inverted, and turned by 90, 180 and 270 degrees."""
    rows, cols = exposed_area(grey)
    area = grey[rows, cols]
    thumb = _thumbnail(area)
    aspect = area.shape[1] / max(1, area.shape[0])
    return {
        "as_is": _layout_of_thumbnail(thumb, aspect),
        "inverted": _layout_of_thumbnail(1.0 - thumb, aspect),
        "turned_90": _layout_of_thumbnail(np.rot90(thumb, 1), 1.0 / aspect),
        "turned_180": _layout_of_thumbnail(np.rot90(thumb, 2), aspect),
        "turned_270": _layout_of_thumbnail(np.rot90(thumb, 3), 1.0 / aspect),
    }


def plausible_shape(layout: ChestLayout) -> bool:
    """The exposed area is shaped like a chest film (not a limb, not a dental panoramic)."""
    low, high = ASPECT_RANGE
    return low <= layout.aspect <= high or low <= 1.0 / layout.aspect <= high


def looks_like_chest(grey: np.ndarray) -> bool:
    """True when the film has the layout of an upright frontal chest film, as given."""
    layout = chest_layouts(grey)["as_is"]
    return plausible_shape(layout) and layout.score > MIN_SCORE


def is_inverted(layouts: dict[str, ChestLayout]) -> bool:
    """The negative reads as a chest clearly better than the film itself."""
    return layouts["inverted"].score - layouts["as_is"].score > POLARITY_MARGIN
