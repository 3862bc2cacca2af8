"""One result per film whoever sends it, and every result linked to its film (issue 18.2, 18.3).

dcmtk's ``storescu`` pushes real chest films from two AE titles to the real listener; the spool
worker screens them with the real pipeline (a tiny signed test bundle) into a real store. Then
every writer's output for that screening is read for its references to the film.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import hl7
import pydicom
import pytest
import requests
from bundle_builder import build_bundle, make_keys
from conftest import shared
from peers.fixtures import FhirPeer, OrthancPeer

from hardware.listener import DicomListener
from hardware.pushed import screen_spooled_film
from hardware.spool import Spool, SpoolWorker
from kiosk.config import Config, load_config
from kiosk.pipeline import Pipeline
from kiosk.store import Screening, Store
from kiosk.sync import make_worker
from kiosk.sync.base import Delivery
from kiosk.sync.dicom_objects import datasets
from kiosk.sync.fhir import bundle
from kiosk.sync.hl7 import build_oru

STORESCU = Path("/usr/bin/storescu")
CHEST = "SIIM-CXR-no-pneumothorax.dcm"  # JPEG baseline: storescu proposes it with -xy
OTHER_CHEST = "RG1_J2KI.dcm"  # JPEG 2000 lossy: -xw
ACCESSION = "ACC-2026-77"


@dataclass
class Pushed:
    """What the push scenario left: the store, its config, the films sent, the audit log."""

    store: Store
    config: Config
    film: pydicom.Dataset
    impostor: pydicom.Dataset
    screenings: list[Screening]


def _storescu(port: int, calling: str, path: Path, propose: str) -> None:
    done = subprocess.run([str(STORESCU), propose, "-aet", calling, "-aec", "KIOSK", "127.0.0.1",
                           str(port), str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _films(folder: Path) -> tuple[Path, Path]:
    """The chest film with an accession number, and another chest film under the same UID."""
    film = pydicom.dcmread(shared("dicom", CHEST))
    film.AccessionNumber = ACCESSION
    film.save_as(folder / "film.dcm")
    impostor = pydicom.dcmread(shared("dicom", OTHER_CHEST))
    impostor.SOPInstanceUID = film.SOPInstanceUID
    impostor.file_meta.MediaStorageSOPInstanceUID = film.SOPInstanceUID
    impostor.save_as(folder / "impostor.dcm")
    return folder / "film.dcm", folder / "impostor.dcm"


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    """XRAY1 sends a film; XRAY2 sends it again, then another image under the same UID."""
    if not STORESCU.exists():
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    root = tmp_path_factory.mktemp("pushed")
    film_path, impostor_path = _films(root)
    keys = make_keys(root)
    build_bundle(root / "models", keys, kind="cxr")
    config = load_config(env={}, data_dir=root / "data", dicom_port=0, dicom_host="127.0.0.1",
                         dicom_allowed_aes="XRAY1,XRAY2", min_free_disk_mb=1,
                         models_dir=root / "models", trusted_keys=keys.trusted_dir,
                         engine_cache_dir=root / "engines", sandbox_workers=0,
                         fhir_url="http://127.0.0.1:9/fhir", hl7_address="127.0.0.1:9",
                         pacs_address="PACS@127.0.0.1:9")
    pipeline, store = Pipeline.from_config(config), Store.open(config)
    spool = Spool(config.data_dir / "spool", min_free_mb=1)
    worker = SpoolWorker(spool, lambda p: screen_spooled_film(p, pipeline, store))
    listener = DicomListener(config, spool, worker)
    port, stop = listener.start(), threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for calling, path, propose in (("XRAY1", film_path, "-xy"), ("XRAY2", film_path, "-xy"),
                                       ("XRAY2", impostor_path, "-xw")):
            _storescu(port, calling, path, propose)
            assert worker.wait_idle(180)
        screenings = sorted(store.worklist(), key=lambda s: s.id)
        yield Pushed(store, config, pydicom.dcmread(film_path), pydicom.dcmread(impostor_path),
                     screenings)
    finally:
        stop.set()
        listener.stop()
        thread.join(timeout=10)
        pipeline.close()
        store.close()


def _actions(store: Store, action: str) -> list[tuple[str, str]]:
    return [(e.actor, e.detail) for e in store.audit_entries() if e.action == action]


def test_the_same_film_from_a_second_ae_title_is_screened_once(pushed: Pushed) -> None:
    first, _ = pushed.screenings  # the film, and the impostor: never the resend
    uid = str(pushed.film.SOPInstanceUID)
    assert [r["input"] for r in first.results] == [f"dicom://XRAY1/{uid}"]
    assert _actions(pushed.store, "dicom_duplicate") == [
        ("dicom:XRAY2", f"{uid}: already screened (screening {first.id})")]
    # one report per destination for the film, however many modalities sent it
    items = [i for i in pushed.store.due_items(100) if i.screening_id == first.id]
    assert sorted(i.destination for i in items) == ["dicom", "fhir", "hl7"]


def test_the_same_uid_with_other_pixels_is_screened_with_a_warning(pushed: Pushed) -> None:
    first, second = pushed.screenings
    uid = str(pushed.film.SOPInstanceUID)
    assert [r["input"] for r in second.results] == [f"dicom://XRAY2/{uid}"]
    assert second.results[0]["error"] is None
    [warning] = [w for w in second.results[0]["warnings"] if "SOP Instance UID" in w]
    assert f"screening {first.id}" in warning and "different pixels" in warning
    assert not any("SOP Instance UID" in w for w in first.results[0]["warnings"])
    [(actor, detail)] = _actions(pushed.store, "dicom_uid_conflict")
    assert actor == "dicom:XRAY2" and detail.startswith(f"{uid}: pixels differ from screening")
    assert [f.screening_id for f in pushed.store.received_films(uid)] == [first.id, second.id]


def test_a_result_carries_the_film_it_is_about(pushed: Pushed) -> None:
    film, impostor = pushed.film, pushed.impostor
    assert pushed.screenings[0].results[0]["source"] == {
        "study_uid": film.StudyInstanceUID, "series_uid": film.SeriesInstanceUID,
        "sop_uid": film.SOPInstanceUID, "sop_class_uid": film.SOPClassUID,
        "accession_number": ACCESSION, "modality": film.Modality}
    assert pushed.screenings[1].results[0]["source"]["study_uid"] == impostor.StudyInstanceUID


def _deliveries(pushed: Pushed, **settings: object) -> dict[str, Delivery]:
    store = Store.open(replace(pushed.config, **settings)) if settings else pushed.store
    screening = pushed.screenings[0]
    return {i.destination: Delivery(i, screening, store) for i in store.due_items(100)
            if i.screening_id == screening.id}


def _sr(pushed: Pushed, tmp_path: Path, **settings: object) -> pydicom.Dataset:
    delivery = _deliveries(pushed, **settings)["dicom"]
    *_, sr = datasets(delivery, delivery.store.config)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    if shutil.which("dciodvfy"):
        checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                                 timeout=60)
        assert [x for x in (checked.stdout + checked.stderr).splitlines()
                if x.startswith("Error")] == []
    return pydicom.dcmread(path)


def _referenced(sequence: pydicom.Sequence) -> set[tuple[str, str, str]]:
    return {(study.StudyInstanceUID, series.SeriesInstanceUID, sop.ReferencedSOPInstanceUID)
            for study in sequence for series in study.ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence}


def test_the_sr_references_the_film_its_order_and_declares_its_codes(pushed: Pushed,
                                                                    tmp_path: Path) -> None:
    film = pushed.film
    sr = _sr(pushed, tmp_path)
    expected = (film.StudyInstanceUID, film.SeriesInstanceUID, film.SOPInstanceUID)
    assert sr.StudyInstanceUID != film.StudyInstanceUID  # the kiosk's own study by default
    assert expected in _referenced(sr.PertinentOtherEvidenceSequence)
    [request] = sr.ReferencedRequestSequence
    assert (request.AccessionNumber, request.StudyInstanceUID) == (ACCESSION,
                                                                    film.StudyInstanceUID)
    assert [s.CodingSchemeDesignator for s in sr.CodingSchemeIdentificationSequence] == [
        "99KIOSK"]


def test_the_sr_goes_in_the_film_s_own_study_where_the_site_wants_it(pushed: Pushed,
                                                                    tmp_path: Path) -> None:
    film = pushed.film
    sr = _sr(pushed, tmp_path, sr_in_film_study=True)
    assert (sr.StudyInstanceUID, sr.AccessionNumber) == (film.StudyInstanceUID, ACCESSION)
    assert (film.StudyInstanceUID, film.SeriesInstanceUID, film.SOPInstanceUID) in _referenced(
        sr.CurrentRequestedProcedureEvidenceSequence)
    assert "PertinentOtherEvidenceSequence" not in sr


def test_fhir_points_to_the_film_s_study_and_its_order(pushed: Pushed) -> None:
    film = pushed.film
    delivery = _deliveries(pushed)["fhir"]
    entries = bundle(delivery, delivery.store.config)["entry"]
    studies = {e["fullUrl"]: e for e in entries if e["resource"]["resourceType"] == "ImagingStudy"}
    [original] = [e for e in studies.values() if e["resource"]["identifier"][0]["value"]
                  == f"urn:oid:{film.StudyInstanceUID}"]
    assert original["request"]["method"] == "POST"  # the EHR may know the film's study already
    [series] = original["resource"]["series"]
    assert series["uid"] == film.SeriesInstanceUID
    assert series["instance"][0]["uid"] == film.SOPInstanceUID
    [report] = [e["resource"] for e in entries
                if e["resource"]["resourceType"] == "DiagnosticReport"]
    referenced = {r["reference"] for r in report["imagingStudy"]}
    assert original["fullUrl"] in referenced and len(referenced) == 2
    assert report["basedOn"] == [{"type": "ServiceRequest", "identifier": {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "ACSN", "display": "Accession ID"}]}, "value": ACCESSION}}]


def test_hl7_carries_the_accession_number_and_the_film_s_study(pushed: Pushed) -> None:
    delivery = _deliveries(pushed)["hl7"]
    oru = hl7.parse(build_oru(delivery, delivery.store.config))
    obr = oru.segment("OBR")
    assert str(obr[3]) == ACCESSION and str(obr[18]) == ACCESSION
    assert str(obr[2]) == pushed.screenings[0].uid
    assert oru.extract_field("ZDS", 1, 1, 1, 1) == pushed.film.StudyInstanceUID


def test_a_photograph_has_no_source_and_no_film_reference(pushed: Pushed) -> None:
    """A result without 'source' (an upload's photograph) writes no reference to a film."""
    screening = pushed.screenings[0]
    bare = replace(screening, results=[{k: v for k, v in r.items() if k != "source"}  # type: ignore[misc]
                                       for r in screening.results])
    delivery = _deliveries(pushed)["hl7"]
    oru = hl7.parse(build_oru(Delivery(delivery.item, bare, delivery.store), pushed.config))
    assert str(oru.segment("OBR")[3]) == "" and "ZDS" not in str(oru)


def test_the_real_peers_take_the_links_to_the_film(pushed: Pushed, fhir_peer: FhirPeer,
                                                   orthanc_pair: tuple[OrthancPeer, OrthancPeer]
                                                   ) -> None:
    """Last in this module (it sends the outbox): the FHIR server and a PACS hold the links."""
    stored, _ = orthanc_pair
    film, first = pushed.film, pushed.screenings[0]
    store = Store.open(replace(pushed.config, fhir_url=fhir_peer.base, hl7_address="",
                               pacs_address=stored.pacs_address, sr_in_film_study=True))
    try:
        assert make_worker(store).run_once().sent == 4  # two screenings, FHIR and the PACS
    finally:
        store.close()
    [study] = fhir_peer.search("ImagingStudy",
                               identifier=f"urn:dicom:uid|urn:oid:{film.StudyInstanceUID}")
    assert {s["uid"] for s in study["series"]} >= {film.SeriesInstanceUID}
    [report] = fhir_peer.search("DiagnosticReport", identifier=f"urn:kiosk:screening|{first.uid}")
    assert f"ImagingStudy/{study['id']}" in {r["reference"] for r in report["imagingStudy"]}
    assert report["basedOn"][0]["identifier"]["value"] == ACCESSION
    series = requests.post(f"{stored.http}/tools/find", timeout=60, json={
        "Level": "Series", "Query": {"StudyInstanceUID": film.StudyInstanceUID},
        "Expand": True}).json()
    assert {s["MainDicomTags"]["Modality"] for s in series} == {"SR", "OT"}  # in the film's study
