"""FHIR R4 destination: one transaction Bundle per outbox item, idempotent by identifiers.

Patient and Device are conditional creates (``ifNoneExist`` on their identifier: the EHR may
know the patient already); ImagingStudy, the Observations and the DiagnosticReport have
client-assigned ids derived from the screening and are PUT (with a Provenance naming the
algorithm, and the clinician once signed off), so a resend rewrites the same
resources and never adds one (the final report after sign-off updates them in place). The
screened films' own studies are ImagingStudy resources known by their Study Instance UID
(conditional creates: the EHR may hold them already), which the DiagnosticReport names beside
the kiosk's; the order behind a film (its accession number) is the report's ``basedOn``. Every
resource is validated here with ``fhir.resources.R4B`` before it leaves, because a FHIR
server may validate nothing.

The Bundle is sent in stages (:func:`stages`): the conditional creates first, then the updates
with literal references to what the server filed, because a server may refuse a transaction
that mixes conditional creates with many entries (Medplum: more than 8).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from kiosk.config import Config
from kiosk.errors import SyncError
from kiosk.names import NameParts, PersonName
from kiosk.result import CodingDict, FindingResult, Result, SourceRef, film_sources, model_words
from kiosk.store import Screening
from kiosk.sync import measure_report
from kiosk.sync.base import (
    Delivery,
    ReportDelivery,
    http_auth,
    refused,
    stable_uuid,
    tls_verify,
    unreachable,
)
from kiosk.sync.dicom_objects import accession_number, sc_uids, study_uid
from kiosk.sync.fhir_validate import validate
from kiosk.tasks import codes_of

SYSTEM = "urn:kiosk"
AI_ASSERTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
               "code": "AIAST", "display": "artificial intelligence asserted"}
EYE = {"L": ("8966001", "Left eye structure"), "R": ("18944008", "Right eye structure")}
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
GENDER = {"female": "female", "f": "female", "male": "male", "m": "male", "other": "other"}
#: How a name is written (ISO 21090 EN representation): ideographic, phonetic (syllabic).
REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
ACCESSION = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                         "code": "ACSN", "display": "Accession ID"}]}
DICOM_UID = "urn:dicom:uid"


def _ref(key: str) -> str:
    return f"urn:uuid:{stable_uuid(key)}"


def _identifier(kind: str, value: str) -> dict:
    return {"system": f"{SYSTEM}:{kind}", "value": value}


def _verdict(verdict: str) -> dict[str, Any]:
    return {"coding": [{"system": f"{SYSTEM}:verdict", "code": verdict,
                        "display": verdict.replace("_", " ")}], "text": verdict.replace("_", " ")}


def _name_parts(parts: NameParts) -> dict[str, Any]:
    name: dict[str, Any] = {}
    if parts.family:
        name["family"] = parts.family
    if parts.given:
        name["given"] = list(parts.given)
    if parts.prefix:
        name["prefix"] = [parts.prefix]
    if parts.suffix:
        name["suffix"] = [parts.suffix]
    return name


def human_names(person: PersonName) -> list[dict[str, Any]]:
    """HumanName(s): the parts as known, never guessed from text; ideographic and phonetic
    forms as further names marked with their representation (IDE, SYL)."""
    name: dict[str, Any] = {"use": "official", "text": person.display, **_name_parts(person.parts)}
    if "family" not in name and "given" not in name:
        # the parts were never known (a name registered as text): say so (us-core-6)
        name["extension"] = [{"url": DATA_ABSENT, "valueCode": "unknown"}]
    names = [name]
    for parts, code in ((person.ideographic, "IDE"), (person.phonetic, "SYL")):
        if parts.family or parts.given:
            names.append({"extension": [{"url": REPRESENTATION, "valueCode": code}],
                          "use": "official", **_name_parts(parts)})
    return names


def patient(s: Screening, config: Config) -> dict:
    """The Patient, known by the clinic's identifier."""
    p = s.patient
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": config.patient_id_system, "value": p.identifier}],
        "name": human_names(p.person_name), "gender": GENDER.get((p.sex or "").lower(), "unknown"),
    }
    if p.birth_date:
        resource["birthDate"] = p.birth_date
    if any(e.get("url") == DATA_ABSENT for n in resource["name"] for e in n.get("extension", [])):
        # US Core 5.0.1's us-core-6 reads the data-absent-reason on the Patient itself
        # (``extension.where(...)`` in the Patient's context); later versions read the name's
        resource["extension"] = [{"url": DATA_ABSENT, "valueCode": "unknown"}]
    return resource


