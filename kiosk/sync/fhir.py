"""FHIR R4 destination: one transaction Bundle per outbox item, idempotent by identifiers.

Patient and Device are conditional creates (``ifNoneExist`` on their identifier: the EHR may
know the patient already); ImagingStudy, the Observations and the DiagnosticReport have
client-assigned ids derived from the screening and are PUT (with a Provenance naming the
algorithm, and the clinician once signed off), so a resend rewrites the same
resources and never adds one (the final report after sign-off updates them in place). Every
resource is validated here with ``fhir.resources.R4B`` before it leaves, because a FHIR
server may validate nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from kiosk.config import Config
from kiosk.errors import SyncError
from kiosk.result import CodingDict, FindingResult, Result, model_words
from kiosk.store import Screening
from kiosk.sync.base import Delivery, http_auth, refused, stable_uuid, tls_verify, unreachable
from kiosk.sync.dicom_objects import sc_uids, study_uid
from kiosk.sync.fhir_validate import validate
from kiosk.tasks import codes_of

SYSTEM = "urn:kiosk"
AI_ASSERTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
               "code": "AIAST", "display": "artificial intelligence asserted"}
EYE = {"L": ("8966001", "Left eye structure"), "R": ("18944008", "Right eye structure")}
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
GENDER = {"female": "female", "f": "female", "male": "male", "m": "male", "other": "other"}


def _ref(key: str) -> str:
    return f"urn:uuid:{stable_uuid(key)}"


def _identifier(kind: str, value: str) -> dict:
    return {"system": f"{SYSTEM}:{kind}", "value": value}


def _verdict(verdict: str) -> dict[str, Any]:
    return {"coding": [{"system": f"{SYSTEM}:verdict", "code": verdict,
                        "display": verdict.replace("_", " ")}], "text": verdict.replace("_", " ")}


def patient(s: Screening, config: Config) -> dict:
    """The Patient, known by the clinic's identifier."""
    p = s.patient
    parts = p.name.split()
    name: dict[str, Any] = {"text": p.name}
    if len(parts) > 1:
        name.update(family=parts[-1], given=parts[:-1])
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": config.patient_id_system, "value": p.identifier}],
        "name": [name], "gender": GENDER.get((p.sex or "").lower(), "unknown"),
    }
    if p.birth_date:
        resource["birthDate"] = p.birth_date
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
    if model.get("population"):
        resource["note"] = [{"text": model_words(result)}]
    return resource


def imaging_study(s: Screening, patient_ref: str) -> dict:
    """The ImagingStudy the PACS holds for this screening (Secondary Captures, same UIDs)."""
    instances = [{"uid": sc_uids(s, i, "overlay")[1], "number": i + 1,
                  "sopClass": {"system": "urn:ietf:rfc:3986",
                               "code": "urn:oid:1.2.840.10008.5.1.4.1.1.7"}}
                 for i, sha in enumerate(s.heatmap_shas) if sha]
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy", "status": "available",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid(s)}"}],
        "subject": {"reference": patient_ref}, "started": s.created.isoformat(),
    }
    if instances:
        study["series"] = [{
            "uid": sc_uids(s, 0, "overlay")[0], "number": 2,
            "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "OT"},
            "instance": instances}]
    return study


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
        "imagingStudy": [{"reference": refs["study"]}],
        "conclusion": f"Overall: {verdict.replace('_', ' ')}",
        "conclusionCode": [_verdict(verdict)],
    }
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
    entries.append(_put({**imaging_study(s, refs["patient"]), "id": resource_id(s, "study")}))
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
        """POST the item's Bundle and check every entry was accepted."""
        body = bundle(delivery, self.config)
        try:
            response = self.session.post(self.url + "/", json=body,
                                         timeout=self.config.sync_timeout_s,
                                         headers={"Content-Type": "application/fhir+json"})
        except requests.RequestException as exc:
            raise unreachable("fhir", str(exc)) from exc
        check_response(response)

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()


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
