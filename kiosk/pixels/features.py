"""What an image looks like as an input, in a few numbers: the features drift alarms compare.

The pipeline puts them on every result (``result["inputs"]``) and ``python -m export`` computes
them over a bundle's calibration split for the reference it stores in the manifest: both call
:func:`features_of` on the decoded working copy, so the kiosk and the reference can never
measure differently. Numpy and OpenCV only; every measure but the size is taken on one small
copy (longest side ``SIDE``), so it costs about a millisecond and does not depend much on the
resolution the image was decoded at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import cv2
import numpy as np

from kiosk.pixels import as_grey
from kiosk.pixels.fov import FieldOfView

#: Measure on a copy this many pixels along its longest side.
SIDE = 256
#: A pixel this dark is outside the picture (the fundus camera's black frame, air beside a body).
DARK = 12
#: Names of the numeric features, in the order plots and reports show them.
NUMERIC = ("brightness", "contrast", "sharpness", "fov", "width", "height")
#: Bumped whenever a measure changes: a reference of another version is not compared.
VERSION = 1


class Measurable(Protocol):
    """What the features need of a decoded image (``kiosk.domain.Image`` has it)."""

    @property
    def pixels(self) -> np.ndarray:
        """uint8 grey or RGB pixels."""

    @property
    def kind(self) -> str | None:
        """"fundus" or "cxr"."""

    @property
    def original_size(self) -> tuple[int, int]:
        """(rows, columns) as stored, (0, 0) when unknown."""

    @property
    def meta(self) -> dict[str, str]:
        """What the file's header says."""

    def field_of_view(self) -> FieldOfView | None:
        """The fundus disc, when one is found."""


def features_of(image: Measurable) -> dict[str, float | str]:
    """Brightness, contrast, sharpness, field of view, size and source device of one image.

    ``fov`` is the share of the frame inside the fundus disc for a photograph (0 when no disc is
    found) and the share of lit pixels for a film; ``width``/``height`` are the stored image's,
    before any reduced-resolution decode; ``device`` is the maker and model the file names.
    """
    rows, columns = image.original_size if image.original_size[0] else image.pixels.shape[:2]
    grey = _small(as_grey(image.pixels))
    measures: dict[str, float | str] = {
        "brightness": round(float(grey.mean()), 3),
        "contrast": round(float(grey.std()), 3),
        "sharpness": round(float(np.log10(1.0 + cv2.Laplacian(grey, cv2.CV_32F).var())), 4),
        "fov": round(_fov_share(image, grey), 4),
        "width": float(columns),
        "height": float(rows),
        "device": device_of(image.meta),
    }
    return measures


def device_of(meta: Mapping[str, str]) -> str:
    """The source device as the file names it (DICOM Manufacturer and model, EXIF Make and
    Model), or "unknown"."""
    words = " ".join(meta.get(key, "").strip() for key in ("manufacturer", "device_model"))
    return " ".join(words.split()) or "unknown"


def _small(grey: np.ndarray) -> np.ndarray:
    """The grey pixels area-averaged to ``SIDE`` on the longest side (never enlarged)."""
    rows, columns = grey.shape
    scale = min(1.0, SIDE / max(rows, columns))
    if scale == 1.0:
        return grey
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _fov_share(image: Measurable, grey: np.ndarray) -> float:
    """The share of the frame that holds the picture (see ``features_of``)."""
    if image.kind != "fundus":
        return float((grey > DARK).mean())
    disc = image.field_of_view()
    if disc is None:
        return 0.0
    return float(disc.mask(image.pixels.shape[:2]).mean())
