"""The words a nurse acts on, for verdicts, findings and retakes (one place, used by pages,
the referral slip and the API)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext

from kiosk import messages as kiosk_messages
from kiosk.result import Result
from kiosk.tasks import DEFAULTS, KIND_DEFAULTS
from web import messages
from web.i18n import N_ as N_  # the marker, where the pages' words have always found it

INTENDED_USE_WARNING = N_(
    "Reference model trained on small public data sets; not for clinical decisions. "
    "A clinician must confirm every result."
)

EYE_WORDS = {"L": N_("Left eye"), "R": N_("Right eye")}
SEXES = {"female": N_("Female"), "male": N_("Male"), "other": N_("Other"), "unknown": N_("Unknown")}
#: The referral words of the shipped tasks' manifests (translated where they are shown).
REFERRAL_WORDS = [N_("an eye doctor"), N_("a doctor"), N_("today"), N_("within 3 months"),
                  N_("within a week")]

#: What an image of each kind is called when its result names no title.
KIND_WORDS = {"fundus": N_("Eye photograph"), "cxr": N_("Chest X-ray")}

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
    to, within = _(referral["to"]), _(referral.get("within", "")) if referral.get("within") else ""
    if referral.get("urgency") == "urgent" or urgent(result):
        return _("Urgent: refer to %(to)s %(within)s", to=to, within=within).strip()
    return _("Refer to %(to)s %(within)s", to=to, within=within).strip()


def headline(verdict: str | None, results: Sequence[Result]) -> str:
    """What to do about the whole visit, naming every referral the results call for, and an eye
    that was not photographed."""
    line = _headline(verdict, results)
    missing = missing_eye_notes(results)
    return f"{line} ({'; '.join(missing)})" if missing else line


def missing_eye_notes(results: Sequence[Result]) -> list[str]:
    """ "Right eye not photographed: the patient declined" kept with the visit's eye results."""
    notes = {w for r in results if kind_of(r) == "fundus" for w in r.get("warnings", [])
             if (kiosk_messages.read(w) or ("",))[0] == "eye_not_photographed"}
    return [messages.warning(note) for note in sorted(notes, reverse=True)]


def _headline(verdict: str | None, results: Sequence[Result]) -> str:
    """The action of the visit, every referral named."""
    if verdict == "referable":
        referring = [r for r in results if r.get("verdict") == "referable"] or list(results)
        lines = sorted({(not urgent_referral(r), refer_line(r)) for r in referring})
        return "; ".join(line for _urgent, line in lines) if lines else _("Refer to a doctor")
    kinds = {kind_of(r) for r in results}
    return action(verdict, "cxr" if "cxr" in kinds else ("fundus" if kinds else None),
                  read=any(r.get("reader_required") for r in results))


def action(verdict: str | None, kind: str | None = None, *, read: bool = False) -> str:
    """What to do for a verdict that names no referral: clear, retake, or a clinician to look."""
    chest = kind == "cxr"
    if verdict == "referable":
        return _("Refer to a doctor") if chest else _("Refer to an eye doctor")
    if verdict == "non_referable":
        return _("No referral needed")
    if verdict == "ungradable" and read:  # read, but outside the model's trained population
        return (_("A clinician must read the film: the patient is outside the ages the model "
                  "was trained on") if chest else
                _("A clinician must read the photos: the patient is outside the ages the model "
                  "was trained on"))
    if verdict == "ungradable":  # a screening the kiosk could not grade: a clinician must look
        return _("Refer to a doctor: the film could not be read here") if chest else (
            _("Refer for an eye examination: the photos could not be graded here"))
    if verdict == "retake":
        return _("Retake the film") if chest else _("Retake the photo")
    return _("Not screened")


def tone(verdict: str | None, results: Sequence[Result] = ()) -> str:
    """The CSS class of a verdict: refer, clear, retake, or read (a clinician must read it)."""
    if verdict == "ungradable" and any(r.get("reader_required") for r in results):
        return "read"
    return {"referable": "refer", "non_referable": "clear"}.get(verdict or "", "retake")


def result_tone(result: Result, overruled: bool = False) -> str:
    """The colour of one image's card: "kiosk" (muted) once a clinician overruled the visit."""
    if overruled:
        return "kiosk"
    if result.get("reader_required") and result.get("verdict") != "referable":
        return "read"
    return tone(result.get("verdict"))


def final_verdict(screening: Any) -> str:
    """The verdict that stands: the clinician's when signed off, else the kiosk's."""
    signed = screening.sign_off
    return str(signed.verdict) if signed and signed.verdict else str(screening.verdict)


def decision_words(sign_off: Any) -> str:
    """ "Overruled by doctor", "Confirmed by doctor" (never "overruleed")."""
    if sign_off.decision == "overrule":
        return _("Overruled by %(who)s", who=sign_off.clinician)
    return _("Confirmed by %(who)s", who=sign_off.clinician)


def nurse_error(result: Result) -> str:
    """Why an image was not screened, in words a nurse acts on (no field names, no jargon)."""
    return messages.result_error(result)


