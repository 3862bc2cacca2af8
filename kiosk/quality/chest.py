"""Gradability of a chest film, and the intensity layout that says a picture is a chest at all.

A frontal chest film in MONOCHROME2 sense (bright = dense) has two dark lung fields either side
of a brighter mediastinum and spine, and the bright abdomen below the diaphragm. Rotated,
upside-down or inverted films, and films of other body parts, break that layout. Uniform
borders (padding, collimation) are cut away first, so the shape of the exposed area counts too:
a limb or a dental panoramic is far taller or wider than a chest.

Thresholds were chosen on the adult films in ``cxr/samples``, the DICOM chests and 400 Kermany
films (all upright and not inverted), against their inverted, rotated and flipped copies, the
tibia and dental films, and fundus photographs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.domain import QualityReason, QualityReport

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
#: Lung fields side by side make the column profile vary more than the row profile; a film
#: whose rows vary more than this beyond its columns is turned on its side.
SIDEWAYS = -0.01
#: Abdomen-minus-neck brightness below which the film is upside down (1 % of upright films
#: fall below it, 91 % of upside-down copies do).
MIN_UPRIGHT = -0.02
#: Exposure limits on the 0-255 pixels.
MAX_BLANK = 0.6  # share of featureless pixels
MAX_CLIPPED = 0.4  # share of pixels at pure black or pure white
MIN_CONTRAST = 40.0  # 2nd to 98th percentile spread

REASONS = {
    "inverted": "The film looks inverted (bones dark, lungs bright): check the export settings "
                "of the X-ray unit and send it again.",
    "rotated": "The film is turned on its side: send it upright (head at the top).",
    "upside_down": "The film is upside down: send it with the head at the top.",
    "not_a_chest": "This does not look like a frontal chest film (no lung fields either side of "
                   "the spine): check the right image was chosen.",
    "mostly_blank": "Most of the film is blank: check the exposure and collimation, and retake.",
    "clipped": "Much of the film is burnt out or clipped to black/white: check the exposure and "
               "retake.",
    "low_contrast": "The film has too little contrast to read (under- or over-exposed): check "
                    "the exposure settings and retake.",
}


@dataclass(frozen=True)
class ChestLayout:
    """Brightness contrasts of a chest film's regions on a 0-1 scale (positive = chest-like)."""

    mediastinum: float  # mediastinum brighter than the brighter of the two lung fields
    abdomen: float  # abdomen below the diaphragm brighter than the lung fields
    asymmetry: float  # difference between the two lung fields
    upright: float  # abdomen brighter than the neck and shoulders
    aspect: float  # width/height of the exposed area
    across: float  # how much more the brightness varies across the chest than down it

    @property
    def score(self) -> float:
        """One number: above zero for a frontal chest film the right way up and not inverted."""
        return self.mediastinum + self.abdomen + 0.5 * self.upright - 0.5 * self.asymmetry


