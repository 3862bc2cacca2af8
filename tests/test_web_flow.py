"""The screens end to end with the real store and pipeline (tiny signed bundles), real images."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from browser.screening_setup import darkened, model_settings, open_pipeline
from browser.web_support import (
    add_user,
    login,
    make_app,
    page_token,
    post_multipart,
    web_config,
)
from conftest import shared
from flask import Flask
from flask.testing import FlaskClient

from kiosk.pipeline import Pipeline
from kiosk.store import Store


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return model_settings(tmp_path_factory.mktemp("models"))


@pytest.fixture
def kiosk(tmp_path: Path, models: dict[str, object]) -> Iterator[tuple[Flask, Store, Pipeline]]:
    config = web_config(tmp_path, **models)
    pipeline = open_pipeline(config)
    app, store = make_app(config, pipeline=pipeline)
    add_user(store, "nurse", "operator")
    add_user(store, "doctor", "clinician")
    add_user(store, "boss", "admin")
    yield app, store, pipeline
    pipeline.close()
    store.close()


#: A visit of the left eye alone, the reason for the right one recorded (the complete-visit rule).
ONE_EYE = {"missing_R": "declined"}
#: The nurse confirmed the identity warnings (the SIIM film's own PatientID is not ours).
CHECKED = {"identity_checked": "yes"}


def _fundus(name: str = "13_left.jpeg") -> bytes:
    return shared("fundus", "eyepacs-fullres", name).read_bytes()


def _chest() -> bytes:
    return shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes()


def _register(client: FlaskClient, identifier: str = "P-100") -> int:
    token = page_token(client, "/patients")
    answer = client.post("/patients", data={"identifier": identifier, "name": "Ama Mensah",
                                            "birth_date": "1961-04-02", "sex": "female",
                                            "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return int(answer.headers["Location"].split("/")[2])


def _upload(client: FlaskClient, patient_id: int, fields: dict[str, str] | None = None,
            **files: tuple[bytes, str]):
    token = page_token(client, f"/patients/{patient_id}/capture")
    data: dict[str, object] = {"csrf_token": token, **(fields or {})}
    for field, (content, name) in files.items():
        data[field] = (io.BytesIO(content), name)
    return post_multipart(client, f"/patients/{patient_id}/capture", data)


def test_register_upload_both_eyes_and_read_the_result(kiosk) -> None:
    app, store, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client)
    answer = _upload(client, patient_id, right_eye=(_fundus("13_right.jpeg"), "13_right.jpeg"),
                     left_eye=(_fundus("13_left.jpeg"), "13_left.jpeg"))
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    screening = store.get_screening(int(answer.headers["Location"].rsplit("/", 1)[1]))
    assert [r["laterality"] for r in screening.results] == ["R", "L"]
    expected = "Refer to an eye doctor" if screening.verdict == "referable" else "No referral needed"
    assert expected in page
    assert "Right eye" in page and "Left eye" in page
    assert "not for clinical decisions" in page
    assert "Referable diabetic retinopathy" in page or "referable_dr" in page
    assert "PPV" in page and "fundus-dr" in page and "onnxruntime-cpu" in page
    assert "What this model cannot do" in page and "synthetic" in page  # the card's limitations
    with client.get(f"/screenings/{screening.id}/images/0/heatmap") as heatmap:
        assert heatmap.status_code == 200 and heatmap.data.startswith(b"\x89PNG")
    actions = [e.action for e in store.audit_entries("", limit=50)]
    assert "view_result" in actions and "view_heatmap" in actions


def test_an_ungradable_photo_is_retaken_alone_and_the_good_one_kept(kiosk) -> None:
    app, store, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client)
    answer = _upload(client, patient_id, right_eye=(darkened(_fundus("13_right.jpeg")), "dark.jpg"),
                     left_eye=(_fundus(), "13_left.jpeg"))
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert "Retake the photo: the photograph is too dark" in page and "Right eye" in page
    assert "Already taken" in page and "13_left.jpeg" in page
    assert store.worklist() == []  # nothing screened yet
    retaken = _upload(client, patient_id, right_eye=(_fundus("13_right.jpeg"), "13_right.jpeg"))
    assert retaken.status_code == 302, retaken.get_data(as_text=True)[:1500]
    [screening] = store.worklist()
    assert [(r["laterality"], r["input"]) for r in screening.results] == [
        ("R", "13_right.jpeg"), ("L", "13_left.jpeg")]
    assert "Already taken" not in client.get(f"/patients/{patient_id}/capture").get_data(as_text=True)


def test_kept_images_can_be_discarded_and_belong_to_one_patient(kiosk) -> None:
    app, store, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    first = _register(client, "K-1")
    _upload(client, first, right_eye=(darkened(_fundus()), "dark.jpg"),
            left_eye=(_fundus(), "13_left.jpeg"))
    second = _register(client, "K-2")
    assert "Already taken" not in client.get(f"/patients/{second}/capture").get_data(as_text=True)
    assert "Already taken" in client.get(f"/patients/{first}/capture").get_data(as_text=True)
    token = page_token(client, f"/patients/{first}/capture")
    assert client.post(f"/patients/{first}/capture/clear", data={"csrf_token": token}).status_code == 302
    assert "Already taken" not in client.get(f"/patients/{first}/capture").get_data(as_text=True)
    empty = post_multipart(client, f"/patients/{first}/capture", {"csrf_token": token})
    assert empty.status_code == 422 and store.worklist() == []


def test_two_visits_in_two_tabs_keep_their_images_and_an_older_cookie_loses_none(kiosk) -> None:
    """The kept images were named in the session cookie, one patient at a time: a second tab's
    visit replaced the first's, and any response carrying an older cookie (a request in flight
    when the capture answered) wrote the list back without them. They are in the store now, per
    user and patient (kiosk/store/visit_images.py). Both assertions fail on the cookie version."""
    app, store, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    first, second = _register(client, "TAB-1"), _register(client, "TAB-2")
    before = client.get_cookie("kiosk_session")
    assert before is not None
    _upload(client, first, right_eye=(darkened(_fundus("13_right.jpeg")), "dark.jpg"),
            left_eye=(_fundus(), "13_left.jpeg"))
    _upload(client, second, right_eye=(_fundus("13_right.jpeg"), "13_right.jpeg"),
            left_eye=(darkened(_fundus()), "dark-left.jpg"))
    for patient, name in ((first, "13_left.jpeg"), (second, "13_right.jpeg")):
        page = client.get(f"/patients/{patient}/capture").get_data(as_text=True)
        assert "Already taken" in page and name in page, patient
    client.set_cookie("kiosk_session", before.value)  # a late response wrote the older cookie back
    assert "Already taken" in client.get(f"/patients/{first}/capture").get_data(as_text=True)
    retaken = _upload(client, first, right_eye=(_fundus("13_right.jpeg"), "13_right.jpeg"))
    assert retaken.status_code == 302, retaken.get_data(as_text=True)[:1500]
    [screening] = store.worklist()
    assert [r["input"] for r in screening.results] == ["13_right.jpeg", "13_left.jpeg"]
    other = app.test_client()  # another user sees none of the nurse's kept images
    login(other, "doctor")
    assert "Already taken" not in other.get(f"/patients/{second}/capture").get_data(as_text=True)


def _check(client: FlaskClient, patient_id: int, name: str, eye: str) -> str:
    """The capture page's instant check of one photo; the handle it gives the form."""
    token = page_token(client, f"/patients/{patient_id}/capture")
    answer = post_multipart(client, "/api/check", {
        "image": (io.BytesIO(_fundus(name)), name), "task": "fundus-dr", "laterality": eye,
        "patient_id": str(patient_id)}, headers={"X-CSRFToken": token})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    [handle] = answer.get_json()["handles"]
    return str(handle)


