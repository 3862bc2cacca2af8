"""DICOM objects for the PACS: a Secondary Capture per image (with the heat-map overlay) and a
Comprehensive 3D SR (TID 1500 measurement report) with the findings.

Every UID is derived from the screening, so a resend carries the same Study/Series/SOP Instance
UIDs and the PACS keeps one copy. The final report (after sign-off) is a new SR instance in the
same study, marked verified by the clinician. The SR points back to the films screened (their
study, series and SOP instance UIDs as evidence, their accession number as the request), and
with KIOSK_SR_IN_FILM_STUDY the kiosk's objects go in the film's own study.
"""

from __future__ import annotations

import io
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from PIL import Image as PILImage
from pydicom import Dataset, dcmread
from pydicom.sr.codedict import codes

from kiosk import names
from kiosk.config import Config
from kiosk.result import CodingDict, SourceRef, film_sources, film_study, model_words
from kiosk.store import Screening
from kiosk.sync.base import Delivery, dicom_uid
from kiosk.tasks import codes_of

MANUFACTURER = "Screening kiosk"
SEX = {"female": "F", "f": "F", "male": "M", "m": "M", "other": "O", "o": "O"}
LOCAL = "99KIOSK"  # a private coding scheme for the kiosk's own verdict and finding codes
#: UTF-8, where any text is not ASCII (names in any script, the clinic's name).
CHARSET = "ISO_IR 192"
#: DICOM coding scheme designators of the code systems the manifests use.
SCHEMES = {"http://loinc.org": "LN", "http://snomed.info/sct": "SCT"}
EYE_SIDE = {"L": codes.SCT.Left, "R": codes.SCT.Right}


def study_uid(screening: Screening, config: Config | None = None) -> str:
    """The Study Instance UID the screening's objects go in: a new one derived from the
    screening, or the screened film's own where the site wants that (KIOSK_SR_IN_FILM_STUDY)."""
    film = in_film_study(screening, config)
    return film["study_uid"] if film else dicom_uid(screening.uid, "study")


def in_film_study(screening: Screening, config: Config | None) -> SourceRef | None:
    """The film whose study the kiosk's objects join, when the setting says so and all the
    screening's films come from one study."""
    if config is None or not getattr(config, "sr_in_film_study", False):
        return None
    return film_study(screening.results)


def accession_number(screening: Screening, config: Config | None = None) -> str:
    """The film's accession number in its own study, else the kiosk's own for its new study."""
    film = in_film_study(screening, config)
    return film.get("accession_number", "") if film else screening.uid[:16]


def sc_uids(screening: Screening, position: int, kind: str) -> tuple[str, str]:
    """(series, SOP instance) UIDs of one image's Secondary Capture: kind overlay|original."""
    return dicom_uid(screening.uid, kind, "series"), dicom_uid(screening.uid, kind, str(position))


def sr_uid(delivery: Delivery) -> str:
    """The SR's SOP Instance UID, one per outbox item (preliminary or final)."""
    return dicom_uid(delivery.screening.uid, "sr", delivery.item.report_status)


def charset(screening: Screening, config: Config) -> str | None:
    """ISO_IR 192 (UTF-8) where a text the objects carry is not ASCII, else the default."""
    texts = [names.to_dicom(screening.patient.person_name), config.clinic_name,
             screening.sign_off.clinician if screening.sign_off else ""]
    return None if all(text.isascii() for text in texts) else CHARSET


def _patient(screening: Screening, config: Config) -> dict:
    p = screening.patient
    return {"patient_id": p.identifier, "patient_name": names.to_dicom(p.person_name),
            "specific_character_set": charset(screening, config),
            "patient_birth_date": (p.birth_date or "").replace("-", "") or None,
            "patient_sex": SEX.get((p.sex or "").lower(), "O")}