def exposed_area(grey: np.ndarray, tolerance: float = 0.04) -> tuple[slice, slice]:
    """Rows and columns of the film inside its uniform borders (padding, collimator shadow)."""
    small = cv2.resize(grey, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)
    low, high = np.percentile(small, [1, 99])
    small = (small - low) / max(float(high - low), 1.0)
    rows = np.nonzero(small.std(axis=1) > tolerance)[0]
    cols = np.nonzero(small.std(axis=0) > tolerance)[0]
    if len(rows) < 8 or len(cols) < 8:
        return slice(0, grey.shape[0]), slice(0, grey.shape[1])
    height, width = grey.shape
    return (slice(rows[0] * height // 128, (rows[-1] + 1) * height // 128),
            slice(cols[0] * width // 128, (cols[-1] + 1) * width // 128))


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
    across = float(thumb[13:42, 6:58].mean(axis=0).std() - thumb[6:58, 9:55].mean(axis=1).std())
    return ChestLayout(middle - brighter, abdomen - brighter, abs(left - right), abdomen - neck,
                       aspect, across)


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


def chest_layout(grey: np.ndarray) -> ChestLayout:
    """The region contrasts of a grey (H, W) uint8 film in MONOCHROME2 sense, as given."""
    return chest_layouts(grey)["as_is"]


def plausible_shape(layout: ChestLayout) -> bool:
    """The exposed area is shaped like a chest film (not a limb, not a dental panoramic)."""
    low, high = ASPECT_RANGE
    return low <= layout.aspect <= high or low <= 1.0 / layout.aspect <= high


def looks_like_chest(grey: np.ndarray) -> bool:
    """True when the film has the layout of an upright frontal chest film, as given."""
    layout = chest_layout(grey)
    return plausible_shape(layout) and layout.score > MIN_SCORE


def is_inverted(layouts: dict[str, ChestLayout]) -> bool:
    """The negative reads as a chest clearly better than the film itself."""
    return layouts["inverted"].score - layouts["as_is"].score > POLARITY_MARGIN


def is_sideways(layouts: dict[str, ChestLayout]) -> bool:
    """The film varies more down than across and does not read as an upright chest."""
    as_is = layouts["as_is"]
    return as_is.across < SIDEWAYS and as_is.score < STRONG


def looks_inverted(grey: np.ndarray) -> bool:
    """True when the film's negative reads as a chest far better than the film itself."""
    layouts = chest_layouts(grey)
    return plausible_shape(layouts["as_is"]) and is_inverted(layouts)


def layout_failure(layouts: dict[str, ChestLayout]) -> str | None:
    """The reason code for a film that is not an upright, non-inverted chest, else None."""
    as_is = layouts["as_is"]
    if not plausible_shape(as_is):
        return "not_a_chest"
    if is_sideways(layouts):
        return "rotated"
    if is_inverted(layouts):
        return "inverted"
    if as_is.upright < MIN_UPRIGHT:
        return "upside_down"
    if as_is.score <= MIN_SCORE:
        return "not_a_chest"
    return None


def exposure_measures(grey: np.ndarray) -> dict[str, float]:
    """Shares of featureless and clipped pixels, and the contrast, of a 0-255 film."""
    small = cv2.resize(grey, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)
    mean = cv2.blur(small, (5, 5))
    spread = np.sqrt(np.maximum(cv2.blur(small * small, (5, 5)) - mean * mean, 0.0))
    low, high = np.percentile(small, [2, 98])
    clipped = float(((small <= 2) | (small >= 253)).mean())
    return {"blank": float((spread < 2.5).mean()), "clipped": clipped,
            "contrast": float(high - low)}


def exposure_failure(measures: dict[str, float]) -> str | None:
    """The reason code for a film that is mostly blank, clipped or flat, else None."""
    if measures["clipped"] > MAX_CLIPPED:
        return "clipped"
    if measures["contrast"] < MIN_CONTRAST:
        return "low_contrast"
    if measures["blank"] > MAX_BLANK:
        return "mostly_blank"
    return None


def assess_chest(grey: np.ndarray) -> QualityReport:
    """Orientation, inversion and exposure of a chest film, with reasons a nurse can act on."""
    measures = exposure_measures(grey)
    layouts = chest_layouts(grey)
    as_is = layouts["as_is"]
    measures.update(chest_layout=as_is.score, upright=as_is.upright, aspect=as_is.aspect,
                    across=as_is.across, polarity=as_is.score - layouts["inverted"].score)
    # The shape of the exposed area speaks first; the layout means nothing on a blank film.
    shape = None if plausible_shape(as_is) else "not_a_chest"
    exposure = exposure_failure(measures)
    layout = layout_failure(layouts) if shape is None and exposure is None else None
    codes = [code for code in (shape, exposure, layout) if code]
    reasons = tuple(QualityReason(code, REASONS[code]) for code in codes)
    return QualityReport(gradable=not reasons, reasons=reasons, measures=measures)