def device(result: Result) -> dict:
    """The Device: the screening algorithm's name, version and the patients it was trained for."""
    model: Any = result.get("model") or {}
    names = [{"name": str(model.get("id", "unknown")), "type": "model-name"}]
    if model.get("title"):
        names.append({"name": str(model["title"]), "type": "user-friendly-name"})
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "identifier": [_identifier("algorithm", f"{model.get('id')}@{model.get('version')}")],
        "deviceName": names,
        "version": [{"value": str(model.get("version", "unknown"))}],
        "type": {"text": "AI screening algorithm"},
    }
    if model.get("sha256"):  # the exact bundle: its manifest's sha256 (docs/change-control.md)
        resource["version"].append({"type": {"text": "bundle manifest sha256"},
                                    "value": str(model["sha256"])})
    if model.get("population"):
        resource["note"] = [{"text": model_words(result)}]
    return resource


def _study_identifiers(uid: str, accession: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [{"system": DICOM_UID, "value": f"urn:oid:{uid}"}]
    if accession:
        found.append({"type": ACCESSION, "value": accession})
    return found


def _sop_class(uid: str) -> dict[str, str]:
    return {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{uid}"}


def _modality(code: str) -> dict[str, str]:
    return {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": code}


def imaging_study(s: Screening, patient_ref: str, config: Config | None = None) -> dict:
    """The ImagingStudy the PACS holds for this screening (Secondary Captures, same UIDs); in
    the film's own study (KIOSK_SR_IN_FILM_STUDY) it lists the film's series too."""
    uid = study_uid(s, config)
    instances = [{"uid": sc_uids(s, i, "overlay")[1], "number": i + 1,
                  "sopClass": _sop_class("1.2.840.10008.5.1.4.1.1.7")}
                 for i, sha in enumerate(s.heatmap_shas) if sha]
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy", "status": "available",
        "identifier": _study_identifiers(uid, accession_number(s, config)),
        "subject": {"reference": patient_ref}, "started": s.created.isoformat(),
    }
    series = [{"uid": sc_uids(s, 0, "overlay")[0], "number": 2, "modality": _modality("OT"),
               "instance": instances}] if instances else []
    series += _film_series([f for f in film_sources(s.results) if f.get("study_uid") == uid])
    if series:
        study["series"] = series
    return study


def _film_series(films: list[SourceRef]) -> list[dict[str, Any]]:
    """The screened films' series and instances, as their study holds them."""
    series: dict[str, dict[str, Any]] = {}
    for film in films:
        if not (film.get("series_uid") and film.get("sop_class_uid")):
            continue
        entry = series.setdefault(film["series_uid"], {
            "uid": film["series_uid"], "modality": _modality(film.get("modality") or "OT"),
            "instance": []})
        entry["instance"].append({"uid": film["sop_uid"],
                                  "sopClass": _sop_class(film["sop_class_uid"])})
    return list(series.values())


def film_studies(s: Screening, patient_ref: str, config: Config | None = None) -> list[dict]:
    """The screened films' own studies (other than the kiosk's), known by their UIDs."""
    by_study: dict[str, list[SourceRef]] = {}
    for film in film_sources(s.results):
        if film.get("study_uid") and film["study_uid"] != study_uid(s, config):
            by_study.setdefault(film["study_uid"], []).append(film)
    studies = []
    for uid, films in by_study.items():
        study: dict[str, Any] = {
            "resourceType": "ImagingStudy", "status": "available",
            "identifier": _study_identifiers(uid, films[0].get("accession_number", "")),
            "subject": {"reference": patient_ref}, "series": _film_series(films)}
        if orders := based_on(films):
            study["basedOn"] = orders
        if not study["series"]:
            del study["series"]
        studies.append(study)
    return studies


def based_on(films: list[SourceRef]) -> list[dict[str, Any]]:
    """The orders behind the films, by accession number (only where a film names one)."""
    accessions = sorted({f["accession_number"] for f in films if f.get("accession_number")})
    return [{"type": "ServiceRequest", "identifier": {"type": ACCESSION, "value": a}}
            for a in accessions]


def observation(s: Screening, position: int, status: str, refs: dict[str, str]) -> dict:
    """One Observation per image (eye or film): the verdict, with a component per finding."""
    result = s.results[position]
    side = str(result.get("laterality") or "")
    task = str(result.get("task"))
    codes = codes_of(result)
    standard = [dict(codes["result"])] if codes["result"] else []
    code: dict[str, Any] = {"coding": [*standard, {"system": f"{SYSTEM}:task", "code": task}],
                            "text": str(result.get("title") or task)}
    resource: dict[str, Any] = {
        "resourceType": "Observation", "status": status,
        "identifier": [_identifier("observation", f"{s.uid}-{position}")],
        "meta": {"security": [AI_ASSERTED]},
        "category": [{"coding": [{"code": "imaging", "system":
                     "http://terminology.hl7.org/CodeSystem/observation-category"}]}],
        "code": code, "subject": {"reference": refs["patient"]},
        "effectiveDateTime": s.created.isoformat(), "valueCodeableConcept":
        _verdict(str(result.get("verdict"))), "device": {"reference": refs[f"device{position}"]},
        "method": {"text": "artificial intelligence"},
        "component": [_component(f, codes["findings"].get(f["label"]))
                      for f in result.get("findings") or []],
    }
    if side in EYE:
        resource["bodySite"] = {"coding": [{"system": "http://snomed.info/sct",
                                            "code": EYE[side][0], "display": EYE[side][1]}]}
    if not resource["component"]:
        del resource["component"]
    return resource


def _component(finding: FindingResult, standard: CodingDict | None) -> dict:
    label = str(finding.get("label"))
    own = {"system": f"{SYSTEM}:finding", "code": label, "display": str(finding.get("display") or label)}
    return {
        "code": {"coding": [*([dict(standard)] if standard else []), own]},
        "valueQuantity": {"value": round(float(finding.get("probability", 0.0)), 6),
                          "unit": "probability", "system": "http://unitsofmeasure.org",
                          "code": "1"},
        "interpretation": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": "POS" if finding.get("positive") else "NEG"}]}],
    }


def report(s: Screening, final: bool, refs: dict[str, str], observations: list[str]) -> dict:
    """The DiagnosticReport: preliminary from the kiosk, final after the clinician's sign-off."""
    verdict = s.sign_off.verdict if final and s.sign_off else s.verdict
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "status": "final" if final else "preliminary",
        "identifier": [_identifier("screening", s.uid)],
        "code": {"coding": [{"system": f"{SYSTEM}:procedure", "code": "ai-screening"}],
                 "text": "AI screening: " + ", ".join(sorted({str(r.get("task"))
                                                              for r in s.results}))},
        "subject": {"reference": refs["patient"]}, "effectiveDateTime": s.created.isoformat(),
        "issued": (s.sign_off.signed if final and s.sign_off else s.created).isoformat(),
        "result": [{"reference": ref} for ref in observations],
        "imagingStudy": [{"reference": ref} for name, ref in refs.items()
                         if name.startswith("study")],
        "conclusion": f"Overall: {verdict.replace('_', ' ')}",
        "conclusionCode": [_verdict(verdict)],
    }
    if orders := based_on(film_sources(s.results)):
        resource["basedOn"] = orders
    if final and s.sign_off:
        o = s.sign_off
        resource["resultsInterpreter"] = [{"display": o.clinician}]
        resource["conclusion"] += f" ({o.decision} by {o.clinician}) {o.note}".rstrip()
    else:
        resource["meta"] = {"security": [AI_ASSERTED]}
    return resource


def provenance(s: Screening, targets: list[str], refs: dict[str, str]) -> dict:
    """Who asserted the results: the algorithm (the Device), and the clinician once signed."""
    agents: list[dict[str, Any]] = [{
        "type": {"coding": [{"system": PARTICIPANT, "code": "author"}]},
        "who": {"reference": refs["device0"]}}]
    if s.sign_off is not None:
        agents.append({"type": {"coding": [{"system": PARTICIPANT, "code": "verifier"}]},
                       "who": {"display": s.sign_off.clinician}})
    return {
        "resourceType": "Provenance", "target": [{"reference": t} for t in targets],
        "recorded": (s.sign_off.signed if s.sign_off else s.created).isoformat(),
        "agent": agents, "meta": {"security": [AI_ASSERTED]},
    }


def _search(resource: dict) -> str:
    ident = resource["identifier"][0]
    return "identifier=" + quote(f"{ident['system']}|{ident['value']}", safe=":|")


def resource_id(s: Screening, part: str) -> str:
    """The client-assigned id of one of the screening's resources (the same on every kiosk)."""
    return str(stable_uuid(s.uid, part))


def _create(ref: str, resource: dict) -> dict:
    """A conditional create: found by identifier, created only when absent."""
    kind = resource["resourceType"]
    return {"fullUrl": ref, "resource": resource,
            "request": {"method": "POST", "url": kind, "ifNoneExist": _search(resource)}}


def _put(resource: dict) -> dict:
    """An update of a client-assigned id: the same resource however often it is sent."""
    kind, rid = resource["resourceType"], resource["id"]
    return {"fullUrl": f"urn:uuid:{rid}", "resource": resource,
            "request": {"method": "PUT", "url": f"{kind}/{rid}"}}


def bundle(delivery: Delivery, config: Config) -> dict:
    """The transaction Bundle for one outbox item, validated resource by resource.

    It always carries the screening's current state (final once signed off), so a late resend
    of the preliminary item can never turn a final report back into a preliminary one.
    """
    s = delivery.screening
    final = s.sign_off is not None
    key = delivery.item.idempotency_key
    refs = {"patient": _ref(key + "/patient"),
            "study": f"ImagingStudy/{resource_id(s, 'study')}"}
    entries = [_create(refs["patient"], patient(s, config))]
    models: dict[str, str] = {}
    for position, result in enumerate(s.results):
        model: Any = result.get("model") or {}
        name = f"{model.get('id')}@{model.get('version')}"
        if name not in models:
            models[name] = _ref(f"{key}/device/{name}")
            entries.append(_create(models[name], device(result)))
        refs[f"device{position}"] = models[name]
    entries.append(_put({**imaging_study(s, refs["patient"], config),
                         "id": resource_id(s, "study")}))
    for number, study in enumerate(film_studies(s, refs["patient"], config)):
        refs[f"study-film{number}"] = _ref(f"{key}/film-study/{study['identifier'][0]['value']}")
        entries.append(_create(refs[f"study-film{number}"], study))
    status = "final" if final else "preliminary"
    observations = [resource_id(s, f"observation-{i}") for i in range(len(s.results))]
    entries += [_put({**observation(s, i, status, refs), "id": rid})
                for i, rid in enumerate(observations)]
    report_ref = f"DiagnosticReport/{resource_id(s, 'report')}"
    entries.append(_put({**report(s, final, refs, [f"Observation/{o}" for o in observations]),
                         "id": resource_id(s, "report")}))
    targets = [report_ref, *(f"Observation/{o}" for o in observations)]
    entries.append(_put({**provenance(s, targets, refs), "id": resource_id(s, "provenance")}))
    for entry in entries:
        validate(entry["resource"])
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    validate(transaction)
    return transaction


class FhirDestination:
    """POSTs transaction Bundles to a FHIR R4 server."""

    name = "fhir"

    def __init__(self, config: Config):
        self.config = config
        self.url = config.fhir_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(http_auth("fhir_auth", config.fhir_auth))
        self.session.headers["Accept"] = "application/fhir+json"
        self.session.verify = tls_verify(config)

    def send(self, delivery: Delivery) -> None:
        """Send the item's Bundle in stages and check every entry was accepted."""
        self._send(bundle(delivery, self.config))

    def send_report(self, delivery: ReportDelivery) -> None:
        """Send a fleet report (the kiosk's Device and a MeasureReport, conditional creates)."""
        body = measure_report.transaction(delivery.report, delivery.item.idempotency_key,
                                          self.config)
        for entry in body["entry"]:
            validate(entry["resource"])
        validate(body)
        self._send(body)

    def _send(self, body: dict[str, Any]) -> None:
        """POST one validated transaction as the stages of :func:`stages`, each stage's
        ``urn:uuid`` references to resources filed by an earlier stage made literal."""
        filed: dict[str, str] = {}
        for stage in stages(body["entry"]):
            entries = [_literal(entry, filed) for entry in stage]
            answer = self._post({"resourceType": "Bundle", "type": "transaction",
                                 "entry": entries})
            filed |= _filed_as(entries, answer)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.session.post(self.url + "/", json=body,
                                         timeout=self.config.sync_timeout_s,
                                         headers={"Content-Type": "application/fhir+json"})
        except requests.RequestException as exc:
            raise unreachable("fhir", str(exc)) from exc
        check_response(response)
        answer: dict[str, Any] = response.json()
        return answer

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()


#: The most entries a transaction with a conditional create may hold on the servers met: a
#: conditional create needs strict (serializable) isolation, and Medplum refuses such a
#: transaction over 8 entries ("requires strict isolation but has too many entries").
CONDITIONAL_PER_TRANSACTION = 8
#: The most updates in one transaction (Medplum's limit is 50).
UPDATES_PER_TRANSACTION = 50


def stages(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The transaction's entries as the transactions that are sent, in order: first the
    conditional creates (Patient, Devices, the films' studies), at most
    :data:`CONDITIONAL_PER_TRANSACTION` at a time, then the updates of client-assigned ids
    (the kiosk's study, the Observations, the report, its Provenance), at most
    :data:`UPDATES_PER_TRANSACTION` at a time, the report after its Observations.

    Every stage is idempotent (found by identifier, or written to the same id), so a resend
    after a failure between stages files nothing twice; a failure between stages leaves the
    patient and the devices filed without the report until the resend completes it.
    """
    creates = [e for e in entries if e["request"].get("ifNoneExist")]
    updates = [e for e in entries if not e["request"].get("ifNoneExist")]
    return ([creates[i:i + CONDITIONAL_PER_TRANSACTION]
             for i in range(0, len(creates), CONDITIONAL_PER_TRANSACTION)]
            + [updates[i:i + UPDATES_PER_TRANSACTION]
               for i in range(0, len(updates), UPDATES_PER_TRANSACTION)])


def _literal(entry: dict[str, Any], filed: dict[str, str]) -> dict[str, Any]:
    """The entry with every reference to an already filed resource made literal."""
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (filed.get(v, v) if k == "reference" and isinstance(v, str) else walk(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value
    return {**entry, "resource": walk(entry["resource"])}


def _filed_as(entries: list[dict[str, Any]], answer: dict[str, Any]) -> dict[str, str]:
    """Each sent entry's fullUrl -> the literal reference the server filed it under (from the
    answer's ``location``, else the returned resource's id)."""
    replies = answer.get("entry", [])
    if len(replies) != len(entries):
        raise refused("fhir", f"the answer has {len(replies)} entries for {len(entries)} sent")
    filed = {}
    for entry, reply in zip(entries, replies, strict=True):
        kind = entry["resource"]["resourceType"]
        location = str(reply.get("response", {}).get("location") or "")
        parts = location.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == kind and parts[-1]:
            filed[entry["fullUrl"]] = f"{kind}/{parts[-1]}"
        elif (reply.get("resource") or {}).get("id"):
            filed[entry["fullUrl"]] = f"{kind}/{reply['resource']['id']}"
        else:
            raise refused("fhir", f"the server did not say where it filed the {kind}")
    return filed


def check_response(response: requests.Response) -> None:
    """Return when the server accepted the whole transaction; SyncError otherwise."""
    status = response.status_code
    text = f"HTTP {status}: {_outcome_text(response)}"
    if status in (401, 403):
        raise SyncError(f"fhir refused our credentials ({text}); check KIOSK_FHIR_AUTH",
                        code="auth", retryable=True)
    if status in (408, 429) or status >= 500:
        raise SyncError(f"fhir failed for now ({text})", retryable=True)
    if status >= 400:
        raise refused("fhir", text)
    entries = response.json().get("entry", [])
    bad = [e.get("response", {}).get("status", "?") for e in entries
           if not str(e.get("response", {}).get("status", "")).startswith("2")]
    if bad:
        raise refused("fhir", f"some entries were not accepted: {', '.join(bad)}")


def _outcome_text(response: requests.Response) -> str:
    """The issue codes and element paths of an OperationOutcome, never its free text (servers
    quote the resource there, patient's name included)."""
    try:
        issues = response.json().get("issue", [])
    except (ValueError, AttributeError):
        return "no OperationOutcome"
    return "; ".join(f"{i.get('code', '?')} at {', '.join(i.get('expression') or ['?'])}"
                     for i in issues if isinstance(i, dict))[:500] or "no issue given"
