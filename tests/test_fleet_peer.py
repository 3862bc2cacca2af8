"""Two kiosks, real screenings, the real FHIR server: a central query sums their MeasureReports,
a resend after a crash counts nothing twice, and no patient identifier leaves in them.

Each kiosk is its own data folder (its own store, outbox, journal and random kiosk id); one
pipeline (the real bundles in models/) screens EyePACS photographs for both, one visit of each
as an OP DICOM wrapping the photograph (so the films' UIDs are among what must not leave).
"""

from __future__ import annotations

import csv
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from builders import op_dicom
from conftest import ROOT, shared
from peers.faultproxy import FaultProxy
from peers.fixtures import FhirPeer

from engines.bundle import Bundle, find_bundles
from kiosk import visit
from kiosk.config import Config, load_config
from kiosk.lifecycle import drift, fleet, surveillance
from kiosk.names import from_parts
from kiosk.pipeline import Pipeline
from kiosk.store import Store
from kiosk.sync import make_worker
from kiosk.sync.base import ReportDelivery
from kiosk.sync.measure_report import FIGURE, TASK, report_identifier, transaction

VISITS = {"a": 3, "b": 4}  # two-eye visits per kiosk: 6 and 8 images, above the small-cell 5


@dataclass
class Kiosk:
    """One kiosk's store and everything about its patients that must never leave in a report."""

    store: Store
    bundles: dict[str, Bundle]
    secrets: set[str] = field(default_factory=set)
    images: int = 0  # fundus-dr results recorded (what the central sum must find)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    if not any(p.name.startswith("fundus-dr-") for p in find_bundles(ROOT / "models")):
        pytest.skip("the real fundus-dr bundle is not in models/ (python -m export build fundus-dr)")
    shared("fundus", "eyepacs-256", "labels.csv")
    tmp = tmp_path_factory.mktemp("fleet-pipeline")
    made = Pipeline.from_config(load_config(env={}, data_dir=tmp / "data", sandbox_workers=0,
                                            engine_cache_dir=tmp / "engines"))
    yield made
    made.close()


def _eyes(count: int, skip: int) -> list[tuple[str, Path, Path]]:
    """``count`` EyePACS patients with both eyes, after the first ``skip``."""
    folder = shared("fundus", "eyepacs-256")
    with (folder / "labels.csv").open() as handle:
        patients = sorted({row["patient"] for row in csv.DictReader(handle)}, key=int)
    found = [(p, folder / "images" / f"{p}_left.jpeg", folder / "images" / f"{p}_right.jpeg")
             for p in patients]
    return [e for e in found if e[1].exists() and e[2].exists()][skip:skip + count]


def _as_op(jpeg: bytes, side: str, patient_id: str, name: str, birth: str, study: str) -> bytes:
    """The photograph as an OP DICOM carrying the patient's identity (as a camera sends it),
    both eyes of the visit in one study."""
    ds = pydicom.dcmread(BytesIO(op_dicom(jpeg, laterality=side)))
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = patient_id, name, birth.replace("-", "")
    ds.StudyInstanceUID = study
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _visit(kiosk: Kiosk, pipeline: Pipeline, number: int, eyes: tuple[str, Path, Path],
           as_dicom: bool, tag: str) -> None:
    source_id, left, right = eyes
    identifier, family, given = f"FLT-{tag}{number:03d}-Q7", f"Quenby{tag}{number}", "Ottoline"
    birth = f"19{40 + number}-0{1 + number % 8}-1{number % 9}"
    patient = kiosk.store.upsert_patient(identifier, from_parts(family, [given]),
                                         birth, "female", actor="nurse")
    offered, study = [], pydicom.uid.generate_uid()
    for side, path in (("L", left), ("R", right)):
        data = path.read_bytes()
        if as_dicom:
            data = _as_op(data, side, identifier, f"{family}^{given}", birth, study)
            ds = pydicom.dcmread(BytesIO(data))
            kiosk.secrets |= {ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID}
        offered.append(visit.Offered(data, path.name, laterality=side))
        kiosk.secrets |= {path.name, path.stem}
    screening = visit.record(kiosk.store, patient.id, visit.screen(pipeline, offered, age=60),
                             actor="nurse")
    note = f"Seen with her daughter Wilhelmina {family} at the market"
    if number == 0:
        screening = kiosk.store.sign_off(screening.id, clinician="dr_fleet", decision="confirm",
                                         note=note)
        kiosk.secrets.add(note)
    kiosk.images += sum(1 for r in screening.results if r.get("task") == "fundus-dr")
    kiosk.secrets |= {identifier, family, given, birth, birth.replace("-", ""), screening.uid,
                      source_id + "_left", *screening.image_shas,
                      *(h for h in screening.heatmap_shas if h)}