def retake_line(reasons: list[str], kind: str | None = None) -> str:
    """ "Retake the photo: image too dark" from the quality reasons."""
    head = _("Retake the film") if kind == "cxr" else _("Retake the photo")
    if not reasons:
        return head
    first = _RETAKE_TAIL.sub("", reasons[0].strip())
    return _("%(action)s: %(reason)s", action=head, reason=f"{first[:1].lower()}{first[1:]}")


def image_line(result: Result) -> str:
    """What to do about one result: its referral, a retake line, or why it was not screened."""
    if result.get("error"):
        return _("Not screened: %(why)s", why=nurse_error(result))
    if result.get("verdict") in ("ungradable", None):
        return retake_line(quality_reasons(result), kind_of(result))
    if result.get("reader_required") and result.get("verdict") != "referable":
        return _("A clinician must read this image: the patient is outside the ages the model "
                 "was trained on, so the kiosk's answer does not count")
    if result.get("verdict") == "referable":
        return refer_line(result)
    return action(result.get("verdict"), kind_of(result))


def quality_reasons(result: Result) -> list[str]:
    """The reasons an image was refused or ungradable, as sentences."""
    if result.get("error"):
        return [messages.result_error(result)]
    quality = result.get("quality")
    return [messages.quality_reason(r) for r in (quality["reasons"] if quality else [])]


def image_title(result: Result) -> str:
    """ "Left eye", "Right eye", or the task's title ("Chest X-ray (adults)") for one result."""
    laterality = result.get("laterality")
    if laterality not in EYE_WORDS and result.get("title"):
        return messages.model_word(str(result["title"]))
    return slot_title(laterality, kind_of(result))


def slot_title(laterality: str | None, kind: str | None) -> str:
    """ "Left eye", "Right eye", "Chest X-ray" for an image before any task read it."""
    if laterality in EYE_WORDS:
        return _(EYE_WORDS[str(laterality)])
    return _(KIND_WORDS.get(kind or "", N_("Image")))


def model_line(result: Result) -> str:
    """Which model produced a result, for whom it was trained, and the operating point used."""
    model: Any = result.get("model")
    if not model:
        return _("No model")
    line = _("Model: %(title)s (%(id)s %(version)s)",
             title=messages.model_word(model.get("title") or model["id"]), id=model["id"],
             version=model["version"])
    population = (model.get("population") or {}).get("description")
    if population:
        line += _(", trained on %(who)s", who=messages.model_word(population))
    if model.get("operating_point"):
        line += _("; operating point: %(point)s", point=model["operating_point"])
    site = model.get("site_calibration")
    if site:
        line += _(", calibrated at this site on %(date)s, n = %(count)s", date=site["date"],
                  count=site["n_positive"] + site["n_negative"])
    return line


def why_line(result: Result) -> str:
    """Why the kiosk says what it says about one image, in whole numbers a nurse can say aloud."""
    if result.get("reader_required"):
        model: Any = result.get("model") or {}
        population = (model.get("population") or {}).get("description")
        if population:
            return _("The model was not made for this patient (it was trained on %(who)s): a "
                     "clinician reads the image.", who=messages.model_word(population))
        return _("The model was not made for this patient: a clinician reads the image.")
    findings = result.get("findings") or []
    positive = [f for f in findings if f.get("positive")]
    if positive:
        top = max(positive, key=lambda f: f["probability"])
        line = _("The model found signs of %(what)s.",
                 what=messages.model_word(top.get("display") or top["label"]))
        ppv = top.get("ppv")
        if ppv is not None:
            line += " " + _("At this clinic, %(count)s in 100 patients flagged like this really "
                            "have it: the doctor decides.", count=_in_100(ppv))
        return line
    if not findings:
        return ""
    line = _("The model found no sign that needs a referral.")
    npv = findings[0].get("npv")
    if npv is not None:
        line += " " + _("Still, %(count)s in 100 patients cleared like this have it: come back "
                        "if the sight changes.", count=_in_100(1.0 - float(npv)))
    return line


def _in_100(share: float) -> str:
    """ "about 14", "fewer than 1" for a share of patients."""
    count = round(100 * float(share))
    return _("fewer than 1") if count < 1 else _("about %(count)d", count=count)


def chance_and_line(finding: Any) -> tuple[str, str]:
    """The model's chance and its cut-off, with a decimal when whole percents would look equal."""
    chance, line = float(finding["probability"]), float(finding["threshold"])
    digits = 0 if round(100 * chance) != round(100 * line) else 1
    if digits and round(100 * chance, 1) == round(100 * line, 1):
        digits = 2
    return f"{100 * chance:.{digits}f}%", f"{100 * line:.{digits}f}%"


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


def urgent_referral(result: Result) -> bool:
    """True when a result refers urgently (its task's urgency, or an urgent finding)."""
    return referral_of(result).get("urgency") == "urgent" or urgent(result)


def intended_use() -> str:
    """The intended-use warning in the reader's language."""
    return _(INTENDED_USE_WARNING)


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
        result_tone=result_tone,
        final_verdict=final_verdict,
        decision_words=decision_words,
        why_line=why_line,
        chance_and_line=chance_and_line,
        nurse_error=nurse_error,
        shown_warning=messages.warning,
        model_word=messages.model_word,
        INTENDED_USE_WARNING=lazy_gettext(INTENDED_USE_WARNING),
        _t=_,
    )
