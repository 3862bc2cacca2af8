"""The exposed area of a film, and the small thumbnail the learned chest check reads.

The same function makes the thumbnails the check was trained on (``export/chest_check.py``) and
the ones the kiosk judges, so training and use cannot drift apart.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Side of the square thumbnail the learned check reads.
SIDE = 64


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


def film_thumbnail(grey: np.ndarray) -> np.ndarray:
    """(2, SIDE, SIDE) float32: the exposed area stretched to 0-1, and where the film lies.

    The exposed area keeps its shape (letterboxed, not squashed), so a tall limb film or a wide
    dental panoramic looks like one; the second plane is 1 on the film and 0 on the padding.
    """
    rows, cols = exposed_area(grey)
    return exposed_thumbnail(grey[rows, cols])


def exposed_thumbnail(area: np.ndarray) -> np.ndarray:
    """:func:`film_thumbnail` of a film's exposed area already cropped (the quality gate crops
    it once for all its measures)."""
    height, width = area.shape
    scale = SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # (w, h) for OpenCV
    small = cv2.resize(area, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    low, high = np.percentile(small, [1, 99])
    small = np.clip((small - low) / max(float(high - low), 1.0), 0.0, 1.0)
    top, left = (SIDE - size[1]) // 2, (SIDE - size[0]) // 2
    thumb = np.zeros((2, SIDE, SIDE), np.float32)
    thumb[0, top:top + size[1], left:left + size[0]] = small
    thumb[1, top:top + size[1], left:left + size[0]] = 1.0
    return thumb
