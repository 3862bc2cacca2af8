"""Sync to real peers on loopback: FHIR (Medplum in memory), HL7 MLLP, Orthanc (C-STORE, STOW)."""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from peers.fixtures import FhirPeer, OrthancPeer, start_fhir
from peers.mllp import MllpPeer
from store_helpers import png_bytes, result, screen

from kiosk.config import Config
from kiosk.errors import ConfigError, SyncError
from kiosk.store import Store
from kiosk.sync import backoff_s, make_worker, worker_lock
from kiosk.sync.base import Delivery, control_id, http_auth
from kiosk.sync.dicom_objects import datasets, sr_uid
from kiosk.sync.fhir import FhirDestination, bundle
from kiosk.sync.hl7 import build_oru, check_ack
from kiosk.sync.status import sync_status


def _store(config: Config, **destinations: str) -> Store:
    return Store.open(replace(config, min_free_disk_mb=1, sync_timeout_s=5.0, **destinations))


def _delivery(store: Store, item_id: int) -> Delivery:
    item = store.get_item(item_id)
    return Delivery(item, store.get_screening(item.screening_id), store)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_s(n, 5.0, 600.0, rng) for n in range(12)]
    assert all(5.0 * 2**n / 2 <= d <= 5.0 * 2**n for n, d in enumerate(delays[:6]))
    assert all(300.0 <= d <= 600.0 for d in delays[7:])
    assert len({round(d, 6) for d in delays[7:]}) > 1  # jittered, not synchronised


def test_credentials_settings() -> None:
    assert http_auth("fhir_auth", "bearer:abc") == {"Authorization": "Bearer abc"}
    assert http_auth("fhir_auth", "basic:kiosk:s3cret")["Authorization"].startswith("Basic ")
    assert http_auth("fhir_auth", "") == {}
    with pytest.raises(ConfigError):
        http_auth("fhir_auth", "token-without-kind")


def test_one_worker_per_data_folder(config: Config) -> None:
    with worker_lock(config.data_dir), pytest.raises(SyncError) as caught, \
            worker_lock(config.data_dir):
        pass
    assert caught.value.code == "sync_busy"


def test_fhir_bundle_is_valid_stable_and_exactly_once(config: Config, fhir_peer: FhirPeer) -> None:
    store = _store(config, fhir_url=fhir_peer.base)
    screening = screen(store, 101, identifier="FHIR-101")
    item = store.due_items()[0]
    assert bundle(_delivery(store, item.id), store.config) == bundle(
        _delivery(store, item.id), store.config)  # the same bytes on every retry
    destination = FhirDestination(store.config)
    for _ in range(3):  # a resend after a lost answer creates nothing new
        destination.send(_delivery(store, item.id))
    assert fhir_peer.reports_by_screening()[screening.uid] == 1
    patients = fhir_peer.search("Patient", identifier="urn:kiosk:patient-id|FHIR-101")
    assert len(patients) == 1 and patients[0]["gender"] == "female"
    report = fhir_peer.search("DiagnosticReport",
                              identifier=f"urn:kiosk:screening|{screening.uid}")[0]
    assert report["status"] == "preliminary" and len(report["result"]) == 2
    assert report["meta"]["security"][0]["code"] == "AIAST"
    assert report["conclusionCode"][0]["coding"][0]["code"] == "referable"
    observations = fhir_peer.search("Observation", subject=f"Patient/{patients[0]['id']}")
    assert sorted(o["code"]["coding"][0]["code"] for o in observations) == ["71490-7", "71491-5"]
    assert len(fhir_peer.search("Device", identifier="urn:kiosk:algorithm|fundus-dr@1.0.0")) == 1
    store.sign_off(screening.id, clinician="dr_k", decision="overrule", note="artefact",
                   verdict="non_referable")
    assert make_worker(store).run_once().sent == 2  # the preliminary item, then the final
    report = fhir_peer.search("DiagnosticReport",
                              identifier=f"urn:kiosk:screening|{screening.uid}")
    assert len(report) == 1 and report[0]["status"] == "final"
    assert report[0]["conclusionCode"][0]["coding"][0]["code"] == "non_referable"
    assert {o["status"] for o in fhir_peer.search(
        "Observation", subject=f"Patient/{patients[0]['id']}")} == {"final"}
    provenance = fhir_peer.search("Provenance", target=f"DiagnosticReport/{report[0]['id']}")
    assert len(provenance) == 1
    assert [a["type"]["coding"][0]["code"] for a in provenance[0]["agent"]] == [
        "author", "verifier"]
    store.close()


