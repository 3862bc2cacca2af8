"""Image quality (gradability): pure functions from pixels to a QualityReport.

``assess`` dispatches on the image's kind; the checks themselves live in ``fundus`` and
``chest`` and see only numpy arrays, so the same code judges a camera frame, an upload and a
film received over DICOM.
"""

from __future__ import annotations

import numpy as np

from kiosk.domain import Image, QualityReason, QualityReport
from kiosk.errors import QualityError
from kiosk.pixels import MIN_SATURATION, as_grey, as_rgb, saturation
from kiosk.quality.chest import assess_chest
from kiosk.quality.fundus import assess_fundus


def assess(image: Image) -> QualityReport:
    """Whether the image is gradable, with reasons a nurse can act on and the measures behind."""
    pixels = image.pixels
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or min(pixels.shape[:2]) < 8:
        raise QualityError(f"Cannot assess pixels of shape {pixels.shape} and type {pixels.dtype}.")
    if image.kind == "fundus":
        rgb = as_rgb(pixels)
        if saturation(rgb) < MIN_SATURATION and int(pixels.max()) > 30:
            return QualityReport(False, (QualityReason(
                "not_a_fundus_photo", "This is a grey picture, not a colour fundus photograph: "
                "check the right image was chosen."),), {})
        return assess_fundus(rgb, image.field_of_view())
    if image.kind == "cxr":
        return assess_chest(as_grey(pixels))
    raise QualityError("The kind of image (fundus or chest) is not known, so its quality cannot "
                       "be judged.", code="unknown_task")


__all__ = ["assess"]