def test_checked_photos_are_sent_by_handle_whatever_order_the_answers_came_in(kiosk) -> None:
    """The two eyes' checks answer in any order and the form may be sent before the session
    cookie of either came back: the handles themselves carry what the server needs (signed)."""
    app, store, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client)
    stale_cookie = client.get_cookie("kiosk_session")
    right = _check(client, patient_id, "13_right.jpeg", "R")
    left = _check(client, patient_id, "13_left.jpeg", "L")
    assert stale_cookie is not None  # the session from before either check came back:
    client.set_cookie(stale_cookie.key, stale_cookie.value)
    answer = _upload(client, patient_id, {"checked_right_eye": right, "checked_left_eye": left})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:1500]
    [screening] = store.worklist()
    assert [(r["laterality"], r["input"]) for r in screening.results] == [
        ("R", "13_right.jpeg"), ("L", "13_left.jpeg")]


def test_a_forged_or_anothers_handle_is_refused_and_nothing_is_recorded(kiosk) -> None:
    app, store, _ = kiosk
    nurse, other = app.test_client(), app.test_client()
    login(nurse, "nurse")
    login(other, "doctor")
    patient_id = _register(nurse)
    theirs = _check(other, patient_id, "13_left.jpeg", "L")
    mine = _check(nurse, patient_id, "13_right.jpeg", "R")
    for handle in (theirs, mine[:-2] + "xx", store.save_image(_fundus(), ".jpeg")):
        answer = _upload(nurse, patient_id, {"checked_right_eye": mine, "checked_left_eye": handle})
        assert answer.status_code == 422
        assert "could not be found again: choose it again" in answer.get_data(as_text=True)
    assert store.worklist() == []


