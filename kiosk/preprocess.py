"""Preprocessing: an image's pixels to the tensor a model bundle asks for (numpy/OpenCV only).

The steps are those of ``docs/bundle.md`` (``input.steps`` of a manifest), applied in order.
The same code renders the training images in ``export/``, so training and the kiosk cannot
disagree. Every step but the final ``scale`` works on uint8 pixels; ``render`` stops there
(training caches its output), ``prepare`` also scales to float32 [C, H, W].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from kiosk.domain import Image
from kiosk.errors import BundleError
from kiosk.pixels import as_grey, as_rgb
from kiosk.pixels.fov import FieldOfView, find_field_of_view


@dataclass(frozen=True)
class Canvas:
    """Pixels being prepared, with the field-of-view circle in their coordinates (if known)."""

    pixels: np.ndarray
    fov: FieldOfView | None = None


def _fundus_crop(canvas: Canvas, step: dict[str, Any]) -> Canvas:
    """Crop a square around the field-of-view disc (black where it leaves the frame)."""
    rgb = as_rgb(canvas.pixels)
    fov = canvas.fov or find_field_of_view(rgb)
    if fov is None:
        # No disc found (quality will usually have refused it): use the centred square.
        h, w = rgb.shape[:2]
        fov = FieldOfView(w / 2.0, h / 2.0, min(h, w) / 2.0)
    half = fov.radius * (1.0 + float(step.get("margin", 0.0)))
    side = max(2, round(2 * half))
    x0, y0 = round(fov.cx - half), round(fov.cy - half)
    out = np.zeros((side, side, 3), dtype=np.uint8)
    h, w = rgb.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return Canvas(out, FieldOfView(fov.cx - x0, fov.cy - y0, fov.radius))


def _like_eyepacs_256(canvas: Canvas, step: dict[str, Any]) -> Canvas:
    """Put a camera photograph through the training set's own chain before the other steps.

    The EyePACS 256 px copies the fundus model learned from are not plain downscales: compared
    pixel by pixel with the 8 full-size photographs they come from, they are the field-of-view
    disc cropped square, each colour channel histogram-equalised, squashed to ``size`` x ``size``
    and re-encoded as JPEG at ``quality`` (mean |difference| 8.5 of 255, against 46 for a crop and
    resize alone). A camera photograph without that chain is, to the model, another world. An
    image no larger than ``size`` x ``max_ratio`` on its long side (a copy) is left alone.
    """
    size = int(step.get("size", 256))
    h, w = canvas.pixels.shape[:2]
    if max(h, w) <= size * float(step.get("max_ratio", 1.25)):
        return canvas
    rgb = _fundus_crop(Canvas(as_rgb(canvas.pixels), canvas.fov), {"margin": 0.0}).pixels
    if step.get("equalise", True):
        channels = [cv2.equalizeHist(np.ascontiguousarray(rgb[:, :, c])) for c in range(3)]
        rgb = np.stack(channels, axis=-1)
    small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    quality = [cv2.IMWRITE_JPEG_QUALITY, int(step.get("quality", 90))]
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), quality)
    reread = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
    if reread is None:
        raise BundleError("JPEG re-encoding failed in like_eyepacs_256")
    return Canvas(cv2.cvtColor(reread, cv2.COLOR_BGR2RGB))


def _resize(canvas: Canvas, step: dict[str, Any]) -> Canvas:
    """Resize to a square of ``size`` pixels (the aspect ratio is not kept)."""
    size = int(step["size"])
    h, w = canvas.pixels.shape[:2]
    shrinking = size < min(h, w)
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    pixels = cv2.resize(canvas.pixels, (size, size), interpolation=interpolation)
    fov = canvas.fov
    if fov is not None:
        fov = FieldOfView(fov.cx * size / w, fov.cy * size / h, fov.radius * size / max(h, w))
    return Canvas(pixels, fov)


def _ben_graham(canvas: Canvas, step: dict[str, Any]) -> Canvas:
    """Subtract the local average colour (Graham 2015): 4 x (image - blurred) + 128."""
    side = max(canvas.pixels.shape[:2])
    sigma = max(float(step.get("sigma_fraction", 0.033)) * side, 0.5)
    blurred = cv2.GaussianBlur(canvas.pixels, (0, 0), sigma)
    pixels = cv2.addWeighted(canvas.pixels, 4.0, blurred, -4.0, 128.0)
    return replace(canvas, pixels=pixels)


def _fov_mask(canvas: Canvas, step: dict[str, Any]) -> Canvas:
    """Set everything outside a shrunken field-of-view circle to ``fill`` (default mid-grey)."""
    h, w = canvas.pixels.shape[:2]
    fov = canvas.fov or FieldOfView(w / 2.0, h / 2.0, min(h, w) / 2.0)
    shrunk = FieldOfView(fov.cx, fov.cy, fov.radius * float(step.get("shrink", 1.0)))
    pixels = canvas.pixels.copy()
    pixels[~shrunk.mask((h, w))] = int(step.get("fill", 128))
    return replace(canvas, pixels=pixels)


def _grey(canvas: Canvas, step: dict[str, Any]) -> Canvas:
    """Convert RGB to one grey channel (grey input passes unchanged)."""
    return replace(canvas, pixels=as_grey(canvas.pixels))


def _clahe(canvas: Canvas, step: dict[str, Any]) -> Canvas:
    """Contrast-limited adaptive histogram equalisation of a grey image."""
    tiles = int(step.get("tiles", 8))
    clahe = cv2.createCLAHE(clipLimit=float(step.get("clip", 2.0)), tileGridSize=(tiles, tiles))
    grey = _grey(canvas, {}).pixels
    return replace(canvas, pixels=clahe.apply(np.ascontiguousarray(grey)))


#: The uint8 steps, by the ``op`` name a manifest uses. ``scale`` (to float) is handled apart.
STEPS: dict[str, Callable[[Canvas, dict[str, Any]], Canvas]] = {
    "like_eyepacs_256": _like_eyepacs_256,
    "fundus_crop": _fundus_crop,
    "resize": _resize,
    "ben_graham": _ben_graham,
    "fov_mask": _fov_mask,
    "grey": _grey,
    "clahe": _clahe,
}

#: Parameters each step requires (others are optional with the defaults above).
REQUIRED: dict[str, tuple[str, ...]] = {"resize": ("size",), "scale": ("mean", "std")}


def _as_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, C) pixels with exactly ``channels`` channels (grey <-> RGB as needed)."""
    return as_grey(pixels)[:, :, None] if channels == 1 else as_rgb(pixels)


