"""What the kiosk knows about a screening task, read from its bundle's manifest.

Everything about a task (the kind of image it reads, what the screen calls it, the patients it
was trained for, the prevalence a clinic should expect, the standard codes its results are sent
under, and whom a referable result is referred to) lives in the bundle's ``manifest.json``
(docs/bundle.md, "Describing the task"). :data:`DEFAULTS` holds the same keys for the task ids
the project has shipped, so bundles signed before these keys existed still read well; a
manifest's own keys always win. A new task needs a new bundle and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from kiosk.domain import ImageKind
from kiosk.result import CodingDict, Result, ResultCodes

LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
Urgency = Literal["urgent", "soon", "routine"]

#: Manifest keys of the shipped tasks, for bundles signed before the keys were written in them.
DEFAULTS: dict[str, dict[str, Any]] = {
    "fundus-dr": {
        "kind": "fundus",
        "title": "Eye photograph (diabetic retinopathy)",
        "prevalence": 0.10,
        "codes": {
            "report": {"system": LOINC, "code": "32451-7", "display": "Physical findings of Eye"},
            "sides": {
                "L": {"system": LOINC, "code": "71490-7",
                      "display": "Diabetic retinopathy severity in left eye"},
                "R": {"system": LOINC, "code": "71491-5",
                      "display": "Diabetic retinopathy severity in right eye"},
            },
            "findings": {"referable_dr": {"system": SNOMED, "code": "4855003",
                                          "display": "Diabetic retinopathy"}},
        },
        "referral": {"to": "an eye doctor", "urgency": "routine", "within": "within 3 months"},
    },
    "cxr-pneumonia": {
        "kind": "cxr",
        "title": "Chest X-ray (children)",
        "prevalence": 0.05,
        "codes": {
            "report": {"system": LOINC, "code": "24648-8", "display": "XR Chest PA upright"},
            "findings": {"pneumonia": {"system": SNOMED, "code": "233604007",
                                       "display": "Pneumonia"}},
        },
        "referral": {"to": "a doctor", "urgency": "urgent", "within": "today"},
    },
}

#: What an unknown task of each kind is called, and where its referable results go.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "fundus": {"title": "Eye photograph", "referral": {"to": "an eye doctor", "urgency": "routine",
                                                       "within": "within 3 months"}},
    "cxr": {"title": "Chest X-ray", "referral": {"to": "a doctor", "urgency": "soon",
                                                 "within": "within a week"}},
}
#: Prevalence assumed for a task whose manifest gives none and whose validation share is unknown.
FALLBACK_PREVALENCE = 0.10


@dataclass(frozen=True)
class Coding:
    """A code in a standard system (LOINC, SNOMED CT), as FHIR, HL7 v2 and DICOM SR write it."""

    system: str
    code: str
    display: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Coding | None:
        """A Coding from a manifest's {"system", "code", "display"}; None when absent."""
        if not raw or not raw.get("code"):
            return None
        return cls(str(raw.get("system", "")), str(raw["code"]), str(raw.get("display", "")))

    def to_dict(self) -> CodingDict:
        """The coding as the result record and FHIR write it."""
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class Population:
    """The patients a model was trained for: an age range and a description in words."""

    low: float
    high: float
    description: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Population | None:
        """A Population from a manifest's {"age_years": [low, high], "description"}."""
        if not raw or "age_years" not in raw:
            return None
        low, high = (float(v) for v in raw["age_years"])
        return cls(low, high, str(raw.get("description") or f"patients aged {low:g}-{high:g}"))

    def fits(self, age_years: float) -> bool:
        """Whether a patient of this age is within the trained ages (whole years, inclusive)."""
        return self.low <= age_years < self.high + 1

    def to_dict(self) -> dict[str, Any]:
        """The population as the result JSON carries it."""
        return {"age_years": [self.low, self.high], "description": self.description}


@dataclass(frozen=True)
class Referral:
    """Whom a referable result sends the patient to, how urgently, and within what time."""

    to: str
    urgency: Urgency
    within: str