def test_a_file_that_is_no_image_is_refused_with_a_reason(kiosk) -> None:
    app, _store, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client)
    answer = _upload(client, patient_id, chest=(b"%PDF-1.4 a letter", "letter.pdf"))
    assert answer.status_code == 422
    assert "Not screened: " in answer.get_data(as_text=True)


def test_chest_dicom_then_clinician_overrules_and_the_slip_prints(kiosk) -> None:
    app, store, _ = kiosk
    nurse = app.test_client()
    login(nurse, "nurse")
    patient_id = _register(nurse, "CXR-7")
    answer = _upload(nurse, patient_id, chest=(_chest(), "siim.dcm"), fields=CHECKED)
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    screening_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    page = nurse.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Chest X-ray" in page and "Pneumothorax" in page
    assert "Save sign-off" not in page  # operators do not sign off
    doctor = app.test_client()
    login(doctor, "doctor")
    worklist = doctor.get("/worklist").get_data(as_text=True)
    assert f"/screenings/{screening_id}" in worklist
    token = page_token(doctor, f"/screenings/{screening_id}")
    refused = doctor.post(f"/screenings/{screening_id}/sign-off",
                          data={"decision": "overrule", "note": "", "csrf_token": token})
    assert refused.status_code == 400
    saved = doctor.post(f"/screenings/{screening_id}/sign-off",
                        data={"decision": "overrule", "verdict": "non_referable",
                              "note": "Skin fold, no pneumothorax", "csrf_token": token})
    assert saved.status_code == 302
    signed = store.get_screening(screening_id).sign_off
    assert signed is not None and signed.decision == "overrule" and signed.clinician == "doctor"
    assert "Skin fold" in doctor.get(f"/screenings/{screening_id}").get_data(as_text=True)
    slip = doctor.get(f"/screenings/{screening_id}/slip.pdf")
    assert slip.status_code == 200 and slip.mimetype == "application/pdf"
    assert slip.data.startswith(b"%PDF") and len(slip.data) > 1000
    assert b"(No referral needed)" in slip.data and b"Decided by the clinician" in slip.data
    assert b"not for clinical decisions" in slip.data and b"CXR-7" in slip.data
    assert store.audit_entries("export_referral_slip")


def test_the_same_film_sent_again_is_not_screened_twice(kiosk) -> None:
    """A DICOM film uploaded again (or first pushed by the X-ray unit) is the same film: its
    result is shown, not a second screening sent twice to the EHR and the PACS. For another
    patient it is refused with the reason; a film whose UID comes back with other pixels is
    screened, with a warning. Before, the web app screened every upload again."""
    app, store, _ = kiosk
    nurse = app.test_client()
    login(nurse, "nurse")
    patient_id = _register(nurse, "FILM-1")
    first = _upload(nurse, patient_id, chest=(_chest(), "siim.dcm"), fields=CHECKED)
    assert first.status_code == 302, first.get_data(as_text=True)[:2000]
    again = _upload(nurse, patient_id, chest=(_chest(), "siim-again.dcm"), fields=CHECKED)
    assert again.status_code == 302 and again.headers["Location"] == first.headers["Location"]
    page = nurse.get(again.headers["Location"]).get_data(as_text=True)
    screening_id = int(first.headers["Location"].rsplit("/", 1)[1])
    assert f"This image was screened before: this is its result (screening {screening_id})" in page
    assert len(store.worklist()) == 1
    other = _register(nurse, "FILM-2")
    refused = _upload(nurse, other, chest=(_chest(), "siim.dcm"), fields=CHECKED)
    assert refused.status_code == 422 and len(store.worklist()) == 1
    assert "was screened before for another patient" in refused.get_data(as_text=True)
    with_eyes = _upload(nurse, patient_id, chest=(_chest(), "siim.dcm"),
                        right_eye=(_fundus("13_right.jpeg"), "13_right.jpeg"),
                        left_eye=(_fundus("13_left.jpeg"), "13_left.jpeg"), fields=CHECKED)
    assert with_eyes.status_code == 422 and len(store.worklist()) == 1
    assert "take the image out of this visit" in with_eyes.get_data(as_text=True)
    assert "13_left.jpeg" in with_eyes.get_data(as_text=True)  # the eyes stay kept
    assert len(store.audit_entries("capture_film_seen_before")) == 3
    uid = pydicom.dcmread(io.BytesIO(_chest())).SOPInstanceUID
    ds = pydicom.dcmread(shared("dicom", "RG1_J2KI.dcm"))  # another chest film under that UID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.PatientID = "FILM-1"
    changed = io.BytesIO()
    ds.save_as(changed)
    reused = _upload(nurse, patient_id, chest=(changed.getvalue(), "reused-uid.dcm"),
                     fields=CHECKED)
    assert reused.status_code == 302, reused.get_data(as_text=True)[:2000]
    second = store.get_screening(int(reused.headers["Location"].rsplit("/", 1)[1]))
    assert second.id != screening_id
    [film] = [r for r in second.results if r["input"] == "reused-uid.dcm"]  # the kept eyes joined
    assert any("was screened before with different pixels" in w for w in film["warnings"])


