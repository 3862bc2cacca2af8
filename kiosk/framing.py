"""How an image is framed for screening: its working size, the part the network saw, its eye.

Pure geometry on decoded pixels (numpy + OpenCV), shared by the pipeline and the heat-map.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import cv2

from kiosk.domain import Image

#: Words in a file name that say which eye a photograph shows.
LATERALITY_WORDS = {"left": "L", "os": "L", "right": "R", "od": "R"}


def laterality_from_name(source: str) -> str | None:
    """'L' or 'R' when a file name says left/right (or OS/OD) as a separate word."""
    stem = re.split(r"[\\/]", source)[-1].rsplit(".", 1)[0].lower()
    found = {LATERALITY_WORDS[w] for w in re.split(r"[^a-z]+", stem) if w in LATERALITY_WORDS}
    return found.pop() if len(found) == 1 else None


def working_copy(image: Image, target: int) -> Image:
    """The image shrunk (area-averaged) to twice ``target`` on its shorter side when far larger.

    A JPEG or JPEG 2000 is already decoded near that size; an uncompressed film or PNG arrives
    at full size. Shrinking it here makes quality, preprocessing and the heat-map cost the same
    whatever the encoding, and judges the same film alike however it was sent.
    """
    shorter = min(image.size)
    if shorter <= 2 * target:
        return image
    factor = 2 * target / shorter
    rows, columns = image.size
    size = (max(1, round(columns * factor)), max(1, round(rows * factor)))
    pixels = cv2.resize(image.pixels, size, interpolation=cv2.INTER_AREA)
    return replace(image, pixels=pixels)


def network_box(image: Image, spec: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """The part of the image the network saw: the fundus crop square, else the whole image."""
    steps = [s for s in spec.get("steps", []) if s.get("op") == "fundus_crop"]
    if not steps:
        return None
    fov = image.field_of_view()
    if fov is None:
        return None
    half = fov.radius * (1.0 + float(steps[0].get("margin", 0.0)))
    x0, y0 = round(fov.cx - half), round(fov.cy - half)
    side = max(2, round(2 * half))
    return x0, y0, x0 + side, y0 + side