@pytest.fixture(scope="module")
def kiosks(pipeline: Pipeline, fhir_peer: FhirPeer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Kiosk]]:
    measure = f"https://screening-kiosk.example/fhir/Measure/fleet-test-{uuid.uuid4().hex}"
    made: dict[str, Kiosk] = {}
    skip = 0
    for tag, count in VISITS.items():
        folder = tmp_path_factory.mktemp(f"kiosk-{tag}")
        config: Config = load_config(env={}, data_dir=folder / "data", min_free_disk_mb=1,
                                     fhir_url=fhir_peer.base, fleet_measure_url=measure)
        bundles = {task: model.bundle for task, model in pipeline.models.items()}
        kiosk = made[tag] = Kiosk(Store.open(config), bundles)
        for number, eyes in enumerate(_eyes(count, skip)):
            _visit(kiosk, pipeline, number, eyes, as_dicom=number == 1, tag=tag.upper())
        skip += count
    yield made
    for kiosk in made.values():
        kiosk.store.close()


def _queue(kiosk: Kiosk) -> int:
    today = datetime.now(fleet.UTC).date()
    report, queued = fleet.queue(kiosk.store, fleet.Period(today, today), today=today,
                                 allow_open=True, actor="test",
                                 drift=drift.summary(kiosk.store, kiosk.bundles),
                                 surveillance=surveillance.summary(kiosk.store))
    assert queued
    return report.id


def _crash_after_the_peer_took_it(kiosk: Kiosk, report_id: int) -> None:
    """Send the report the way the worker does, then die before the acknowledgement is noted
    and before the store marks it: the peer holds it, the kiosk still has it waiting."""
    worker = make_worker(kiosk.store)
    item = next(i for i in kiosk.store.due_items(100, ["fhir"]) if i.fleet_report_id == report_id)
    worker.journals["fhir"].intent(item)
    worker.destinations["fhir"].send_report(  # type: ignore[attr-defined]
        ReportDelivery(item, kiosk.store.get_fleet_report(report_id)))
    worker.journals["fhir"].close()
    worker.destinations["fhir"].close()
    assert kiosk.store.get_item(item.id).state == "waiting"


def _screenings_count(report: dict, task: str) -> int:
    group = next(g for g in report["group"]
                 if {"system": FIGURE, "code": "screenings"} in g["code"]["coding"]
                 and {"system": TASK, "code": task} in g["code"]["coding"])
    population = next(p for p in group["population"]
                      if p["code"]["coding"][0]["code"] == "initial-population")
    return int(population["count"])


def test_a_central_query_sums_two_kiosks_once_each_despite_a_resend(
        kiosks: dict[str, Kiosk], fhir_peer: FhirPeer) -> None:
    ids = {tag: _queue(kiosk) for tag, kiosk in kiosks.items()}
    first = make_worker(kiosks["a"].store).run_once()
    assert first.parked == 0 and first.sent >= 1
    _crash_after_the_peer_took_it(kiosks["b"], ids["b"])
    resent = make_worker(kiosks["b"].store).run_once()
    assert resent.in_doubt == 1 and resent.parked == 0  # sent again, with the same identifier
    for kiosk in kiosks.values():
        assert all(r["outbox"] == {"fhir": "sent"} for r in kiosk.store.fleet_reports())
        assert kiosk.store.outbox_status()[0].waiting == 0

    measure = kiosks["a"].store.config.fleet_measure_url
    reports = fhir_peer.search("MeasureReport", measure=measure)
    assert len(reports) == 2  # one per kiosk: the resend found b's and added none
    assert {r["status"] for r in reports} == {"complete"}
    assert all(r["subject"]["reference"].startswith("Device/") for r in reports)
    figures = Counter(c["code"] for r in reports for g in r["group"] for c in g["code"]["coding"]
                      if c["system"] == FIGURE)
    assert figures["drift"] == 2 * len(kiosks["a"].bundles)  # every loaded task's statistic
    assert figures["surveillance"] == 2  # each kiosk's one signed screening, one model version
    central = sum(_screenings_count(r, "fundus-dr") for r in reports)
    assert central == kiosks["a"].images + kiosks["b"].images == 2 * sum(VISITS.values())
    print(f"fleet: {len(reports)} MeasureReports, {central} images summed, "  # docs/fleet.md
          f"{sorted(len(json.dumps(r)) for r in reports)} bytes of JSON each")

    again, queued = fleet.queue(kiosks["a"].store, fleet.Period(
        *[datetime.now(fleet.UTC).date()] * 2), allow_open=True)
    assert not queued and again.id == ids["a"]  # the same period is not reported twice