def test_an_invalid_resource_is_parked_and_does_not_block_the_rest(
        config: Config, fhir_peer: FhirPeer) -> None:
    store = _store(config, fhir_url=fhir_peer.base)
    bad = screen(store, 102, identifier="FHIR-102")
    with store.db.write() as conn:  # a birth date FHIR cannot take
        conn.execute("UPDATE patients SET birth_date = '31/01/1960' WHERE id = ?",
                     (bad.patient.id,))
    good = screen(store, 103, identifier="FHIR-103")
    report = make_worker(store).run_once()
    assert (report.sent, report.parked) == (1, 1)
    parked = store.parked_items()
    assert [p.screening_id for p in parked] == [bad.id] and "birthDate" in parked[0].last_error
    assert fhir_peer.reports_by_screening()[good.uid] == 1
    assert fhir_peer.reports_by_screening()[bad.uid] == 0
    status = sync_status(store)
    assert status["destinations"][0]["parked"] == 1 and status["parked"][0]["id"] == parked[0].id
    store.close()


def test_hl7_message_is_stable_and_acks_are_handled(config: Config, mllp_peer: MllpPeer) -> None:
    store = _store(config, hl7_address=mllp_peer.address)
    screening = screen(store, 201, identifier="HL7-201")
    item = store.due_items()[0]
    message = build_oru(_delivery(store, item.id), store.config)
    assert message == build_oru(_delivery(store, item.id), store.config)
    lines = message.split("\r")
    assert lines[0].split("|")[8] == "ORU^R01^ORU_R01" and lines[0].split("|")[11] == "2.5"
    obx = [line for line in lines if line.startswith("OBX|")]
    assert len(obx) == 4 and "71490-7" in obx[0] and "71491-5" in obx[2]
    assert make_worker(store).run_once().sent == 1
    assert mllp_peer.inbox.messages[control_id(item.idempotency_key)].startswith("MSH|")
    mllp_peer.inbox.answers["HL7-202"] = ("AE", "unknown patient")
    mllp_peer.inbox.answers["HL7-203"] = ("AR", "database offline")
    screen(store, 202, identifier="HL7-202")
    screen(store, 203, identifier="HL7-203")
    later = screen(store, 204, identifier="HL7-204")
    report = make_worker(store).run_once()
    assert (report.sent, report.parked, report.retrying) == (1, 1, 1)
    assert "AE" in store.parked_items()[0].last_error
    retrying = next(i for i in store.outbox_status() if i.destination == "hl7")
    assert retrying.waiting == 1 and "AR" in retrying.last_error
    assert control_id(f"{later.uid}.hl7.preliminary") in mllp_peer.inbox.messages
    assert screening.uid != later.uid
    store.close()


def test_an_ack_for_another_message_is_not_an_ack() -> None:
    ack = "MSH|^~\\&|EHR|EHR|K|C|20260101||ACK|1|P|2.5\rMSA|AA|SOMETHINGELSE\r"
    with pytest.raises(SyncError) as caught:
        check_ack(ack, "EXPECTED")
    assert caught.value.retryable


def test_pacs_gets_sr_and_overlays_once_by_cstore_and_stow(
        config: Config, orthanc_pair: tuple[OrthancPeer, OrthancPeer]) -> None:
    cstore, stow = orthanc_pair
    store = _store(config, pacs_address=cstore.pacs_address, dicomweb_url=stow.dicomweb_url)
    screening = screen(store, 301, identifier="PACS-301")
    delivery = _delivery(store, store.due_items()[0].id)
    objects = datasets(delivery, store.config)
    assert [o.Modality for o in objects] == ["OT", "OT", "SR"]
    uids = {str(o.SOPInstanceUID) for o in objects}
    assert uids == {str(o.SOPInstanceUID) for o in datasets(delivery, store.config)}
    for _ in range(2):  # the second pass resends everything, as after a lost response
        assert make_worker(store).run_once().sent == 2
        with store.db.write() as conn:
            conn.execute("UPDATE outbox SET state = 'waiting'")
    for peer in (cstore, stow):
        held = peer.sop_uids()
        assert all(held[uid] == 1 for uid in uids)
    assert not list((config.data_dir / "spool" / "dicom").iterdir())  # released once sent
    store.sign_off(screening.id, clinician="dr_k", decision="confirm", note="")
    make_worker(store).run_once()
    final_uid = sr_uid(_delivery(store, store.due_items()[0].id)) if store.due_items() else None
    assert final_uid is None
    with store.db.read() as conn:
        final_item = conn.execute("SELECT id FROM outbox WHERE report_status = 'final'"
                                  " AND destination = 'dicom'").fetchone()[0]
    final_sr = sr_uid(_delivery(store, final_item))
    assert cstore.sop_uids()[final_sr] == 1 and stow.sop_uids()[final_sr] == 1
    store.close()


