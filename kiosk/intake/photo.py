"""Photographs and exported films: PNG and JPEG, 8/16-bit, grey/colour/palette/alpha, EXIF-rotated."""

from __future__ import annotations

import warnings
from io import BytesIO

import cv2
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
                if fmt == "png":
                    check_expansion(len(data), opened)
                pixels, bits, original, warning = _decode(opened, fmt, target_size, limits)
                camera = _camera(opened)
        except (PILImage.DecompressionBombWarning, PILImage.DecompressionBombError) as exc:
            raise IntakeError(
                "The image declares far more pixels than any camera delivers: refused as a "
                "possible decompression bomb.", code="decompression_bomb") from exc
    kind = kind_hint or detect_kind(pixels)
    notes = [warning] if warning else []
    notes += sorted({f"{fmt.upper()}: {w.message}" for w in caught})[:5]
    return Image(pixels=as_kind(pixels, kind), source=source, kind=kind, original_size=original,
                 meta={"format": fmt, "bits": str(bits), **camera}, warnings=notes)


#: EXIF tags naming the camera: Make and Model.
EXIF_CAMERA = {"manufacturer": 0x010F, "device_model": 0x0110}


def _camera(opened: PILImage.Image) -> dict[str, str]:
    """The camera's maker and model from EXIF, when the file names them (drift alarms compare
    the source device)."""
    try:
        exif = opened.getexif()
        found = {key: str(exif.get(tag, "")).strip("\x00 ") for key, tag in EXIF_CAMERA.items()}
    except Exception:  # a damaged EXIF block must not refuse a good picture
        return {}
    return {key: value[:64] for key, value in found.items() if value}


#: Bytes per pixel of Pillow's modes once decoded (what a PNG expands to).
MODE_BYTES = {"1": 0.125, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "I;16B": 2, "RGB": 3}
#: A PNG larger than this (pixels) may not expand more than MAX_EXPANSION times its file size.
#: Real photographs and films compress 2-20 times; a few kilobytes that decode to tens of
#: megapixels are a decompression bomb.
BOMB_MIN_PIXELS = 4_000_000
MAX_EXPANSION = 1000


def check_expansion(file_bytes: int, opened: PILImage.Image) -> None:
    """Refuse a PNG whose header promises far more pixels than its size can honestly hold."""
    columns, rows = opened.size
    decoded = rows * columns * MODE_BYTES.get(opened.mode, 4)
    if rows * columns >= BOMB_MIN_PIXELS and decoded > MAX_EXPANSION * file_bytes:
        raise IntakeError(
            f"This {file_bytes / 1024:.0f} kB PNG would expand to {decoded / 2**20:.0f} MB of "
            f"pixels ({columns}x{rows}): refused as a possible decompression bomb.",
            code="decompression_bomb")