def test_worklist_puts_urgent_chest_findings_first(kiosk) -> None:
    app, store, _pipeline = kiosk
    client = app.test_client()
    login(client, "nurse")
    eye_patient = _register(client, "EYE-1")
    _upload(client, eye_patient, left_eye=(_fundus(), "13_left.jpeg"), fields=ONE_EYE)
    chest_patient = _register(client, "CXR-1")
    _upload(client, chest_patient, chest=(_chest(), "siim.dcm"), fields=CHECKED)
    rows = store.worklist()
    assert len(rows) == 2
    page = client.get("/worklist").get_data(as_text=True)
    first, second = (f"/screenings/{s.id}" for s in rows)
    assert page.index(first) < page.index(second)
    if rows[0].priority >= 2:
        assert "Urgent" in page


def test_sync_page_shows_queues_and_a_clinician_retries_a_parked_item(tmp_path: Path, models) -> None:
    config = web_config(tmp_path, fhir_url="http://127.0.0.1:9/fhir", **models)
    pipeline = open_pipeline(config)
    app, store = make_app(config, pipeline=pipeline)
    add_user(store, "nurse", "operator")
    add_user(store, "doctor", "clinician")
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client)
    _upload(client, patient_id, left_eye=(_fundus(), "13_left.jpeg"), fields=ONE_EYE)
    [item] = store.due_items()
    store.park_item(item.id, "422 Unprocessable: invalid Patient")
    page = client.get("/sync").get_data(as_text=True)
    assert "FHIR" in page and "invalid Patient" in page and "Retry" not in page
    doctor = app.test_client()
    login(doctor, "doctor")
    token = page_token(doctor, "/sync")
    assert doctor.post(f"/sync/items/{item.id}/retry", data={"csrf_token": token}).status_code == 302
    assert store.parked_items() == []
    pipeline.close()


def test_admin_sees_models_sets_prevalence_adds_users_and_audits(kiosk) -> None:
    app, store, pipeline = kiosk
    client = app.test_client()
    login(client, "boss")
    page = client.get("/admin/").get_data(as_text=True)
    assert "fundus-dr" in page and "verified" in page and "onnxruntime-cpu" in page
    assert "median per image today" not in page  # nothing screened yet
    assert "This device" in page and "MB free of" in page  # hardware status panel
    token = page_token(client, "/admin/")
    assert client.post("/admin/settings", data={"prevalence:fundus-dr": "25",
                                                "csrf_token": token}).status_code == 302
    assert store.get_setting("prevalence:fundus-dr") == "0.2500"
    outcome = pipeline.screen(_fundus(), source="13_left.jpeg")[0]
    assert outcome.result["findings"][0]["prevalence"] == pytest.approx(0.25)
    bad = client.post("/admin/settings", data={"prevalence:fundus-dr": "150", "csrf_token": token})
    assert bad.status_code == 400
    added = client.post("/admin/users", data={"username": "grace", "role": "clinician",
                                              "password": "a long password", "csrf_token": token})
    assert added.status_code == 302 and store.get_user("grace").role == "clinician"
    weak = client.post("/admin/users", data={"username": "tom", "role": "operator",
                                             "password": "short", "csrf_token": token})
    assert weak.status_code == 400 and store.get_user("tom") is None
    audit = client.get("/admin/audit?q=setting").get_data(as_text=True)
    assert "Tamper check passed" in audit and "prevalence:fundus-dr" in audit


