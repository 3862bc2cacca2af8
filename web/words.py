"""The words a nurse acts on, for verdicts, findings and retakes (one place, used by pages,
the referral slip and the API)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from kiosk.result import Result, model_words
from kiosk.tasks import DEFAULTS, KIND_DEFAULTS

INTENDED_USE_WARNING = (
    "Reference model trained on small public data sets; not for clinical decisions. "
    "A clinician must confirm every result."
)

EYE_WORDS = {"L": "Left eye", "R": "Right eye"}
#: What an image of each kind is called when its result names no title.
KIND_WORDS = {"fundus": "Eye photograph", "cxr": "Chest X-ray"}

#: "..., and retake." at the end of a quality message (the line already starts with Retake).
_RETAKE_TAIL = re.compile(r"[,;:]?\s*(?:and\s+)?retake\.?$", re.IGNORECASE)


def kind_of(result: Result) -> str | None:
    """The kind of image a result is about (results kept before 'kind' existed: by task id)."""
    if result.get("kind"):
        return str(result["kind"])
    prefix = str(result.get("task") or "").split("-", 1)[0]
    return prefix if prefix in KIND_WORDS else None


def referral_of(result: Result) -> dict[str, str]:
    """Whom a referable result sends the patient to (from the result, else its task's defaults)."""
    referral = result.get("referral")
    if referral:
        return {"to": referral["to"], "urgency": referral["urgency"], "within": referral["within"]}
    task = DEFAULTS.get(str(result.get("task")), KIND_DEFAULTS.get(kind_of(result) or "", {}))
    return dict(task.get("referral") or KIND_DEFAULTS["cxr"]["referral"])


def refer_line(result: Result) -> str:
    """ "Urgent: refer to a doctor today", "Refer to an eye doctor within 3 months"."""
    referral = referral_of(result)
    line = f"refer to {referral['to']} {referral.get('within', '')}".strip()
    if referral.get("urgency") == "urgent" or urgent(result):
        return f"Urgent: {line}"
    return line[:1].upper() + line[1:]


def headline(verdict: str | None, results: Sequence[Result]) -> str:
    """What to do about the whole visit, naming every referral the results call for."""
    if verdict == "referable":
        referring = [r for r in results if r.get("verdict") == "referable"] or list(results)
        lines = sorted({refer_line(r) for r in referring}, key=lambda line: not line.startswith("Urgent"))
        return "; ".join(lines) if lines else "Refer to a doctor"
    kinds = {kind_of(r) for r in results}
    return action(verdict, "cxr" if "cxr" in kinds else ("fundus" if kinds else None),
                  read=any(r.get("reader_required") for r in results))


def action(verdict: str | None, kind: str | None = None, *, read: bool = False) -> str:
    """What to do for a verdict that names no referral: clear, retake, or a clinician to look."""
    chest = kind == "cxr"
    if verdict == "referable":
        return "Refer to a doctor" if chest else "Refer to an eye doctor"
    if verdict == "non_referable":
        return "No referral needed"
    if verdict == "ungradable" and read:  # read, but outside the model's trained population
        return "Refer: a clinician must read the " + ("film" if chest else "photos")
    if verdict == "ungradable":  # a screening the kiosk could not grade: a clinician must look
        return "Refer to a doctor: the film could not be read here" if chest else (
            "Refer for an eye examination: the photos could not be graded here")
    if verdict == "retake":
        return "Retake the film" if chest else "Retake the photo"
    return "Not screened"


def tone(verdict: str | None) -> str:
    """The CSS class of a verdict: refer, clear, retake."""
    return {"referable": "refer", "non_referable": "clear"}.get(verdict or "", "retake")


def retake_line(reasons: list[str], kind: str | None = None) -> str:
    """ "Retake the photo: image too dark" from the quality reasons."""
    head = "Retake the film" if kind == "cxr" else "Retake the photo"
    if not reasons:
        return head
    first = _RETAKE_TAIL.sub("", reasons[0].strip())
    return f"{head}: {first[:1].lower()}{first[1:]}"


def image_line(result: Result) -> str:
    """What to do about one result: its referral, a retake line, or why it was not screened."""
    if result.get("error"):
        reasons = quality_reasons(result)
        return f"Not screened: {reasons[0]}" if reasons else "Not screened"
    if result.get("verdict") in ("ungradable", None):
        return retake_line(quality_reasons(result), kind_of(result))
    if result.get("reader_required") and result.get("verdict") != "referable":
        return "A clinician must read this image: the model was not trained on patients like this one"
    if result.get("verdict") == "referable":
        return refer_line(result)
    return action(result.get("verdict"), kind_of(result))


def quality_reasons(result: Result) -> list[str]:
    """The reasons an image was refused or ungradable, as sentences."""
    error = result.get("error")
    if error:
        return [str(error.get("message", error)) if isinstance(error, dict) else str(error)]
    quality = result.get("quality")
    return [str(r.get("message", r.get("code", ""))) for r in (quality["reasons"] if quality else [])]


def image_title(result: Result) -> str:
    """ "Left eye", "Right eye", or the task's title ("Chest X-ray (adults)") for one result."""
    laterality = result.get("laterality")
    if laterality not in EYE_WORDS and result.get("title"):
        return str(result["title"])
    return slot_title(laterality, kind_of(result))


def slot_title(laterality: str | None, kind: str | None) -> str:
    """ "Left eye", "Right eye", "Chest X-ray" for an image before any task read it."""
    if laterality in EYE_WORDS:
        return EYE_WORDS[str(laterality)]
    return KIND_WORDS.get(kind or "", "Image")


def model_line(result: Result) -> str:
    """Which model produced a result, for whom it was trained, and the operating point used."""
    return model_words(result)


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


def urgent(result: Result) -> bool:
    """True when any positive finding of the image is marked urgent."""
    return any(f.get("positive") and f.get("urgent") for f in result.get("findings", []))


def register(env: Any) -> None:
    """Make the words available to templates as filters and globals."""
    env.filters.update(percent=percent, waited=waited)
    env.globals.update(
        action=action,
        headline=headline,
        tone=tone,
        retake_line=retake_line,
        image_line=image_line,
        quality_reasons=quality_reasons,
        image_title=image_title,
        model_line=model_line,
        is_urgent=urgent,
        INTENDED_USE_WARNING=INTENDED_USE_WARNING,
    )
