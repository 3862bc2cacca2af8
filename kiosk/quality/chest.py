"""Gradability of a chest film: exposure, and a learned check of orientation and content.

Exposure (blank, clipped, flat) and fine detail (blurred, or a small copy enlarged) are measured
directly on the pixels. Which way up the film is,
whether it is inverted, and whether it is a frontal chest film at all are judged by a small
learned check (``chest_check``: a CNN on a 64x64 thumbnail, forward pass in numpy) trained by
``python -m export.chest_check`` on real films, their turned, mirrored and inverted copies, and
pictures that are not chest films. A film mirrored left-right counts as upright.

Measured by ``pytest tests/test_quality_chest_learned.py -m slow -s`` on every real chest film
in ../shared/data (Kermany paediatric, NIH adult, the 8 adult samples, the 3 chest DICOMs),
decoded by the kiosk's intake, with weights sha256 f71d728e...:
- held out (1,286 films of patients never trained on, the samples and DICOMs included): upright
  films refused 1/1,286 (0.08 %: NIH 00003611_007, a white band across its top, read 0.45 head
  at top against 0.45 at bottom; mirrored 0/1,286); turned 90, 180 and 270 degrees and inverted
  copies all refused (5,144/5,144), 5,142 with the right reason (one upside-down and one
  inverted copy refused as "not a chest").
- all 6,041 films (4,755 of them trained on): upright refused 2 (0.03 %: the one above, and NIH
  00001854_003 "clipped" by the exposure check); turned or inverted copies all refused, 24,152
  of 24,164 with the right reason. NIH 00003490_011.jpg is stored upside down: it is measured
  turned upright, and is refused as "upside down" as stored.
- the tibia (both files) and the dental panoramic, given as pixels, are "not a chest" in all four
  orientations; so are the 10 full-size fundus photographs in grey. These films are in the
  training set (as crops and turns); trained without them (``--without-other-body-parts``), the
  check still read the dental film as not a chest in every orientation and the tibia as given
  (p 0.02), but the tibia turned 270 degrees reached p 0.52, hence their place in training.
The hand-made layout rules this replaces refused 14 of 624 upright films (2.2 %, issue 13).
"""

from __future__ import annotations

import cv2
import numpy as np

from kiosk.domain import QualityReason, QualityReport
from kiosk.quality.chest_check import ChestVerdict, shipped_check
from kiosk.quality.film import exposed_area, exposed_thumbnail, film_thumbnail
from kiosk.quality.layout import (
    STRONG,
    ChestLayout,
    chest_layouts,
    is_inverted,
    looks_like_chest,
    plausible_shape,
)

#: Chest probability below which the picture is not read as a frontal chest film.
MIN_CHEST = 0.5
#: Probability above which the film is read as inverted.
MIN_INVERTED = 0.5
#: Exposure limits on the 0-255 pixels.
MAX_BLANK = 0.6  # share of featureless pixels
MAX_CLIPPED = 0.4  # share of pixels at pure black or pure white
MIN_CONTRAST = 40.0  # 2nd to 98th percentile spread
#: Fine detail (``fine_detail``) below which a film is too blurred to read. Set on half of the
#: real chest films in ../shared/data (2,949 films, patients by hash) as 0.9 x their smallest
#: value (0.0662), before the enlarged copies were looked at: the other 3,092 real films and all
#: 6,041 pass; 97-98% of PneumoniaMNIST's 2,698 28 px films enlarged smoothly (linear, cubic,
#: Lanczos; to 224, 512 or 1024 px) are caught (tests/test_quality_chest_detail.py).
MIN_DETAIL = 0.06
#: Distinct lines (``distinct_lines``) below which a film is a small copy enlarged by repeating
#: its pixels (nearest neighbour: blocky), which ``fine_detail`` cannot see (its blocks have
#: sharp edges). Set on a sample of 805 real films (every 10th Kermany, every 3rd NIH, the
#: samples and DICOM films; fewest 162) and 100 PneumoniaMNIST films enlarged by repeating
#: pixels to 224 or 512 px (40 at most; 92 once re-encoded as JPEG q80); held to every real film
#: by tests/test_quality_chest_detail.py.
MIN_LINES = 128
#: Mean |difference| (grey levels) under which two neighbouring lines count as one repeated line
#: (JPEG re-encoding leaves repeated lines slightly different).
LINE_TOLERANCE = 0.5

REASONS = {
    "inverted": "The film looks inverted (bones dark, lungs bright): check the export settings "
                "of the X-ray unit and send it again.",
    "rotated": "The film is turned on its side (the head is at the {side} of the picture): "
               "turn it so the head is at the top and send it again.",
    "upside_down": "The film is upside down (the head is at the bottom of the picture): send "
                   "it with the head at the top.",
    "not_a_chest": "This does not look like a frontal chest film (it may be another body part, "
                   "a photograph, or only part of a film): check the right image was chosen.",
    "mostly_blank": "Most of the film is blank: check the exposure and collimation, and retake.",
    "clipped": "Much of the film is burnt out or clipped to black/white: check the exposure and "
               "retake.",
    "low_contrast": "The film has too little contrast to read (under- or over-exposed): check "
                    "the exposure settings and retake.",
    "film_blurred": "The film is blurred, or is a small copy enlarged (too little fine detail to "
                    "read): send the original film from the X-ray unit, or retake it.",
}