def test_patient_search_by_scanned_id_goes_straight_to_capture(kiosk) -> None:
    app, store, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client, "BC-0042")
    answer = client.get("/patients?q=BC-0042")
    assert answer.status_code == 302 and answer.headers["Location"] == f"/patients/{patient_id}/capture"
    assert "Ama Mensah" in client.get("/patients?q=Mensah").get_data(as_text=True)
    assert store.audit_entries("search_patients")


def test_bad_patient_forms_say_what_is_wrong(kiosk) -> None:
    app, _, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    token = page_token(client, "/patients")
    for form, words in [({"identifier": "", "name": "A"}, "patient id"),
                        ({"identifier": "X1", "name": ""}, "name"),
                        ({"identifier": "X1", "name": "A", "birth_date": "2999-01-01"}, "not possible")]:
        answer = client.post("/patients", data={**form, "csrf_token": token})
        assert answer.status_code == 400 and words in answer.get_data(as_text=True)


def test_audit_page_shows_a_tampered_log(kiosk) -> None:
    app, store, _ = kiosk
    client = app.test_client()
    login(client, "boss")
    client.get("/worklist")
    with store.db.write() as conn:  # someone with the file drops the guard and edits an entry
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE id = 2")
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "Tamper check FAILED at entry 2" in page


def test_every_view_or_export_of_patient_data_is_audited(kiosk) -> None:
    app, store, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client, "AUD-1")
    answer = _upload(client, patient_id, left_eye=(_fundus(), "13_left.jpeg"), fields=ONE_EYE)
    screening_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    views = [f"/patients/{patient_id}/capture", f"/screenings/{screening_id}",
             f"/screenings/{screening_id}/images/0/heatmap",
             f"/screenings/{screening_id}/images/0/original",
             f"/screenings/{screening_id}/slip.pdf", "/worklist", "/patients?q=Mensah",
             f"/api/screenings/{screening_id}", "/api/patients?q=AUD"]
    for url in views:
        before = len(store.audit_entries(limit=10_000))
        with client.get(url) as response:
            assert response.status_code == 200, url
        entries = store.audit_entries(limit=10_000)
        assert len(entries) == before + 1, url
        assert entries[0].actor == "nurse", url


def test_result_page_of_an_ungradable_screening_recorded_elsewhere(kiosk) -> None:
    """The DICOM listener records what it was sent, ungradable or refused: the page still says
    what to do, and the slip prints."""
    app, store, pipeline = kiosk
    patient = store.upsert_patient("L-1", "Yaa Asantewaa", None, None, actor="listener")
    outcomes = [pipeline.screen(darkened(_fundus()), source="dark.jpg", laterality="L")[0],
                pipeline.screen(b"junk", source="junk.bin")[0]]
    shas = [store.save_image(darkened(_fundus()), ".jpg"), store.save_image(b"junk", ".bin")]
    screening = store.record_screening(patient.id, [o.result for o in outcomes], actor="listener",
                                       image_shas=shas, heatmap_shas=[None, None])
    client = app.test_client()
    login(client, "doctor")
    page = client.get(f"/screenings/{screening.id}").get_data(as_text=True)
    assert "Retake the photo: the photograph is too dark" in page
    assert "Not screened: " in page and "Left eye" in page
    assert screening.verdict in ("retake", "ungradable")
    with client.get(f"/screenings/{screening.id}/images/0/original") as original:
        assert original.status_code == 200 and original.mimetype == "image/jpeg"
    slip = client.get(f"/screenings/{screening.id}/slip.pdf")
    assert slip.status_code == 200 and b"Retake the photo" in slip.data
    assert "Yaa Asantewaa" in client.get("/worklist").get_data(as_text=True)


def test_without_a_model_capture_says_so_and_nothing_is_recorded(tmp_path: Path) -> None:
    app, store = make_app(web_config(tmp_path, models_dir=tmp_path / "empty"))
    add_user(store, "nurse", "operator")
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client, "NM-1")
    answer = _upload(client, patient_id, left_eye=(_fundus(), "13_left.jpeg"), fields=ONE_EYE)
    assert answer.status_code == 503
    assert "No screening model is ready on this kiosk" in answer.get_data(as_text=True)
    assert store.worklist() == []


