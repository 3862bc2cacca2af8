"""A fleet report as a FHIR R4 ``MeasureReport`` (issue 16.5): figures only, about a kiosk.

One MeasureReport per kiosk and period: status ``complete``, type ``summary``, ``measure`` the
canonical URL KIOSK_FLEET_MEASURE_URL (what a central query searches by), ``subject`` the
kiosk's Device (never a patient), ``reporter`` the clinic's Location (by identifier), the
period's UTC days as ``period``. Its ``identifier`` is derived from the outbox item's
idempotency key and it is sent as a conditional create (``ifNoneExist``), so a resend after a
crash finds the report already there and adds none: a central sum counts each kiosk's period
once. The figures come from kiosk/lifecycle/fleet.py with small cells already left out; a left
out count is a population without ``count``, marked with the data-absent-reason ``masked``.

Groups (``group.code`` carries a ``urn:kiosk:fleet-figure`` coding and the task's):
- ``screenings``: images read in the period; populations initial-population (all read),
  denominator (gradable), numerator (referable); measureScore the referable share; stratifiers
  ``model-version`` (id@version, with the bundle's sha256), ``verdict`` and ``score`` (per model
  version: verdicts, and the histogram of scores in bins of 0.1).
- ``drift``: per task, the drift statistic over its newest images (a running figure);
  measureScore the statistic, with its threshold and alarm as extensions; stratifier
  ``quantity``, one stratum per compared quantity with its own PSI.
- ``surveillance``: per model version and operating point, the running agreement, sensitivity,
  specificity and PPV (stratifier ``estimate``: numerator, denominator, measureScore, and the
  95% interval as extensions) and the alarm.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from kiosk.config import Config
from kiosk.store import FleetReport
from kiosk.sync.base import stable_uuid

POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
UCUM = "http://unitsofmeasure.org"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
#: The kiosk's own code systems and extensions (what each means: docs/fleet.md).
FIGURE = "urn:kiosk:fleet-figure"
TASK = "urn:kiosk:task"
MODEL = "urn:kiosk:model"
MODEL_SHA256 = "urn:kiosk:model-sha256"
REPORT_ID = "urn:kiosk:fleet-report"
KIOSK_ID = "urn:kiosk:kiosk"
EXTENSION = "https://screening-kiosk.example/fhir/StructureDefinition/fleet-"


def _concept(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": system, "code": code}]}
    if text:
        concept["text"] = text
    return concept


def _population(code: str, count: int | None, system: str = POPULATION) -> dict[str, Any]:
    """A population; a count left out (a small cell) is marked masked, not sent."""
    population: dict[str, Any] = {"code": _concept(system, code)}
    if count is None:
        population["extension"] = [{"url": DATA_ABSENT, "valueCode": "masked"}]
    else:
        population["count"] = int(count)
    return population


def _score(value: float | None) -> dict[str, Any]:
    return {} if value is None else {
        "measureScore": {"value": float(value), "unit": "1", "system": UCUM, "code": "1"}}


def _extension(name: str, value: Any) -> dict[str, Any]:
    kind = "valueBoolean" if isinstance(value, bool) else "valueDecimal"
    return {"url": EXTENSION + name, kind: value}


def _model(entry: dict[str, Any]) -> dict[str, Any]:
    """A model version as a stratum value: id@version, and the bundle's sha256."""
    return {"coding": [{"system": MODEL, "code": str(entry["model"]),
                        "display": f"{entry['id']} {entry['version']}"},
                       {"system": MODEL_SHA256, "code": str(entry["sha256"])}],
            "text": str(entry["model"])}


def _component(code: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"code": _concept(FIGURE, code), "value": value}