def exposure_measures(grey: np.ndarray) -> dict[str, float]:
    """Shares of featureless and clipped pixels, and the contrast, of a 0-255 film."""
    small = cv2.resize(grey, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)
    mean = cv2.blur(small, (5, 5))
    spread = np.sqrt(np.maximum(cv2.blur(small * small, (5, 5)) - mean * mean, 0.0))
    low, high = np.percentile(small, [2, 98])
    clipped = float(((small <= 2) | (small >= 253)).mean())
    return {"blank": float((spread < 2.5).mean()), "clipped": clipped,
            "contrast": float(high - low)}


def fine_detail(grey: np.ndarray) -> float:
    """How much fine detail the film holds: the mean |Laplacian| of its exposed area at
    128x128, over the area's contrast (its standard deviation, +1).

    A real film has edges at that scale (ribs, vessels, the film's grain); a film badly blurred,
    or a small copy enlarged smoothly (a thumbnail, a 28 px data-set image as a browser or a
    messaging app enlarges it) has almost none, and the models read such pictures with full
    confidence and no sense (issue 13.3's probe: the children's model called 93% of the 28 px
    copies of healthy films pneumonia).
    """
    return _fine_detail(_exposed(grey))


def _exposed(grey: np.ndarray) -> np.ndarray:
    """The film's exposed area (what the detail measures and the learned check read; cropped
    once per film)."""
    rows, cols = exposed_area(grey)
    return grey[rows, cols]


def _fine_detail(exposed: np.ndarray) -> float:
    area = cv2.resize(exposed, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)
    edges = np.abs(cv2.Laplacian(area, cv2.CV_32F)).mean()
    return float(edges / (float(area.std()) + 1.0))


def distinct_lines(grey: np.ndarray) -> int:
    """How many rows (or columns, whichever fewer) of the film's exposed area differ from their
    neighbour: a real film's working copy has about as many as it has pixels; a small copy
    enlarged by repeating pixels has only as many as the small copy had (a 28 px data-set image
    enlarged to 512 px: 28-56, at the working copy's resolution)."""
    return _distinct_lines(_exposed(grey))


def _distinct_lines(exposed: np.ndarray) -> int:
    area = exposed.astype(np.float32)
    if min(area.shape) < 2:
        return min(area.shape)
    across = np.abs(np.diff(area, axis=1)).mean(axis=0)
    down = np.abs(np.diff(area, axis=0)).mean(axis=1)
    return min(int((across > LINE_TOLERANCE).sum()), int((down > LINE_TOLERANCE).sum())) + 1


def exposure_failure(measures: dict[str, float]) -> str | None:
    """The reason code for a film that is mostly blank, clipped, flat or blurred, else None."""
    if measures["clipped"] > MAX_CLIPPED:
        return "clipped"
    if measures["contrast"] < MIN_CONTRAST:
        return "low_contrast"
    if measures["blank"] > MAX_BLANK:
        return "mostly_blank"
    if measures.get("fine_detail", MIN_DETAIL) < MIN_DETAIL:
        return "film_blurred"
    if measures.get("distinct_lines", MIN_LINES) < MIN_LINES:
        return "film_blurred"
    return None


def content_failures(verdict: ChestVerdict) -> list[str]:
    """Reason codes for a picture that is not a chest film, or an inverted or turned one."""
    if verdict.chest < MIN_CHEST:
        return ["not_a_chest"]
    codes = ["inverted"] if verdict.inverted > MIN_INVERTED else []
    head_at = max(verdict.head_at, key=lambda side: verdict.head_at[side])
    if head_at == "bottom":
        codes.append("upside_down")
    elif head_at != "top":
        codes.append("rotated")
    return codes


def content_failure(verdict: ChestVerdict) -> str | None:
    """The first reason code of ``content_failures``, or None for an upright chest film."""
    codes = content_failures(verdict)
    return codes[0] if codes else None


def judge_film(grey: np.ndarray) -> ChestVerdict:
    """The learned check's verdict on a grey (H, W) uint8 film in MONOCHROME2 sense."""
    return shipped_check().judge(film_thumbnail(grey))


def _reason(code: str, verdict: ChestVerdict) -> QualityReason:
    """The nurse's message for a reason code (a turned film says which side the head is)."""
    side = "left" if verdict.head_at["left"] > verdict.head_at["right"] else "right"
    return QualityReason(code, REASONS[code].format(side=side))


def assess_chest(grey: np.ndarray) -> QualityReport:
    """Exposure, content, orientation and polarity of a chest film, with reasons a nurse can act on.

    A mostly blank film says only that (nothing on it to judge); a picture that is not a chest
    film says so first ("check the right image was chosen" before "retake"); orientation and
    polarity are judged only on a well-exposed film.
    """
    exposed = _exposed(grey)
    measures = exposure_measures(grey) | {"fine_detail": _fine_detail(exposed),
                                          "distinct_lines": float(_distinct_lines(exposed))}
    verdict = shipped_check().judge(exposed_thumbnail(exposed))  # judge_film, on the same crop
    measures.update(verdict.measures())
    exposure = exposure_failure(measures)
    content = [] if exposure == "mostly_blank" else content_failures(verdict)
    if content != ["not_a_chest"] and exposure is not None:
        content = []
    codes = [code for code in (*content, exposure) if code]
    reasons = tuple(_reason(code, verdict) for code in codes)
    return QualityReport(gradable=not reasons, reasons=reasons, measures=measures)


__all__ = ["REASONS", "STRONG", "ChestLayout", "assess_chest", "chest_layouts", "content_failure",
           "content_failures", "distinct_lines", "exposed_area", "exposure_measures", "fine_detail",
           "is_inverted", "judge_film", "looks_like_chest", "plausible_shape"]
