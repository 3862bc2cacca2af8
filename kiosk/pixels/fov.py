"""The field of view of a fundus photograph: the bright disc of retina inside the black frame."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.pixels import brightest

#: Work at about this many pixels across: the circle fit needs no more, and it keeps this fast.
WORK_SIZE = 256


@dataclass(frozen=True)
class FieldOfView:
    """A circle in pixel coordinates of the image it was found in."""

    cx: float
    cy: float
    radius: float

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """A boolean (H, W) mask of the circle clipped to an image of ``shape``."""
        rows, cols = np.ogrid[: shape[0], : shape[1]]
        return (cols + 0.5 - self.cx) ** 2 + (rows + 0.5 - self.cy) ** 2 <= self.radius**2

    def scaled(self, factor: float) -> FieldOfView:
        """The same circle in an image resized by ``factor``."""
        return FieldOfView(self.cx * factor, self.cy * factor, self.radius * factor)


def retina_mask(rgb: np.ndarray, threshold: int | None = None) -> np.ndarray:
    """Pixels brighter than the black frame, with holes filled and specks removed."""
    grey = brightest(rgb) if rgb.ndim == 3 else rgb
    grey = cv2.GaussianBlur(grey, (5, 5), 0)
    if threshold is None:
        # The frame is near-black but JPEG noise lifts it; the retina's red channel is far above.
        threshold = max(12, int(np.percentile(grey, 2)) + 10)
    mask: np.ndarray = (grey > threshold).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros(grey.shape, dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    filled = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def _fit_circle(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (Kasa) circle through boundary points."""
    a = np.column_stack([xs, ys, np.ones_like(xs)])
    b = xs**2 + ys**2
    (c0, c1, c2), *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = c0 / 2.0, c1 / 2.0
    return float(cx), float(cy), float(np.sqrt(max(c2 + cx**2 + cy**2, 0.0)))


def find_field_of_view(rgb: np.ndarray) -> FieldOfView | None:
    """The field-of-view circle, fitted to the retina's edge away from the image border.

    Fundus cameras often clip the disc at the top and bottom of the frame, so only edge points
    that do not lie on the image border take part in the fit. Returns None when no plausible
    disc is found (a black frame, or not a fundus photograph).
    """
    height, width = rgb.shape[:2]
    scale = min(1.0, WORK_SIZE / max(height, width))
    small = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    mask = retina_mask(small)
    if mask.sum() < 0.05 * mask.size:
        return None
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = max(contours, key=len).reshape(-1, 2).astype(np.float64)
    h, w = mask.shape
    inside = (points[:, 0] > 1) & (points[:, 0] < w - 2) & (points[:, 1] > 1) & (points[:, 1] < h - 2)
    if inside.sum() < 20:
        # The disc fills the frame: fall back to the inscribed circle of the mask's extent.
        ys, xs = np.nonzero(mask)
        cx, cy = (xs.min() + xs.max() + 1) / 2.0, (ys.min() + ys.max() + 1) / 2.0
        radius = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / 2.0
    else:
        cx, cy, radius = _fit_circle(points[inside, 0] + 0.5, points[inside, 1] + 0.5)
    if not (0 < radius < 2 * max(h, w)):
        return None
    return FieldOfView(cx, cy, radius).scaled(1.0 / scale)