def _counts(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [_population("initial-population", entry["n"]),
            _population("denominator", entry["gradable"]),
            _population("numerator", entry["verdicts"]["referable"])]


def screenings_group(task: dict[str, Any]) -> dict[str, Any]:
    """Images read in the period by one task, stratified by model version, verdict and score."""
    models = task["models"]
    verdicts = [{"component": [_component("model-version", _model(m)),
                               _component("verdict", _concept(FIGURE, verdict))],
                 "population": [_population("initial-population", count)]}
                for m in models for verdict, count in m["verdicts"].items()]
    scores = [{"component": [_component("model-version", _model(m)),
                             _component("score-bin", _concept(
                                 FIGURE, f"{m['scores']['edges'][i]:.1f}-"
                                 f"{m['scores']['edges'][i + 1]:.1f}"))],
               "population": [_population("initial-population", count)]}
              for m in models for i, count in enumerate(m["scores"]["counts"])]
    return {
        "code": {"coding": [{"system": FIGURE, "code": "screenings"},
                            {"system": TASK, "code": task["task"]}],
                 "text": f"{task['task']}: images read in the period"},
        "population": _counts(task), **_score(task["referable_share"]),
        "stratifier": [
            {"code": [_concept(FIGURE, "model-version")],
             "stratum": [{"value": _model(m), "population": _counts(m),
                          **_score(m["referable_share"])} for m in models]},
            {"code": [_concept(FIGURE, "verdict")], "stratum": verdicts},
            {"code": [_concept(FIGURE, "score")], "stratum": scores},
        ],
    }


def drift_group(row: dict[str, Any]) -> dict[str, Any]:
    """One task's drift statistic over its newest images, with threshold and alarm."""
    extensions = [_extension(name, row[name]) for name in ("threshold", "alarm")
                  if row.get(name) is not None]
    group: dict[str, Any] = {
        "code": {"coding": [{"system": FIGURE, "code": "drift"},
                            {"system": TASK, "code": str(row["task"])},
                            {"system": MODEL, "code": f"{row['task']}@{row['model_version']}"}],
                 "text": f"{row['task']}: {row['statistic']} of the newest images (running)"},
        "population": [_population("initial-population", row["n"])], **_score(row["value"]),
    }
    if extensions:
        group["extension"] = extensions
    if row["quantities"]:
        group["stratifier"] = [{"code": [_concept(FIGURE, "quantity")], "stratum": [
            {"value": _concept(FIGURE, q["name"]), **_score(q["psi"])}
            for q in row["quantities"]]}]
    return group


def surveillance_group(row: dict[str, Any]) -> dict[str, Any]:
    """One model version's running agreement, sensitivity, specificity and PPV, and its alarm."""
    model = {"coding": [{"system": MODEL, "code": f"{row['task']}@{row['model_version']}"},
                        {"system": MODEL_SHA256, "code": str(row["model_sha256"])}]}
    strata = []
    for name in ("agreement", "sensitivity", "specificity", "ppv"):
        estimate = row.get(name)
        stratum: dict[str, Any] = {"value": _concept(FIGURE, name)}
        if estimate is None:
            stratum["population"] = [_population("denominator", None)]
        else:
            stratum["population"] = [
                _population("denominator", estimate["n"]),
                _population("numerator", round(estimate["value"] * estimate["n"]))]
            stratum.update(_score(estimate["value"]))
            stratum["extension"] = [_extension("ci-low", estimate["ci"][0]),
                                    _extension("ci-high", estimate["ci"][1])]
        strata.append(stratum)
    return {
        "code": {"coding": [{"system": FIGURE, "code": "surveillance"},
                            {"system": TASK, "code": str(row["task"])}, *model["coding"]],
                 "text": f"{row['task']}: agreement with clinicians and outcomes (running)"
                 + (f", operating point {row['operating_point']}"
                    if row.get("operating_point") else "")},
        "extension": [_extension("alarm", bool(row.get("alarm")))],
        "population": [_population(key, row[key], f"{FIGURE}:count")
                       for key in ("n_signed", "n_outcomes")],
        "stratifier": [{"code": [_concept(FIGURE, "estimate")], "stratum": strata}],
    }


def report_identifier(key: str) -> dict[str, str]:
    """The MeasureReport's identifier: derived from the outbox item's idempotency key."""
    return {"system": REPORT_ID, "value": str(stable_uuid(key))}


def kiosk_device(kiosk: str) -> dict[str, Any]:
    """The kiosk itself as a Device: the report's subject."""
    return {"resourceType": "Device", "identifier": [{"system": KIOSK_ID, "value": kiosk}],
            "deviceName": [{"name": f"screening kiosk {kiosk}", "type": "user-friendly-name"}],
            "type": {"text": "AI screening kiosk"}}


def measure_report(report: FleetReport, key: str, config: Config,
                   subject: str) -> dict[str, Any]:
    """The MeasureReport of one fleet report."""
    figures = report.figures
    groups = [*(screenings_group(t) for t in figures["tasks"]),
              *(drift_group(r) for r in figures["drift"]),
              *(surveillance_group(r) for r in figures["surveillance"])]
    resource: dict[str, Any] = {
        "resourceType": "MeasureReport", "identifier": [report_identifier(key)],
        "status": "complete", "type": "summary", "measure": config.fleet_measure_url,
        "subject": {"reference": subject}, "date": report.created,
        "reporter": {"type": "Location", "display": config.clinic_name,
                     "identifier": {"system": KIOSK_ID, "value": report.kiosk}},
        "period": {"start": report.period_start, "end": report.period_end},
    }
    if groups:
        resource["group"] = groups
    return resource


def _if_none_exist(identifier: dict[str, str]) -> str:
    return "identifier=" + quote(f"{identifier['system']}|{identifier['value']}", safe=":|")


def transaction(report: FleetReport, key: str, config: Config) -> dict[str, Any]:
    """The Bundle sent: the kiosk's Device and the MeasureReport, both conditional creates."""
    device_ref = f"urn:uuid:{stable_uuid(key, 'device')}"
    resource = measure_report(report, key, config, device_ref)
    device = kiosk_device(report.kiosk)
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": device_ref, "resource": device,
         "request": {"method": "POST", "url": "Device",
                     "ifNoneExist": _if_none_exist(device["identifier"][0])}},
        {"fullUrl": f"urn:uuid:{stable_uuid(key, 'measure-report')}", "resource": resource,
         "request": {"method": "POST", "url": "MeasureReport",
                     "ifNoneExist": _if_none_exist(resource["identifier"][0])}},
    ]}
