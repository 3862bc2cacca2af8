"""The capture page's words around a visit: which image to retake and why, and camera frames.

The steps themselves (gate, screen, record) are :mod:`kiosk.visit`'s; nothing is screened
until every offered image passes the gate, and the nurse is told which image to retake and why.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from kiosk.pipeline import Pipeline
from kiosk.result import Result
from kiosk.visit import Offered, Screened, check, gradable
from web import words


@dataclass(frozen=True)
class Retake:
    """An image that must be taken again, and why."""

    name: str
    title: str
    line: str
    reasons: list[str]
    index: int = 0  # which offered image


def gate(pipeline: Pipeline, offered: list[Offered]) -> list[Retake]:
    """The instant gate (intake and quality, no inference): the retakes needed, if any."""
    return retakes_of(offered, check(pipeline, offered))


def retakes(screened: Screened) -> list[Retake]:
    """The retakes a screened visit needs (its first result per image says)."""
    return retakes_of(screened.offered, [per_image[0].result for per_image in screened.outcomes])


def retakes_of(offered: list[Offered], results: list[Result]) -> list[Retake]:
    """The images refused by intake or judged ungradable, with the nurse's retake line."""
    found = []
    for index, (item, result) in enumerate(zip(offered, results, strict=True)):
        if not gradable(result):
            reasons = words.quality_reasons(result)
            shown: Any = {**result, "laterality": result.get("laterality") or item.laterality}
            line = (words.image_line(shown) if result.get("error")
                    else words.retake_line(reasons, result.get("task") or item.task))
            found.append(Retake(item.name, words.image_title(shown), line, reasons, index))
    return found


def camera_frame(camera: Any) -> bytes:
    """One frame from the camera as JPEG bytes (what a fundus camera would upload)."""
    from PIL import Image as PILImage

    frame = camera.read()
    buffer = io.BytesIO()
    PILImage.fromarray(frame).convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
