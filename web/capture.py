"""From offered images to a recorded screening: the instant quality gate, then screening.

Nothing is screened until every offered image passes the gate; the nurse is told which image
to retake and why.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import Any

from kiosk.errors import IntakeError, KioskError
from kiosk.intake import sniff_format
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
    """The instant gate (intake and quality, no inference): the retakes needed, if any."""
    _require(offered)
    results = []
    for item in offered:
        try:
            results.append(dict(pipeline.check(item.data, source=item.name, task=item.task).result))
        except IntakeError as exc:
            results.append({"error": exc.to_dict(), "task": item.task})
    return retakes_of(offered, results)


def age_years(birth_date: str | None, today: date | None = None) -> float | None:
    """The patient's age in years from an ISO birth date (None when unknown or malformed)."""
    try:
        born = date.fromisoformat(birth_date) if birth_date else None
    except ValueError:
        return None
    if born is None:
        return None
    return ((today or date.today()) - born).days / 365.25


def screen_visit(pipeline: Any, offered: list[Offered], *,
                 age: float | None = None) -> tuple[list[Any], list[Retake]]:
    """Screen every image of a visit: the outcomes, and the retakes the quality step asked for.

    One decode per image: the pipeline stops at the quality step for an ungradable image, so
    its gate answer comes from the same pass that screens the gradable ones. The caller
    records nothing while any retake is needed.
    """
    _require(offered)
    outcomes = [
        pipeline.screen(item.data, source=item.name, task=item.task, laterality=item.laterality,
                        age_years=age)
        for item in offered
    ]
    return outcomes, retakes_of(offered, [o.result for o in outcomes])


def retakes_of(offered: list[Offered], results: list[dict[str, Any]]) -> list[Retake]:
    """The images refused by intake or judged ungradable, with the nurse's retake line."""
    retakes = []
    for index, (item, result) in enumerate(zip(offered, results, strict=True)):
        gradable = (result.get("quality") or {}).get("gradable", False)
        if result.get("error") or not gradable:
            reasons = words.quality_reasons(result)
            shown = {**result, "laterality": result.get("laterality") or item.laterality}
            line = (words.image_line(shown) if result.get("error")
                    else words.retake_line(reasons, result.get("task") or item.task))
            retakes.append(Retake(item.name, words.image_title(shown), line, reasons, index))
    return retakes


def _require(offered: list[Offered]) -> None:
    """NothingOffered when the form carried no image."""
    if not offered:
        raise NothingOffered("Choose a photograph or an X-ray first.")


def record(
    services: Services, patient_id: int, offered: list[Offered], outcomes: list[Any], *, actor: str
) -> Any:
    """Keep the images and heat-maps, and record one screening of the visit."""
    store = services.store
    image_shas = [store.save_image(item.data, suffix_of(item)) for item in offered]
    heatmap_shas = [
        store.save_image(o.heatmap_png, ".png") if o.heatmap_png else None for o in outcomes
    ]
    return store.record_screening(
        patient_id, [o.result for o in outcomes], actor=actor, image_shas=image_shas,
        heatmap_shas=heatmap_shas,
    )


def suffix_of(item: Offered) -> str:
    """The file suffix to keep an image under, from its first bytes (as intake reads them) or name."""
    try:
        return {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg"}[sniff_format(item.data)]
    except IntakeError:
        pass
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
