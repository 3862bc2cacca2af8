"""Validated by something other than what writes it (issue 18, point 8).

The kiosk builds its DICOM objects with highdicom and its FHIR resources as dicts checked by
fhir.resources. Here they are checked by other implementations:
- SR and Secondary Captures: dciodvfy (dicom3tools, David Clunie's IOD checker) and, for the SR,
  dcmtk's dsrdump (which refuses an invalid SR content tree).
- FHIR: Medplum's validator (@medplum/core, the test FHIR server's npm packages), which also
  evaluates the FHIRPath invariants, for base R4 and, for Patient, US Core 5.0.1. Neither the
  test FHIR server (no ``$validate``) nor the official HL7 validator (its jar cannot be
  downloaded here) is available.
Each check has a control that shows it can fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from store_helpers import screen

from kiosk.config import Config
from kiosk.names import PersonName, from_dicom, from_parts
from kiosk.store import Store
from kiosk.sync.base import Delivery
from kiosk.sync.dicom_objects import datasets
from kiosk.sync.fhir import bundle

TESTS = Path(__file__).resolve().parent
FHIR_MODULES = TESTS / "peers" / "fhir" / "node_modules"
US_CORE_PATIENT = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/setup.sh: dcmtk, dicom3tools)")
    return found


def _deliveries(config: Config, name: PersonName | str | None = None, **settings: Any
                ) -> list[Delivery]:
    """The preliminary and the signed-off final item of one two-eye screening."""
    store = Store.open(replace(config, min_free_disk_mb=1, **settings))
    screening = screen(store, 901, identifier="VAL-901")
    store.upsert_patient("VAL-901", name or from_parts("van der Berg", ["Anna", "Maria"]),
                         "1960-01-31", "female", actor="nurse")
    store.sign_off(screening.id, clinician="Dr Ama Mensah", decision="confirm", note="agreed")
    return [Delivery(item, store.get_screening(item.screening_id), store)
            for item in store.due_items(10)]


def _dciodvfy(path: Path) -> list[str]:
    done = subprocess.run([_tool("dciodvfy"), str(path)], capture_output=True, text=True,
                          timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines()
            if line.startswith("Error")]


def _save(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_sr_and_secondary_captures_pass_dciodvfy_and_dsrdump(config: Config,
                                                             tmp_path: Path) -> None:
    checked = 0
    for delivery in _deliveries(config, pacs_address="PACS@127.0.0.1:9", send_originals=True):
        for number, dataset in enumerate(datasets(delivery, delivery.store.config)):
            path = _save(dataset, tmp_path / f"{delivery.item.report_status}-{number}.dcm")
            assert _dciodvfy(path) == [], (dataset.Modality, _dciodvfy(path))
            checked += 1
            if dataset.Modality == "SR":
                done = subprocess.run([_tool("dsrdump"), str(path)], capture_output=True,
                                      text=True, timeout=60)
                assert done.returncode == 0 and not done.stderr.strip(), done.stderr
                assert "Imaging Measurement Report" in done.stdout
                verified = re.search(r"Verification Flag\s+: VERIFIED", done.stdout) is not None
                assert verified is (delivery.item.report_status == "final")
    assert checked == 6  # preliminary: 2 overlays, 2 originals, SR; final: SR


def test_the_dicom_validators_catch_a_broken_object(config: Config, tmp_path: Path) -> None:
    delivery = _deliveries(config, pacs_address="PACS@127.0.0.1:9")[0]
    *_, sr = datasets(delivery, delivery.store.config)
    del sr.ContentSequence[0].ConceptNameCodeSequence  # a content item without its concept
    del sr.CompletionFlag
    path = _save(sr, tmp_path / "broken.dcm")
    assert _dciodvfy(path), "dciodvfy found nothing wrong in a broken SR"
    done = subprocess.run([_tool("dsrdump"), str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 or "E:" in done.stderr or "W:" in done.stderr


def _medplum(inputs: list[dict]) -> list[list[dict]]:
    """Medplum's issues (errors and fatals only) for each {resource, profile}."""
    if shutil.which("node") is None or not (FHIR_MODULES / "@medplum" / "core").exists():
        pytest.skip("node or the FHIR peer's npm packages are absent (scripts/setup.sh)")
    done = subprocess.run(["node", str(TESTS / "fhir_check" / "validate.js")],
                          input=json.dumps(inputs), capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NODE_PATH": str(FHIR_MODULES)})
    assert done.returncode == 0, done.stderr[-2000:]
    return [[i for i in issues if i.get("severity") in ("error", "fatal")]
            for issues in json.loads(done.stdout)]


def _checks(transaction: dict) -> list[dict]:
    resources = [entry["resource"] for entry in transaction["entry"]]
    return [{"resource": r, "profile": None} for r in resources] + [
        {"resource": r, "profile": US_CORE_PATIENT} for r in resources
        if r["resourceType"] == "Patient"]


def test_fhir_resources_pass_an_independent_validator_and_us_core_patient(
        config: Config) -> None:
    checks = []
    for delivery in _deliveries(config, fhir_url="http://127.0.0.1:9/fhir"):
        checks += _checks(bundle(delivery, delivery.store.config))
    answers = _medplum(checks)
    failed = {f"{c['resource']['resourceType']} {c['profile'] or 'R4'}": issues
              for c, issues in zip(checks, answers, strict=True) if issues}
    assert failed == {}
    assert len(checks) >= 2 * 8


def test_the_fhir_validator_catches_what_r4_and_us_core_forbid() -> None:
    bad_patient = {"resourceType": "Patient", "gender": "female"}  # no identifier, no name
    bad_report = {"resourceType": "DiagnosticReport", "status": "final"}  # no code
    answers = _medplum([{"resource": bad_patient, "profile": US_CORE_PATIENT},
                        {"resource": bad_report, "profile": None}])
    assert {tuple(i.get("expression") or []) for i in answers[0]} >= {
        ("Patient.identifier",), ("Patient.name",)}
    assert any("DiagnosticReport.code" in (i.get("expression") or []) for i in answers[1])


def test_a_patient_known_by_one_name_passes_us_core(config: Config) -> None:
    [delivery, *_] = _deliveries(config, fhir_url="http://127.0.0.1:9/fhir")
    delivery.store.upsert_patient("VAL-901", "Aung", "1960-01-31", "female", actor="nurse")
    again = Delivery(delivery.item, delivery.store.get_screening(delivery.item.screening_id),
                     delivery.store)
    patient = bundle(again, again.store.config)["entry"][0]["resource"]
    assert patient["resourceType"] == "Patient"
    assert _medplum([{"resource": patient, "profile": US_CORE_PATIENT}]) == [[]]


def test_names_in_other_scripts_pass_the_dicom_and_fhir_validators(config: Config,
                                                                   tmp_path: Path) -> None:
    """Japanese with its ideographic and phonetic groups: UTF-8 SR/SC, HumanName per form."""
    name = from_dicom("Yamada^Tarou=山田^太郎=やまだ^たろう")
    deliveries = _deliveries(config, name, pacs_address="PACS@127.0.0.1:9",
                             fhir_url="http://127.0.0.1:9/fhir")
    for delivery in deliveries:
        for number, dataset in enumerate(datasets(delivery, delivery.store.config)):
            path = _save(dataset, tmp_path / f"{delivery.item.report_status}-{number}.dcm")
            assert _dciodvfy(path) == [], (dataset.Modality, _dciodvfy(path))
            assert dataset.SpecificCharacterSet == "ISO_IR 192"
            assert str(dataset.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
            if dataset.Modality == "SR":
                done = subprocess.run([_tool("dsrdump"), str(path)], capture_output=True,
                                      text=True, timeout=60)
                # dcmtk's VR checker skips UTF-8 values and says so; nothing else may be said
                said = [line for line in done.stderr.splitlines() if line.strip()]
                assert done.returncode == 0 and said in ([], [
                    "W: The VR checker does not support this Specific Character Set: ISO_IR 192"])
    patient = bundle(deliveries[0], deliveries[0].store.config)["entry"][0]["resource"]
    assert [n.get("family") for n in patient["name"]] == ["Yamada", "山田", "やまだ"]
    assert _medplum([{"resource": patient, "profile": US_CORE_PATIENT},
                     {"resource": patient, "profile": None}]) == [[], []]


def test_a_name_never_split_stays_text_and_says_its_parts_are_unknown(config: Config) -> None:
    [delivery, *_] = _deliveries(config, "Kwame Nkrumah Mensah", fhir_url="http://127.0.0.1:9/fhir")
    patient = bundle(delivery, delivery.store.config)["entry"][0]["resource"]
    [name] = patient["name"]
    assert name["text"] == "Kwame Nkrumah Mensah" and "family" not in name and "given" not in name
    assert name["extension"] == [{"url": "http://hl7.org/fhir/StructureDefinition/"
                                  "data-absent-reason", "valueCode": "unknown"}]
    assert patient["extension"] == name["extension"]  # where US Core 5.0.1's us-core-6 reads it
    assert _medplum([{"resource": patient, "profile": None},
                     {"resource": patient, "profile": US_CORE_PATIENT}]) == [[], []]