@dataclass(frozen=True)
class Task:
    """One screening task as the kiosk uses it: kind, words, population, codes, referral."""

    id: str
    kind: ImageKind
    title: str
    population: Population | None
    prevalence: float
    referral: Referral
    report_code: Coding | None = None
    side_codes: dict[str, Coding] = field(default_factory=dict)
    finding_codes: dict[str, Coding] = field(default_factory=dict)

    def fits(self, age_years: float | None) -> bool | None:
        """True/False when the age is known and the task names a population; None otherwise."""
        if age_years is None or self.population is None:
            return None
        return self.population.fits(age_years)

    def code_for(self, laterality: str | None) -> Coding | None:
        """The code of one image's result: the eye's own code where the task has one."""
        return self.side_codes.get(laterality or "") or self.report_code

    def result_codes(self, laterality: str | None) -> ResultCodes:
        """The codes a result of this task is sent under, as the result record carries them."""
        code = self.code_for(laterality)
        return {"result": code.to_dict() if code else None,
                "findings": {label: c.to_dict() for label, c in self.finding_codes.items()}}


def codes_of(result: Result) -> ResultCodes:
    """A result's codes: its own, or (results kept before they carried codes) its task's."""
    if "codes" in result:
        return result["codes"]
    task = describe({"task": str(result.get("task") or "unknown")})
    return task.result_codes(result.get("laterality"))


def describe(manifest: Mapping[str, Any]) -> Task:
    """The Task a manifest describes, its missing keys taken from the registry's defaults."""
    task_id = str(manifest["task"])
    merged: dict[str, Any] = {**DEFAULTS.get(task_id, {}), **_task_keys(manifest)}
    kind = _kind(task_id, merged, manifest)
    merged = {**KIND_DEFAULTS[kind], **merged}
    codes = merged.get("codes") or {}
    referral = merged["referral"]
    return Task(
        id=task_id, kind=kind, title=str(merged["title"]),
        population=Population.parse(merged.get("population")),
        prevalence=_prevalence(merged, manifest),
        referral=Referral(str(referral["to"]), _urgency(referral.get("urgency")),
                          str(referral.get("within", ""))),
        report_code=Coding.parse(codes.get("report")),
        side_codes=_codings(codes.get("sides")),
        finding_codes=_codings(codes.get("findings")),
    )


def _task_keys(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's own task-describing keys (those it has)."""
    keys = ("kind", "title", "population", "prevalence", "codes", "referral")
    return {key: manifest[key] for key in keys if manifest.get(key) is not None}


def _kind(task_id: str, merged: Mapping[str, Any], manifest: Mapping[str, Any]) -> ImageKind:
    """The image kind: the manifest's, else the task id's prefix, else the input's channels."""
    kind = merged.get("kind") or task_id.split("-", 1)[0]
    if kind in ("fundus", "cxr"):
        return cast(ImageKind, kind)
    channels = int(manifest.get("input", {}).get("channels", 1))
    return "fundus" if channels == 3 else "cxr"


def _prevalence(merged: Mapping[str, Any], manifest: Mapping[str, Any]) -> float:
    """The manifest's prevalence, else the share of positives where it was validated."""
    if merged.get("prevalence") is not None:
        return float(merged["prevalence"])
    findings = manifest.get("findings") or [{}]
    point = findings[0].get("operating_point", {})
    if "n_positive" in point and "n_negative" in point:
        positive, negative = int(point["n_positive"]), int(point["n_negative"])
        return positive / max(1, positive + negative)
    return FALLBACK_PREVALENCE


def _urgency(raw: Any) -> Urgency:
    """A referral urgency, 'soon' when the manifest says something unknown."""
    return cast(Urgency, raw) if raw in ("urgent", "soon", "routine") else "soon"


def _codings(raw: Mapping[str, Any] | None) -> dict[str, Coding]:
    """{key: Coding} from a manifest's {key: {"system", "code", "display"}}."""
    found = {str(key): Coding.parse(value) for key, value in (raw or {}).items()}
    return {key: coding for key, coding in found.items() if coding is not None}