def _decode(opened: PILImage.Image, fmt: str, target_size: int | None,
            limits: IntakeLimits) -> tuple[np.ndarray, int, tuple[int, int], str]:
    """Pixels (reduced towards ``target_size``), bit depth, upright full size, a warning."""
    columns, rows = opened.size
    check_dimensions(rows, columns, limits)
    factor = max(1, min(rows, columns) // target_size) if target_size else 1
    if fmt == "jpeg" and target_size:
        opened.draft(opened.mode, (target_size, target_size))  # decodes at 1/2, 1/4 or 1/8
    opened.load()
    image, factor = _reduce(opened, factor) if fmt == "png" else (opened, 1)
    image, turned, warning = _orient(image)
    pixels, bits = to_array(image)
    if factor > 1:  # a mode Pillow cannot reduce: shrink the array instead
        size = (max(1, pixels.shape[1] // factor), max(1, pixels.shape[0] // factor))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return pixels, bits, (columns, rows) if turned else (rows, columns), warning


def _reduce(image: PILImage.Image, factor: int) -> tuple[PILImage.Image, int]:
    """The image shrunk by ``factor`` where Pillow can, and the factor still to apply."""
    if factor < 2:
        return image, 1
    if image.mode in ("P", "1"):  # palette indices cannot be averaged: take every n-th pixel
        width, height = image.size
        return image.resize((width // factor, height // factor), PILImage.Resampling.NEAREST), 1
    if image.mode.startswith("I;16"):
        return image, factor
    return image.reduce(factor), 1


def _orient(image: PILImage.Image) -> tuple[PILImage.Image, bool, str]:
    """The image turned upright by its EXIF orientation tag, whether that swapped its sides,
    and a warning for a broken tag (which does not refuse a good picture)."""
    try:
        orientation = int(image.getexif().get(0x0112, 1))
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            image = ImageOps.exif_transpose(image)
        return image, orientation in (5, 6, 7, 8), ""
    except Exception:  # a damaged EXIF block must not refuse a good picture
        return image, False, "The orientation tag could not be read; the image is shown as stored."


def to_array(image: PILImage.Image) -> tuple[np.ndarray, int]:
    """uint8 grey (H, W) or RGB (H, W, 3) pixels, and the bit depth they came from."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return stretch_to_uint8(np.asarray(image)), 16
    if mode == "1":
        return np.asarray(image.convert("L")), 1
    if mode == "P":
        return _palette_to_rgb(image), 8
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _on_black(image), 8
    if mode in ("L", "RGB"):
        return np.asarray(image), 8
    return np.asarray(image.convert("RGB")), 8


def _palette_to_rgb(image: PILImage.Image) -> np.ndarray:
    """RGB pixels of a palette image, transparent entries on black (mixed in the palette,
    so a large image costs its index plane and its RGB output only)."""
    palette = np.zeros((256, 3), dtype=np.float32)
    entries = np.asarray(image.getpalette("RGB") or [], dtype=np.float32).reshape(-1, 3)[:256]
    palette[: len(entries)] = entries
    alpha = np.full(256, 255.0, dtype=np.float32)
    transparency = image.info.get("transparency")
    if isinstance(transparency, int) and 0 <= transparency < 256:
        alpha[transparency] = 0.0
    elif isinstance(transparency, bytes):
        given = np.frombuffer(transparency, dtype=np.uint8)[:256]
        alpha[: len(given)] = given
    table = np.clip(palette * (alpha[:, None] / 255.0) + 0.5, 0, 255).astype(np.uint8)
    return table[np.asarray(image)]


def _on_black(image: PILImage.Image, rows_at_a_time: int = 256) -> np.ndarray:
    """RGB pixels of an image with alpha, composited on black a band of rows at a time."""
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    width, height = rgba.size
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, rows_at_a_time):
        band = np.asarray(rgba.crop((0, top, width, min(height, top + rows_at_a_time))))
        alpha = band[:, :, 3:4].astype(np.uint16)
        out[top : top + band.shape[0]] = ((band[:, :, :3] * alpha + 127) // 255).astype(np.uint8)
    return out


def stretch_to_uint8(values: np.ndarray, sample: np.ndarray | None = None) -> np.ndarray:
    """More-than-8-bit grey values mapped to 0..255 over their robust range (0.1-99.9 %).

    The range comes from ``sample`` (default: a subsample of ``values``). Large 8/16-bit
    images go through a table per possible value, so no float copy of the image is made.
    """
    if sample is None:
        step = max(1, max(values.shape) // 256)
        sample = values[::step, ::step] if values.ndim == 2 else values
    low, high = (float(v) for v in np.percentile(sample, [0.1, 99.9]))
    if high - low < 1e-6:
        return np.zeros(values.shape, dtype=np.uint8)
    if values.dtype in (np.uint8, np.uint16) and values.size > 2**16:
        table = _linear(np.arange(int(values.max()) + 1, dtype=np.float32), low, high)
        return table[values]
    return _linear(values.astype(np.float32), low, high)


def _linear(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``low``..``high`` mapped linearly onto 0..255, clipped, as uint8."""
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
