"""From offered images to a recorded screening: the instant quality gate, then screening.

Nothing is screened until every offered image passes the gate; the nurse is told which image
to retake and why.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from kiosk.errors import IntakeError, KioskError
from web import words
from web.services import Services


@dataclass(frozen=True)
class Offered:
    """One image the nurse offered: its bytes, file name, eye and task (when known)."""

    data: bytes
    name: str
    laterality: str | None = None
    task: str | None = None


@dataclass(frozen=True)
class Retake:
    """An image that must be taken again, and why."""

    name: str
    title: str
    line: str
    reasons: list[str]
    index: int = 0  # which offered image


class NothingOffered(KioskError):
    """The capture form was sent without any image."""

    code = "no_image"
    http_status = 400


def gate(pipeline: Any, offered: list[Offered]) -> list[Retake]:
    """Run the quality gate on every image; the retakes needed (empty when all pass)."""
    if not offered:
        raise NothingOffered("Choose a photograph or an X-ray first.")
    retakes = []
    for index, item in enumerate(offered):
        try:
            outcome = pipeline.check(item.data, source=item.name, task=item.task)
            result = dict(outcome.result)
        except IntakeError as exc:
            result = {"error": exc.to_dict(), "task": item.task}
        reasons = words.quality_reasons(result)
        gradable = (result.get("quality") or {}).get("gradable", False)
        if result.get("error") or not gradable:
            result.setdefault("laterality", item.laterality)
            task = result.get("task") or item.task
            line = words.retake_line(reasons, task)
            retakes.append(Retake(item.name, words.image_title(result), line, reasons, index))
    return retakes


def screen_and_record(
    services: Services, patient_id: int, offered: list[Offered], *, actor: str
) -> Any:
    """Screen every image, keep the images and heat-maps, and record one screening."""
    store, pipeline = services.store, services.pipeline
    results, image_shas, heatmap_shas = [], [], []
    for item in offered:
        outcome = pipeline.screen(
            item.data, source=item.name, task=item.task, laterality=item.laterality
        )
        image_shas.append(store.save_image(item.data, suffix_of(item)))
        heatmap = outcome.heatmap_png
        heatmap_shas.append(store.save_image(heatmap, ".png") if heatmap else None)
        results.append(outcome.result)
    return store.record_screening(
        patient_id, results, actor=actor, image_shas=image_shas, heatmap_shas=heatmap_shas
    )


def suffix_of(item: Offered) -> str:
    """The file suffix to keep an image under, from its name or its first bytes."""
    head = item.data[:132]
    if head[128:132] == b"DICM":
        return ".dcm"
    if head.startswith(b"\x89PNG"):
        return ".png"
    if head.startswith(b"\xff\xd8"):
        return ".jpg"
    name = item.name.lower()
    for suffix in (".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if name.endswith(suffix):
            return suffix
    return ".bin"


def camera_frame(camera: Any) -> bytes:
    """One frame from the camera as JPEG bytes (what a fundus camera would upload)."""
    from PIL import Image as PILImage

    frame = camera.read()
    buffer = io.BytesIO()
    PILImage.fromarray(frame).convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
