"""The result record: what one task said about one image (docs/interfaces.md, "Result JSON").

The pipeline makes it, ``kiosk screen --json`` prints it, the store keeps it as JSON, and the
web app, the referral slip and the FHIR / HL7 / DICOM writers read it. It is a ``TypedDict``
so that mypy checks every read and write of it; on disk and on the wire it is plain JSON.
"""

from __future__ import annotations

from typing import Any

# typing_extensions: NotRequired is 3.11+ in typing, and the kiosk runs on JetPack 6's Python 3.10
from typing_extensions import NotRequired, TypedDict


class FindingResult(TypedDict):
    """One finding of the model: its probability against the operating point's threshold."""

    label: str
    display: str
    probability: float
    threshold: float
    positive: bool
    referable: bool
    urgent: bool
    ppv: float | None
    npv: float | None
    prevalence: NotRequired[float]
    ppv_range: NotRequired[list[float] | None]
    meaning: NotRequired[str]


class QualityResult(TypedDict):
    """Whether the image was gradable, why not, and the measures behind the decision."""

    gradable: bool
    reasons: list[dict[str, str]]
    measures: dict[str, float]


class SiteCalibration(TypedDict):
    """The threshold a clinic measured on its own labelled images (kiosk.lifecycle.validation)."""

    date: str
    n_positive: int
    n_negative: int
    threshold: float


class ModelRef(TypedDict):
    """The exact bundle that produced a result, and the patients it was trained for."""

    id: str
    version: str
    sha256: str
    title: NotRequired[str]
    population: NotRequired[dict[str, Any] | None]
    operating_point: NotRequired[str | None]
    #: Set when the operating point is the one calibrated at this site.
    site_calibration: NotRequired[SiteCalibration]


class Referral(TypedDict):
    """Whom a referable result of this task sends the patient to, and how soon."""

    to: str
    urgency: str
    within: str


class CodingDict(TypedDict):
    """A standard code: {"system": "http://loinc.org", "code": "71490-7", "display": ...}."""

    system: str
    code: str
    display: str


class ResultCodes(TypedDict):
    """The standard codes the writers send a result under (from the task's manifest)."""

    result: CodingDict | None
    findings: dict[str, CodingDict]


class PatientRule(TypedDict):
    """How a patient's images of one task combine into one decision (e.g. both eyes' mean)."""

    rule: str
    threshold: float
    operating_point: str


class SourceRef(TypedDict, total=False):
    """The DICOM film a result is about, as it came: its UIDs and accession number."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    accession_number: str
    modality: str


#: The image meta keys (kiosk/intake/dicom.py ``describe``) a result's ``source`` copies.
SOURCE_KEYS = ("study_uid", "series_uid", "sop_uid", "sop_class_uid", "accession_number",
               "modality")


def source_of(meta: dict[str, str]) -> SourceRef | None:
    """The ``source`` entry of a DICOM image's result (None for a photograph, which has no UIDs)."""
    if meta.get("format") != "dicom" or not meta.get("sop_uid"):
        return None
    return SourceRef(**{key: meta[key] for key in SOURCE_KEYS if meta.get(key)})  # type: ignore[typeddict-item]


class Result(TypedDict):
    """What one task said about one image (or why the image was refused)."""

    input: str
    task: str | None
    kind: NotRequired[str | None]
    title: NotRequired[str]
    verdict: str | None
    score: float | None
    findings: list[FindingResult]
    quality: QualityResult | None
    model: ModelRef | None
    backend: str | None
    laterality: str | None
    priority: int
    timings_ms: dict[str, float]
    warnings: list[str]
    error: dict[str, Any] | None
    #: Which image of the visit this result is about (several tasks may read one image).
    image: NotRequired[int]
    #: Set when the patient lies outside the model's trained population: a clinician must read it.
    reader_required: NotRequired[str]
    referral: NotRequired[Referral]
    codes: NotRequired[ResultCodes]
    patient_rule: NotRequired[PatientRule]
    #: The DICOM film screened (its study, series and SOP instance UIDs, accession number), so
    #: that every writer can point back to it.
    source: NotRequired[SourceRef]
    #: The image's input features (kiosk.pixels.features), which drift alarms compare with the
    #: bundle's reference: brightness, contrast, sharpness, fov, width, height, device.
    inputs: NotRequired[dict[str, float | str]]


def film_sources(results: list[Result]) -> list[SourceRef]:
    """The DICOM films a screening's results are about, each once, in the order first read."""
    found: dict[str, SourceRef] = {}
    for result in results:
        source = result.get("source")
        if source and source.get("sop_uid"):
            found.setdefault(source["sop_uid"], source)
    return list(found.values())


def film_study(results: list[Result]) -> SourceRef | None:
    """The screened films' source when they all come from one study (None otherwise)."""
    sources = film_sources(results)
    studies = {s.get("study_uid") for s in sources}
    return sources[0] if len(studies) == 1 and None not in studies else None


def model_words(result: Result) -> str:
    """Which model produced a result and for whom it was trained, in one line for people."""
    model = result.get("model")
    if not model:
        return "No model"
    line = f"Model: {model.get('title') or model['id']} ({model['id']} {model['version']})"
    population = model.get("population") or {}
    if population.get("description"):
        line += f", trained on {population['description']}"
    if model.get("operating_point"):
        line += f"; operating point: {model['operating_point']}"
    site = model.get("site_calibration")
    if site:
        line += (f", calibrated at this site on {site['date']}, "
                 f"n = {site['n_positive'] + site['n_negative']}")
    return line
