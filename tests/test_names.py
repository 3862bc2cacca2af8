"""Names kept in their parts from intake to every writer (issue 18, point 1).

Each name goes into the store, then out through the HL7 ORU (read back with the ``hl7``
library), the FHIR Patient (read back with ``fhir.resources``) and the Secondary Capture / SR
(written to bytes and read back with pydicom), and must come out in the same parts; then to the
real peers (the FHIR server, the MLLP receiver, two Orthancs), which must hold the same parts.
"""

from __future__ import annotations

import io
import sqlite3
from dataclasses import replace
from pathlib import Path

import hl7
import pydicom
import pytest
import requests
from fhir.resources.R4B.patient import Patient as FhirPatient
from peers.fixtures import FhirPeer, OrthancPeer
from peers.mllp import MllpPeer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from store_helpers import png_bytes, result

from hardware.pushed import read_header
from kiosk import names
from kiosk.config import Config
from kiosk.names import NameParts, PersonName
from kiosk.store import Store
from kiosk.store.migrations import MIGRATIONS
from kiosk.sync import make_worker
from kiosk.sync.base import Delivery
from kiosk.sync.dicom_objects import datasets
from kiosk.sync.fhir import bundle
from kiosk.sync.hl7 import build_oru

#: (how it is written in DICOM, family, given names) — multi-word families, particles, and
#: names in other scripts; DICOM's middle-name component is the second given name.
NAMES = [
    ("Verify^VM0000", "Verify", ("VM0000",)),
    ("van der Berg^Anna^Maria", "van der Berg", ("Anna", "Maria")),
    ("de la Cruz^José Luis", "de la Cruz", ("José Luis",)),
    ("García Márquez^Gabriel^^Dr^Jr", "García Márquez", ("Gabriel",)),
    ("Nguyễn^Thị Minh Khai", "Nguyễn", ("Thị Minh Khai",)),
    ("ተስፋዬ^አበበ", "ተስፋዬ", ("አበበ",)),
    ("शर्मा^प्रिया", "शर्मा", ("प्रिया",)),
    ("Aung", "Aung", ()),
]
JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"


def _store(config: Config) -> Store:
    return Store.open(replace(config, min_free_disk_mb=1, fhir_url="http://127.0.0.1:9/fhir",
                              hl7_address="127.0.0.1:9", pacs_address="PACS@127.0.0.1:9"))


def _deliveries(store: Store, name: PersonName | str) -> dict[str, Delivery]:
    """A one-eye screening of a patient with this name, per destination."""
    patient = store.upsert_patient("N-1", name, "1960-01-31", "female", actor="nurse")
    store.record_screening(patient.id, [result()], actor="nurse",  # type: ignore[list-item]
                           image_shas=[store.save_image(png_bytes(1), ".png")],
                           heatmap_shas=[store.save_image(png_bytes(2), ".png")])
    screening = store.worklist()[0]
    return {item.destination: Delivery(item, screening, store) for item in store.due_items(10)}


def _written(store: Store, name: PersonName | str) -> tuple[hl7.Message, FhirPatient, Dataset]:
    """What each writer sent, read back by another implementation."""
    delivery = _deliveries(store, name)
    oru = hl7.parse(build_oru(delivery["hl7"], store.config))
    fhir = bundle(delivery["fhir"], store.config)["entry"][0]["resource"]
    sc = datasets(delivery["dicom"], store.config)[0]
    saved = io.BytesIO()
    sc.save_as(saved, enforce_file_format=True)
    return oru, FhirPatient.model_validate(fhir), pydicom.dcmread(io.BytesIO(saved.getvalue()))


