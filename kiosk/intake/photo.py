"""Photographs and exported films: PNG and JPEG, 8/16-bit, grey/colour/palette/alpha, EXIF-rotated."""

from __future__ import annotations

import warnings
from io import BytesIO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from kiosk.domain import Image, ImageKind
from kiosk.errors import IntakeError
from kiosk.intake import DEFAULT_LIMITS, IntakeLimits, check_dimensions
from kiosk.intake.detect import as_kind, detect_kind

#: Pillow formats accepted for each sniffed format (MPO is a camera's multi-picture JPEG).
PIL_FORMATS = {"png": ["PNG"], "jpeg": ["JPEG", "MPO"]}


def read_photo(data: bytes, fmt: str, *, source: str = "", kind_hint: ImageKind | None = None,
               target_size: int | None = None,
               limits: IntakeLimits = DEFAULT_LIMITS) -> Image:
    """Decode a PNG or JPEG, at reduced resolution when ``target_size`` allows it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # Pillow's other warnings become notes on the image
        # A declared size past Pillow's own bomb limit must stop here, not only warn.
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            with PILImage.open(BytesIO(data), formats=PIL_FORMATS[fmt]) as opened:
                columns, rows = opened.size
                check_dimensions(rows, columns, limits)
                if fmt == "jpeg" and target_size:
                    opened.draft(opened.mode, (target_size, target_size))
                opened.load()
                oriented, warning = _orient(opened)
                pixels, bits = to_array(oriented)
        except (PILImage.DecompressionBombWarning, PILImage.DecompressionBombError) as exc:
            raise IntakeError(
                "The image declares far more pixels than any camera delivers: refused as a "
                "possible decompression bomb.", code="decompression_bomb") from exc
    original = (columns, rows) if oriented.size != opened.size else (rows, columns)
    kind = kind_hint or detect_kind(pixels)
    meta = {"format": fmt, "bits": str(bits)}
    notes = [warning] if warning else []
    notes += sorted({f"{fmt.upper()}: {w.message}" for w in caught})[:5]
    return Image(pixels=as_kind(pixels, kind), source=source, kind=kind, original_size=original,
                 meta=meta, warnings=notes)


def _orient(opened: PILImage.Image) -> tuple[PILImage.Image, str]:
    """The image turned upright by its EXIF orientation tag (a broken tag is only a warning)."""
    try:
        return ImageOps.exif_transpose(opened), ""
    except Exception:  # a damaged EXIF block must not refuse a good picture
        return opened, "The orientation tag could not be read; the image is shown as stored."


def to_array(image: PILImage.Image) -> tuple[np.ndarray, int]:
    """uint8 grey (H, W) or RGB (H, W, 3) pixels, and the bit depth they came from."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return stretch_to_uint8(np.asarray(image)), 16
    if mode == "1":
        return np.asarray(image.convert("L")), 1
    if "A" in mode or mode in ("P", "PA") or "transparency" in image.info:
        # Transparent parts become black: the frame around a fundus disc is black too.
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = PILImage.alpha_composite(background, rgba).convert("RGB")
    elif mode == "L":
        return np.asarray(image), 8
    elif mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image), 8


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """More-than-8-bit grey values mapped to 0..255 over their robust range (0.1-99.9 %)."""
    values = values.astype(np.float32)
    sample = values[:: max(1, values.shape[0] // 256), :: max(1, values.shape[1] // 256)]
    low, high = np.percentile(sample, [0.1, 99.9])
    if high - low < 1e-6:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
