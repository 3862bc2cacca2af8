"""The words a nurse acts on, for verdicts, findings and retakes (one place, used by pages,
the referral slip and the API)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

INTENDED_USE_WARNING = (
    "Reference model trained on small public data sets; not for clinical decisions. "
    "A clinician must confirm every result."
)

#: What each task reads, in words.
TASK_WORDS = {"fundus-dr": "Eye photograph", "cxr-pneumonia": "Chest X-ray"}

EYE_WORDS = {"L": "Left eye", "R": "Right eye"}

#: "..., and retake." at the end of a quality message (the line already starts with Retake).
_RETAKE_TAIL = re.compile(r"[,;:]?\s*(?:and\s+)?retake\.?$", re.IGNORECASE)


def action(verdict: str | None, task: str | None = None, urgent: bool = False) -> str:
    """What to do, in one line: "Refer to an eye doctor", "No referral needed", ..."""
    chest = task is not None and task.startswith("cxr")
    if verdict == "referable":
        if chest:
            return "Urgent: refer to a doctor today" if urgent else "Refer to a doctor"
        return "Refer to an eye doctor"
    if verdict == "non_referable":
        return "No referral needed"
    if verdict == "ungradable":  # a screening the kiosk could not grade: a clinician must look
        return "Refer to a doctor: the film could not be read here" if chest else (
            "Refer for an eye examination: the photos could not be graded here")
    if verdict == "retake":
        return "Retake the film" if chest else "Retake the photo"
    return "Not screened"


def tone(verdict: str | None) -> str:
    """The CSS class of a verdict: refer, clear, retake."""
    return {"referable": "refer", "non_referable": "clear"}.get(verdict or "", "retake")


def retake_line(reasons: list[str], task: str | None = None) -> str:
    """ "Retake the photo: image too dark" from the quality reasons."""
    head = "Retake the film" if task and task.startswith("cxr") else "Retake the photo"
    if not reasons:
        return head
    first = _RETAKE_TAIL.sub("", reasons[0].strip())
    return f"{head}: {first[:1].lower()}{first[1:]}"


def image_line(result: dict[str, Any]) -> str:
    """What to do about one image: its action, a retake line, or why it was not screened."""
    if result.get("error"):
        reasons = quality_reasons(result)
        return f"Not screened: {reasons[0]}" if reasons else "Not screened"
    if result.get("verdict") in ("ungradable", None):
        return retake_line(quality_reasons(result), result.get("task"))
    if result.get("reader_required") and result.get("verdict") != "referable":
        return "A clinician must read this image: the model was not trained on patients like this one"
    return action(result.get("verdict"), result.get("task"), urgent(result))


def quality_reasons(result: dict[str, Any]) -> list[str]:
    """The reasons an image was refused or ungradable, as sentences."""
    error = result.get("error")
    if error:
        return [str(error.get("message", error)) if isinstance(error, dict) else str(error)]
    quality = result.get("quality") or {}
    return [str(r.get("message", r.get("code", ""))) for r in quality.get("reasons", [])]


def image_title(result: dict[str, Any]) -> str:
    """ "Left eye", "Right eye" or "Chest X-ray" for one image."""
    laterality = result.get("laterality")
    if laterality in EYE_WORDS:
        return EYE_WORDS[laterality]
    return TASK_WORDS.get(str(result.get("task")), "Image")


def percent(value: float | None) -> str:
    """A probability as "82%" ("-" when unknown)."""
    if value is None:
        return "-"
    return f"{100 * float(value):.0f}%"


def waited(value: Any) -> str:
    """How long a screening has waited: "4 min", "2 h 05 min"."""
    if value is None:
        return "-"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def urgent(result: dict[str, Any]) -> bool:
    """True when any positive finding of the image is marked urgent."""
    return any(f.get("positive") and f.get("urgent") for f in result.get("findings", []))


def register(env: Any) -> None:
    """Make the words available to templates as filters and globals."""
    env.filters.update(percent=percent, waited=waited)
    env.globals.update(
        action=action,
        tone=tone,
        retake_line=retake_line,
        image_line=image_line,
        quality_reasons=quality_reasons,
        image_title=image_title,
        is_urgent=urgent,
        INTENDED_USE_WARNING=INTENDED_USE_WARNING,
    )