def _film(name: str) -> bytes:
    """A pushed film's bytes with this PatientName (header only matters here)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID = name, "FILM-1"
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID, ds.SOPInstanceUID)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(("written", "family", "given"), NAMES)
def test_a_pushed_film_s_name_arrives_in_its_parts_everywhere(
        config: Config, written: str, family: str, given: tuple[str, ...]) -> None:
    store = _store(config)
    name = read_header(_film(written)).patient_name
    assert name.parts.family == family and name.parts.given == given
    oru, patient, sc = _written(store, name)
    pid5 = oru.segment("PID")[5]
    assert str(pid5) == written.replace("^^Dr^Jr", "^^Jr^Dr")  # XPN: suffix before prefix
    assert oru.extract_field("PID", 1, 5, 1, 1) == family
    [human] = patient.name
    assert human.family == family and tuple(human.given or ()) == given
    assert str(sc.PatientName) == (written if "^" in written else written + "^")
    assert sc.PatientName.family_name == family
    assert names.from_dicom(str(sc.PatientName)) == name


def test_a_japanese_name_keeps_its_ideographic_and_phonetic_groups(config: Config) -> None:
    store = _store(config)
    name = read_header(_film(JAPANESE)).patient_name
    assert name.ideographic == NameParts("山田", ("太郎",))
    oru, patient, sc = _written(store, name)
    assert str(sc.PatientName) == JAPANESE and sc.SpecificCharacterSet == "ISO_IR 192"
    assert sc.PatientName.ideographic == "山田^太郎"
    pid5 = oru.segment("PID")[5]
    assert [str(rep) for rep in pid5] == ["Yamada^Tarou^^^^^L^A", "山田^太郎^^^^^L^I",
                                          "やまだ^たろう^^^^^L^P"]
    assert str(oru.segment("MSH")[18]) == "UNICODE UTF-8"
    assert [(n.family, n.given) for n in patient.name] == [
        ("Yamada", ["Tarou"]), ("山田", ["太郎"]), ("やまだ", ["たろう"])]
    assert [n.extension[0].valueCode for n in patient.name[1:]] == ["IDE", "SYL"]
    assert patient.name[0].text == "Tarou Yamada (山田 太郎)"


def test_a_name_typed_as_parts_is_shown_as_people_write_it(config: Config) -> None:
    store = _store(config)
    typed = names.from_parts("van der Berg", "Anna Maria")
    patient = store.upsert_patient("N-2", typed, None, None, actor="nurse")
    assert patient.name == "Anna Maria van der Berg"
    assert store.get_patient(patient.id).person_name == PersonName(
        NameParts("van der Berg", ("Anna Maria",)), text="Anna Maria van der Berg")
    oru, fhir, sc = _written(store, typed)
    assert str(oru.segment("PID")[5]) == "van der Berg^Anna Maria"
    assert fhir.name[0].family == "van der Berg" and fhir.name[0].given == ["Anna Maria"]
    assert str(sc.PatientName) == "van der Berg^Anna Maria"


def test_a_name_known_only_as_text_is_never_split(config: Config) -> None:
    store = _store(config)
    oru, patient, sc = _written(store, "Kofi Annan Mensah")
    assert str(oru.segment("PID")[5]) == "Kofi Annan Mensah"  # all of it the family component
    assert patient.name[0].text == "Kofi Annan Mensah" and patient.name[0].family is None
    assert patient.name[0].given is None
    assert sc.PatientName.family_name == "Kofi Annan Mensah" and sc.PatientName.given_name == ""


def test_patients_registered_before_the_migration_keep_their_text_name(tmp_path: Path,
                                                                        config: Config) -> None:
    config = replace(config, data_dir=tmp_path / "old", min_free_disk_mb=1)
    config.data_dir.mkdir()
    old = sqlite3.connect(config.db_path)
    for statement in [s for migration in MIGRATIONS[:2] for s in migration]:
        old.execute(statement)
    old.execute("PRAGMA user_version = 2")
    old.execute("INSERT INTO patients (identifier, name, created, updated) VALUES"
                " ('OLD-1', 'Ama Serwaa Mensah', '2026-01-01T00:00:00+00:00',"
                " '2026-01-01T00:00:00+00:00')")
    old.commit()
    old.close()
    store = Store.open(config)
    [patient] = store.find_patients("OLD-1")
    assert patient.name == "Ama Serwaa Mensah"
    assert patient.person_name == PersonName(text="Ama Serwaa Mensah")
    assert not patient.person_name.structured
    assert names.to_dicom(patient.person_name) == "Ama Serwaa Mensah^"


def _orthanc_names(peer: OrthancPeer, identifier: str) -> list[str]:
    found = requests.post(f"{peer.http}/tools/find", timeout=60, json={
        "Level": "Patient", "Query": {"PatientID": identifier}, "Expand": True}).json()
    return [p["MainDicomTags"]["PatientName"] for p in found]


def test_names_arrive_in_their_parts_at_every_real_destination(
        config: Config, fhir_peer: FhirPeer, mllp_peer: MllpPeer,
        orthanc_pair: tuple[OrthancPeer, OrthancPeer]) -> None:
    """FHIR server, MLLP receiver, C-STORE and STOW-RS Orthancs: what each one holds."""
    stored, stowed = orthanc_pair
    store = Store.open(replace(config, min_free_disk_mb=1, sync_timeout_s=10.0,
                               fhir_url=fhir_peer.base, hl7_address=mllp_peer.address,
                               pacs_address=stored.pacs_address,
                               dicomweb_url=stowed.dicomweb_url))
    films = {"NAME-V1": "Verify^VM0000", "NAME-J1": JAPANESE}
    for seed, (identifier, written) in enumerate(films.items()):
        patient = store.upsert_patient(identifier, read_header(_film(written)).patient_name,
                                       None, "female", actor="dicom:XRAY1")
        store.record_screening(patient.id, [result()], actor="nurse",  # type: ignore[list-item]
                               image_shas=[store.save_image(png_bytes(10 + seed), ".png")],
                               heatmap_shas=[store.save_image(png_bytes(20 + seed), ".png")])
    assert make_worker(store).run_once().sent == 8
    store.close()
    for identifier, written in films.items():
        [patient] = fhir_peer.search("Patient", identifier=f"urn:kiosk:patient-id|{identifier}")
        alphabetic = names.from_dicom(written).parts
        assert patient["name"][0]["family"] == alphabetic.family
        assert patient["name"][0]["given"] == list(alphabetic.given)
        [message] = [m for m in mllp_peer.inbox.messages.values()
                     if mllp_peer.inbox.fields(m, "PID")[3].startswith(identifier + "^")]
        pid5 = mllp_peer.inbox.fields(message, "PID")[5]
        assert pid5.split("~")[0].split("^")[:2] == [alphabetic.family, *alphabetic.given]
        assert _orthanc_names(stored, identifier) == _orthanc_names(stowed, identifier) == [
            written]
    assert mllp_peer.inbox.fields(message, "PID")[5] == (  # the last: the Japanese name
        "Yamada^Tarou^^^^^L^A~山田^太郎^^^^^L^I~やまだ^たろう^^^^^L^P")