def check_spec(spec: dict[str, Any]) -> None:
    """Raise BundleError unless ``spec`` (a manifest's ``input``) is one this code can apply."""
    if spec.get("layout", "NCHW") != "NCHW" or spec.get("dtype", "float32") != "float32":
        raise BundleError("input must be NCHW float32")
    if int(spec.get("channels", 0)) not in (1, 3) or int(spec.get("size", 0)) <= 0:
        raise BundleError("input needs channels 1 or 3 and a positive size")
    steps = spec.get("steps")
    if not isinstance(steps, list) or not steps or steps[-1].get("op") != "scale":
        raise BundleError("input.steps must be a list ending with a 'scale' step")
    for index, step in enumerate(steps):
        op = step.get("op") if isinstance(step, dict) else None
        if op not in STEPS and not (op == "scale" and index == len(steps) - 1):
            known = ", ".join([*STEPS, "scale"])
            raise BundleError(f"unknown preprocessing step {op!r} (known: {known})")
        missing = [key for key in REQUIRED.get(str(op), ()) if key not in step]
        if missing:
            raise BundleError(f"preprocessing step {op!r} lacks {', '.join(missing)}")
    scale = steps[-1]
    for key in ("mean", "std"):
        if len(scale[key]) != int(spec["channels"]):
            raise BundleError(f"scale.{key} needs one value per channel")
    if min(float(s) for s in scale["std"]) <= 0:
        raise BundleError("scale.std must be positive")


def render(pixels: np.ndarray, spec: dict[str, Any], fov: FieldOfView | None = None) -> np.ndarray:
    """Apply every step but the final ``scale``: uint8 (size, size, channels) pixels.

    ``fov``, when the caller already found the field of view in ``pixels``, saves finding it again.
    """
    canvas = Canvas(np.ascontiguousarray(pixels), fov)
    for step in spec["steps"][:-1]:
        canvas = STEPS[step["op"]](canvas, step)
    size = int(spec["size"])
    out = canvas.pixels
    if out.shape[:2] != (size, size):
        out = _resize(canvas, {"size": size}).pixels
    return _as_channels(out, int(spec["channels"]))


def scale(rendered: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """The final ``scale`` step on (..., H, W, C) uint8: x/255, (x - mean)/std, channels first."""
    step = spec["steps"][-1]
    mean = np.asarray(step["mean"], dtype=np.float32)
    std = np.asarray(step["std"], dtype=np.float32)
    values = (rendered.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(np.moveaxis(values, -1, -3))


def prepare(image: Image, spec: dict[str, Any]) -> np.ndarray:
    """[C, H, W] float32 for one image, as the manifest's ``input`` describes."""
    first = spec["steps"][0].get("op")
    fov = image.field_of_view() if first in ("like_eyepacs_256", "fundus_crop") else None
    return scale(render(image.pixels, spec, fov), spec)


def prepare_batch(images: Sequence[Image], spec: dict[str, Any]) -> np.ndarray:
    """[N, C, H, W] float32 for several images."""
    if not images:
        size, channels = int(spec["size"]), int(spec["channels"])
        return np.zeros((0, channels, size, size), dtype=np.float32)
    return np.stack([prepare(image, spec) for image in images])