def test_nothing_that_identifies_a_patient_leaves_in_the_reports(
        kiosks: dict[str, Kiosk], fhir_peer: FhirPeer) -> None:
    measure = kiosks["a"].store.config.fleet_measure_url
    held = fhir_peer.search("MeasureReport", measure=measure)
    if not held:  # run alone: queue and send first
        for kiosk in kiosks.values():
            _queue(kiosk)
            make_worker(kiosk.store).run_once()
        held = fhir_peer.search("MeasureReport", measure=measure)
    assert len(held) == 2
    sent = []
    for kiosk in kiosks.values():
        for row in kiosk.store.fleet_reports():
            report = kiosk.store.get_fleet_report(row["id"])
            key = f"fleet.{report.kiosk}.{report.period_start}.{report.period_end}.fhir"
            sent.append(json.dumps(transaction(report, key, kiosk.store.config)))
            sent.append(json.dumps(report.figures))
    secrets = kiosks["a"].secrets | kiosks["b"].secrets
    wire = json.dumps(held) + "".join(sent)
    leaked = sorted(s for s in secrets if s.lower() in wire.lower())
    assert leaked == []
    assert "Patient/" not in wire
    # the list of secrets is live: the same identifiers did reach the EHR in the patients'
    # own resources (the screening reports), so the search above could have found them
    patients = json.dumps(fhir_peer.search("Patient") + fhir_peer.search("DiagnosticReport"))
    for kiosk in kiosks.values():
        assert any(s in patients for s in kiosk.secrets if s.startswith("FLT-"))


def test_an_answer_lost_on_the_way_back_is_retried_into_the_same_report(
        pipeline: Pipeline, fhir_peer: FhirPeer, tmp_path: Path) -> None:
    """The server files the report but its answer is lost (a dropped connection): the kiosk
    cannot know, retries after its backoff, and the conditional create finds the first copy."""
    host, port = fhir_peer.base.split("//")[1].split("/")[0].split(":")
    # seed 1: the proxy lets no answer through before it drops (its first randint(0, 2) is 0)
    proxy = FaultProxy((host, int(port)), first=("drop",), seed=1)
    try:
        config = load_config(env={}, data_dir=tmp_path / "data", min_free_disk_mb=1,
                             fhir_url=f"http://127.0.0.1:{proxy.port}/fhir", sync_timeout_s=5)
        kiosk = Kiosk(Store.open(config), {})
        _visit(kiosk, pipeline, 0, _eyes(1, 20)[0], as_dicom=False, tag="C")
        with kiosk.store.db.write() as conn:  # the screening's own items are not under test
            conn.execute("UPDATE outbox SET state = 'sent'")
        report_id = _queue(kiosk)
        lost = make_worker(kiosk.store).run_once()
        assert (lost.sent, lost.retrying, proxy.injected["drop"]) == (0, 1, 1)
        with kiosk.store.db.write() as conn:  # as if the backoff had passed
            conn.execute("UPDATE outbox SET next_attempt = 0")
        again = make_worker(kiosk.store).run_once()
        assert (again.sent, again.retrying) == (1, 0)
        report = kiosk.store.get_fleet_report(report_id)
        key = f"fleet.{report.kiosk}.{report.period_start}.{report.period_end}.fhir"
        ident = report_identifier(key)
        held = fhir_peer.search("MeasureReport", identifier=f"{ident['system']}|{ident['value']}")
        assert len(held) == 1 and held[0]["period"]["start"] == report.period_start
        kiosk.store.close()
    finally:
        proxy.down()