def _pixels(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def secondary_capture(delivery: Delivery, position: int, sha256: str, kind: str) -> Dataset:
    """A Secondary Capture of a stored picture (the overlay, or the original photograph)."""
    s = delivery.screening
    series, sop = sc_uids(s, position, kind)
    side = str(s.results[position].get("laterality") or "")
    sc = hd.sc.SCImage(
        pixel_array=_pixels(delivery.image_bytes(sha256)), photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT",
        study_instance_uid=study_uid(s, delivery.store.config),
        series_instance_uid=series, series_number=2 if kind == "overlay" else 1,
        sop_instance_uid=sop, instance_number=position + 1, manufacturer=MANUFACTURER,
        study_date=s.created.date(), study_time=s.created.time().replace(tzinfo=None),
        laterality=side if side in EYE_SIDE else None, patient_orientation=("L", "F"),
        accession_number=accession_number(s, delivery.store.config), **_patient(s, delivery.store.config),
    )
    sc.SeriesDescription = "AI heat-map overlay" if kind == "overlay" else "Original image"
    sc.BurnedInAnnotation = "YES" if kind == "overlay" else "NO"
    return sc


def original(delivery: Delivery, position: int) -> Dataset:
    """The original image: a received DICOM file as it came, else a Secondary Capture of it."""
    sha256 = delivery.screening.image_shas[position]
    path = delivery.store.image_path(sha256)
    if path.suffix == ".dcm":
        return dcmread(path)
    return secondary_capture(delivery, position, sha256, "original")


def _code(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value[:16] or "unknown", scheme_designator=LOCAL,
                        meaning=meaning[:64] or value)


def _coded(standard: CodingDict | None, value: str, meaning: str) -> CodedConcept:
    """The standard code (LOINC, SNOMED CT) where the task names one, else the kiosk's own."""
    if standard is not None and standard["system"] in SCHEMES:
        return CodedConcept(value=standard["code"], scheme_designator=SCHEMES[standard["system"]],
                            meaning=(standard["display"] or meaning)[:64])
    return _code(value, meaning)


def _image_group(s: Screening, position: int) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    result = s.results[position]
    model: Any = result.get("model") or {}
    side = str(result.get("laterality") or "")
    found_codes = codes_of(result)["findings"]
    verdict = str(result.get("verdict"))
    evaluations = [hd.sr.QualitativeEvaluation(_code("verdict", "AI verdict"),
                                               _code(verdict, verdict.replace("_", " ")))]
    measurements = []
    for finding in result.get("findings") or []:
        label, display = str(finding.get("label")), str(finding.get("display") or "")
        evaluations.append(hd.sr.QualitativeEvaluation(
            _coded(found_codes.get(label), label, display or label),
            codes.SCT.Present if finding.get("positive") else codes.SCT.Absent))
        measurements.append(hd.sr.Measurement(
            name=_code(f"p-{label}", f"Probability of {display or label}"),
            value=float(finding.get("probability", 0.0)), unit=codes.UCUM.NoUnits))
    sites = [hd.sr.FindingSite(codes.SCT.Eye, laterality=EYE_SIDE[side])] if side in EYE_SIDE \
        else None
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=dicom_uid(s.uid, "tracking", str(position)),
            identifier=f"image {result.get('image', position) + 1}: "
                       f"{result.get('title') or result.get('task')}"[:64]),
        algorithm_id=hd.sr.AlgorithmIdentification(
            str(model.get("title") or model.get("id", "unknown"))[:64],
            f"{model.get('id', 'unknown')} {model.get('version', 'unknown')}"[:64],
            parameters=[*([model_words(result)[:64]] if model.get("population") else []),
                        *([str(model["sha256"])[:64]] if model.get("sha256") else [])] or None),
        finding_sites=sites, qualitative_evaluations=evaluations, measurements=measurements,
    )


def _sign_off_group(s: Screening) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    if s.sign_off is None:
        return []
    verdict = s.sign_off.verdict
    return [hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=dicom_uid(s.uid, "tracking", "sign-off"),
                                                     identifier="clinician sign-off"),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            _code("clin-verdict", "Clinician verdict"), _code(verdict, verdict))],
    )]