def test_kiosk_sync_command_reports_status_and_retries_parked_items(
        config: Config, mllp_peer: MllpPeer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from kiosk.cli import main

    monkeypatch.setenv("KIOSK_DATA_DIR", str(config.data_dir))
    monkeypatch.setenv("KIOSK_HL7_ADDRESS", mllp_peer.address)
    monkeypatch.setenv("KIOSK_MIN_FREE_DISK_MB", "1")
    store = _store(config, hl7_address=mllp_peer.address)
    mllp_peer.inbox.answers["CLI-1"] = ("AE", "no such ward")
    screen(store, 401, identifier="CLI-1")
    store.close()
    assert main(["sync"]) == 1  # one item parked
    assert main(["sync", "--status"]) == 0
    status = json.loads(capsys.readouterr().out.split("\n", 2)[-1])
    assert status["parked"][0]["error"].endswith("no such ward")
    del mllp_peer.inbox.answers["CLI-1"]
    assert main(["sync", "--retry", str(status["parked"][0]["id"])]) == 0
    assert main(["sync", "--status"]) == 0
    assert '"sent": 1' in capsys.readouterr().out


def test_kiosk_backup_command(config: Config, monkeypatch: pytest.MonkeyPatch,
                              tmp_path: Path) -> None:
    from kiosk.cli import main

    monkeypatch.setenv("KIOSK_DATA_DIR", str(config.data_dir))
    store = _store(config)
    screen(store, 402)
    store.close()
    assert main(["backup", str(tmp_path / "copy.db")]) == 0
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT COUNT(*) FROM screenings").fetchone()[0] == 1
    copy.close()


def test_fhir_bearer_credentials(config: Config, tmp_path: Path) -> None:
    servers = start_fhir(tmp_path, token="s3cret-token")
    peer = next(servers)
    try:
        store = _store(config, fhir_url=peer.base)
        screen(store, 501, identifier="AUTH-501")
        report = make_worker(store).run_once()
        assert report.retrying == 1 and "KIOSK_FHIR_AUTH" in report.errors["fhir"]
        store.close()
        store = _store(config, fhir_url=peer.base, fhir_auth="bearer:s3cret-token")
        with store.db.write() as conn:
            conn.execute("UPDATE outbox SET next_attempt = 0")
        assert make_worker(store).run_once().sent == 1
        store.close()
    finally:
        servers.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "peer.pem", folder / "peer.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_hl7_over_tls_is_verified_against_the_configured_ca(config: Config,
                                                            tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    peer = MllpPeer(tls=context)
    try:
        store = _store(config, hl7_address=peer.address, hl7_tls=True)
        screen(store, 601, identifier="TLS-601")
        report = make_worker(store).run_once()  # the system CAs do not know this peer
        assert report.retrying == 1 and "CERTIFICATE_VERIFY_FAILED" in report.errors["hl7"]
        store.close()
        store = _store(config, hl7_address=peer.address, hl7_tls=True, tls_ca_file=str(cert))
        with store.db.write() as conn:
            conn.execute("UPDATE outbox SET next_attempt = 0")
        assert make_worker(store).run_once().sent == 1 and len(peer.inbox.messages) == 1
        store.close()
    finally:
        peer.stop()


def _received_dicom() -> bytes:
    """A small DICOM file as if a modality had pushed it (an SC made with highdicom)."""
    import io

    import highdicom as hd
    import numpy as np
    from pydicom.uid import generate_uid

    sc = hd.sc.SCImage(
        pixel_array=np.zeros((16, 16), dtype=np.uint8), photometric_interpretation="MONOCHROME2",
        bits_allocated=8, coordinate_system="PATIENT", study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(), series_number=1, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="X-ray unit", patient_orientation=("L", "F"),
        patient_id="ORIG-1")
    out = io.BytesIO()
    sc.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_originals_are_sent_when_configured(config: Config) -> None:
    from pydicom import dcmread

    store = _store(config, pacs_address="ORTHANC@127.0.0.1:9", send_originals=True)
    patient = store.upsert_patient("ORIG-1", "Film Patient", None, None, actor="nurse")
    film = _received_dicom()
    photo = store.save_image(png_bytes(777), ".png")
    film_sha = store.save_image(film, ".dcm")
    store.record_screening(patient.id, [result(laterality="L"), result(laterality="R")],
                           actor="nurse", image_shas=[film_sha, photo], heatmap_shas=[None, None])
    objects = datasets(_delivery(store, store.due_items()[0].id), store.config)
    assert [o.Modality for o in objects] == ["OT", "OT", "SR"]
    assert str(objects[0].SOPInstanceUID) == str(dcmread(store.image_path(film_sha))
                                                 .SOPInstanceUID)  # the film as it came
    assert objects[1].SeriesDescription == "Original image"
    store.close()



def test_hl7_escapes_delimiters_in_patient_data(config: Config) -> None:
    from kiosk.sync.hl7 import escape

    assert escape("A|B^C~D\\E&F") == "A\\F\\B\\S\\C\\R\\D\\E\\E\\T\\F"
    store = _store(config, hl7_address="127.0.0.1:9")
    screen(store, 701, identifier="ESC|701")
    message = build_oru(_delivery(store, store.due_items()[0].id), store.config)
    pid = next(line for line in message.split("\r") if line.startswith("PID|")).split("|")
    assert pid[3].startswith("ESC\\F\\701^^^") and len(pid) == 9
    status = sync_status(store)
    assert status["waiting"] == 1 and status["destinations"][0]["oldest_age_s"] is not None
    store.close()


def _chest_result(task: str, model: str, film: dict, score: float) -> dict:
    """A chest result as the kiosk records one per task for a film of unknown age."""
    made = result("referable", "L", score)
    made.update(task=task, input="film.dcm", laterality=None, source=film,
                model={"id": model, "version": "1.0.1", "sha256": "cd" * 32})
    made["findings"][0].update(label="pneumonia", display="Pneumonia")
    return made


def test_a_visit_of_many_films_and_models_reaches_a_server_that_limits_conditional_transactions(
        config: Config, fhir_peer: FhirPeer) -> None:
    """Two films from two studies, each read by both chest models (no age known): 11 resources,
    6 of them conditional creates. Medplum refuses a transaction with a conditional create and
    more than 8 entries ('requires strict isolation but has too many entries'); the kiosk used
    to send one transaction and the visit was parked for ever."""
    store = _store(config, fhir_url=fhir_peer.base)
    patient = store.upsert_patient("FHIR-MANY-1", "Film^Two", "1971-05-02", "male", actor="nurse")
    results, shas = [], []
    for number in range(2):
        film = {"study_uid": f"1.2.826.0.1.3680043.8.498.7{number}",
                "series_uid": f"1.2.826.0.1.3680043.8.498.8{number}",
                "sop_uid": f"1.2.826.0.1.3680043.8.498.9{number}",
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1", "modality": "CR"}
        for task, model in (("cxr-pneumonia", "cxr-pneumonia"), ("cxr-adult", "cxr-adult")):
            results.append(_chest_result(task, model, film, 0.6 + 0.1 * number))
            shas.append(store.save_image(png_bytes(700 + len(shas)), ".png"))
    screening = store.record_screening(patient.id, results, actor="nurse", image_shas=shas,
                                       heatmap_shas=[None] * len(shas))
    item = store.due_items()[0]
    destination = FhirDestination(store.config)
    for _ in range(2):  # a resend (a lost answer) finds every resource and adds none
        destination.send(_delivery(store, item.id))
    assert fhir_peer.reports_by_screening()[screening.uid] == 1
    patients = fhir_peer.search("Patient", identifier="urn:kiosk:patient-id|FHIR-MANY-1")
    assert len(patients) == 1
    studies = fhir_peer.search("ImagingStudy", subject=f"Patient/{patients[0]['id']}")
    assert len(studies) == 3  # the kiosk's, and each film's own
    observations = fhir_peer.search("Observation", subject=f"Patient/{patients[0]['id']}")
    assert len(observations) == 4
    assert {o["device"]["reference"] for o in observations} == {
        f"Device/{d['id']}" for d in fhir_peer.search("Device")
        if d["identifier"][0]["value"] in ("cxr-pneumonia@1.0.1", "cxr-adult@1.0.1")}
    report = fhir_peer.search("DiagnosticReport",
                              identifier=f"urn:kiosk:screening|{screening.uid}")[0]
    assert report["subject"]["reference"] == f"Patient/{patients[0]['id']}"
    assert len(report["result"]) == 4 and len(report["imagingStudy"]) == 3
    store.close()