def test_a_search_that_finds_nobody_starts_the_registration(kiosk) -> None:
    app, _, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    by_id = client.get("/patients?q=BC-7731").get_data(as_text=True)
    assert 'name="identifier" value="BC-7731"' in by_id
    by_name = client.get("/patients?q=Akosua").get_data(as_text=True)
    assert 'name="family_name" value="Akosua"' in by_name and 'name="identifier" value=""' in by_name


def test_the_nurse_types_family_and_given_names_apart(kiosk) -> None:
    """Kept apart for FHIR, HL7 and DICOM; shown as people write them (issue 18.1)."""
    app, store, _ = kiosk
    client = app.test_client()
    login(client, "nurse")
    token = page_token(client, "/patients")
    answer = client.post("/patients", data={"identifier": "N-7", "family_name": "van der Berg",
                                            "given_names": " Anna  Maria ", "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    [patient] = store.find_patients("N-7")
    assert patient.name == "Anna Maria van der Berg"
    assert (patient.person_name.parts.family, patient.person_name.parts.given) == (
        "van der Berg", ("Anna Maria",))
    assert "Anna Maria van der Berg" in client.get(answer.headers["Location"]).get_data(as_text=True)


def test_the_same_photographs_sent_again_are_not_screened_twice(kiosk) -> None:
    """A photograph has no UID, but the very same file (by sha256) chosen again, or uploaded
    twice, is the image already screened: its result is shown, and for another patient the
    upload is refused with the reason. Before, every upload of a photograph was screened anew
    (a second screening, sent twice to the EHR)."""
    app, store, _ = kiosk
    nurse = app.test_client()
    login(nurse, "nurse")
    patient_id = _register(nurse, "EYE-1")
    eyes = {"right_eye": (_fundus("13_right.jpeg"), "13_right.jpeg"),
            "left_eye": (_fundus("13_left.jpeg"), "13_left.jpeg")}
    first = _upload(nurse, patient_id, fields=CHECKED, **eyes)
    assert first.status_code == 302, first.get_data(as_text=True)[:2000]
    screening_id = int(first.headers["Location"].rsplit("/", 1)[1])
    again = _upload(nurse, patient_id, fields=CHECKED,  # renamed, the same bytes
                    right_eye=(_fundus("13_right.jpeg"), "renamed.jpeg"), left_eye=eyes["left_eye"])
    assert again.status_code == 302 and again.headers["Location"] == first.headers["Location"]
    page = nurse.get(again.headers["Location"]).get_data(as_text=True)
    assert f"This image was screened before: this is its result (screening {screening_id})" in page
    mixed = _upload(nurse, patient_id, fields=CHECKED, right_eye=eyes["right_eye"],
                    left_eye=(_fundus("10_left.jpeg"), "10_left.jpeg"))  # one new photograph
    assert mixed.status_code == 422 and "take the image out of this visit" in mixed.get_data(as_text=True)
    other = _register(nurse, "EYE-2")
    refused = _upload(nurse, other, fields=CHECKED, **eyes)
    assert refused.status_code == 422
    assert "was screened before for another patient" in refused.get_data(as_text=True)
    assert len(store.worklist()) == 1 and len(store.audit_entries("capture_film_seen_before")) == 3


def test_the_same_capture_form_sent_twice_at_once_records_one_screening(kiosk) -> None:
    app, store, _ = kiosk
    first, second = app.test_client(), app.test_client()
    login(first, "nurse")
    login(second, "nurse")
    patient_id = _register(first, "TAP-2")
    answers: list[object] = []

    def send(client: FlaskClient) -> None:
        answers.append(_upload(client, patient_id, fields={**ONE_EYE, "visit_token": "tap-abc"},
                               left_eye=(_fundus(), "13_left.jpeg")))

    taps = [threading.Thread(target=send, args=(c,)) for c in (first, second)]
    for tap in taps:
        tap.start()
    for tap in taps:
        tap.join()
    assert [a.status_code for a in answers] == [302, 302]  # type: ignore[attr-defined]
    assert len({a.headers["Location"] for a in answers}) == 1  # type: ignore[attr-defined]
    assert len([s for s in store.worklist() if s.patient.identifier == "TAP-2"]) == 1