def film_evidence(s: Screening) -> list[Dataset]:
    """The screened films as SR evidence (their UIDs only: the films need not be sent)."""
    refs = []
    for source in film_sources(s.results):
        if all(source.get(k) for k in ("study_uid", "series_uid", "sop_uid", "sop_class_uid")):
            ref = Dataset()
            ref.StudyInstanceUID, ref.SeriesInstanceUID = source["study_uid"], source["series_uid"]
            ref.SOPInstanceUID, ref.SOPClassUID = source["sop_uid"], source["sop_class_uid"]
            refs.append(ref)
    return refs


def requested_procedures(s: Screening) -> list[Dataset] | None:
    """The orders behind the screened films (by accession number), for the SR's request."""
    requests: list[Dataset] = []
    for source in film_sources(s.results):
        if source.get("accession_number") and source.get("study_uid") and not any(
                r.AccessionNumber == source["accession_number"] for r in requests):
            request = Dataset()
            request.StudyInstanceUID = source["study_uid"]
            request.AccessionNumber = source["accession_number"]
            request.ReferencedStudySequence = []
            request.RequestedProcedureDescription = None
            request.RequestedProcedureCodeSequence = []
            request.RequestedProcedureID = None
            request.PlacerOrderNumberImagingServiceRequest = None
            request.FillerOrderNumberImagingServiceRequest = None
            requests.append(request)
    return requests or None


def coding_schemes() -> list[Dataset]:
    """The Coding Scheme Identification Sequence: declares the kiosk's private scheme."""
    scheme = Dataset()
    scheme.CodingSchemeDesignator = LOCAL
    scheme.CodingSchemeName = "Screening kiosk verdicts, findings and probabilities"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    return [scheme]


def structured_report(delivery: Delivery, evidence: list[Dataset], config: Config) -> Dataset:
    """The TID 1500 measurement report of the screening, preliminary or verified final."""
    s = delivery.screening
    model: Any = s.results[0].get("model") or {}
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=dicom_uid(str(model.get("id")), str(model.get("version"))),
            name=str(model.get("id", "kiosk")), model_name=str(model.get("version", ""))))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=_code("ai-screening", "AI screening"),
        imaging_measurements=[_image_group(s, i) for i in range(len(s.results))]
        + (_sign_off_group(s) if delivery.final else []),
    )
    final = delivery.final and s.sign_off is not None
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*evidence, *film_evidence(s)], content=report,
        requested_procedures=requested_procedures(s), series_instance_uid=dicom_uid(s.uid, "sr-series"),
        series_number=3, sop_instance_uid=sr_uid(delivery), instance_number=2 if final else 1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=final, is_verified=final,
        institution_name=config.clinic_name[:64],
        verifying_observer_name=names.to_dicom(names.from_text(s.sign_off.clinician))
        if final and s.sign_off else None,
        verifying_organization=config.clinic_name[:64] if final else None,
    )
    sr.SeriesDescription = "AI screening report" + (" (signed off)" if final else "")
    sr.CodingSchemeIdentificationSequence = coding_schemes()
    return sr


def _first_of_each_image(s: Screening) -> list[int]:
    """One result position per image (several tasks may have read the same film)."""
    first: dict[str, int] = {}
    for position, sha in enumerate(s.image_shas):
        first.setdefault(sha, position)
    return sorted(first.values())


def datasets(delivery: Delivery, config: Config) -> list[Dataset]:
    """Everything one outbox item sends to the PACS, SR last (its evidence goes first)."""
    s = delivery.screening
    evidence = [secondary_capture(delivery, i, sha, "overlay")
                for i, sha in enumerate(s.heatmap_shas) if sha]
    if config.send_originals and not delivery.final:
        evidence += [original(delivery, i) for i in _first_of_each_image(s)]
    if not evidence:
        evidence = [secondary_capture(delivery, i, s.image_shas[i], "original")
                    for i in _first_of_each_image(s)]
    sr = structured_report(delivery, evidence, config)
    return (evidence if not delivery.final else []) + [sr]
