"""The offline store: pragmas, migrations, records, audit chain, outbox rows, backup."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from store_helpers import png_bytes, result, screen

from kiosk.config import Config
from kiosk.errors import (
    AlreadySignedError,
    DiskFullError,
    NotFoundError,
    SignOffError,
    StoreError,
)
from kiosk.store import Store
from kiosk.store.db import Database
from kiosk.store.migrations import MIGRATIONS


@pytest.fixture
def store(config: Config) -> Store:
    cfg = replace(config, fhir_url="http://127.0.0.1:9/fhir", hl7_address="127.0.0.1:9",
                  min_free_disk_mb=1)
    opened = Store.open(cfg)
    yield opened
    opened.close()


def test_store_runs_wal_with_synchronous_full(store: Store) -> None:
    with store.db.read() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_store_refuses_a_schema_newer_than_the_code(config: Config) -> None:
    config.data_dir.mkdir(parents=True)
    conn = sqlite3.connect(config.db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError) as caught:
        Database(config.db_path)
    assert caught.value.code == "store_too_new"


def test_reopening_keeps_data_and_applies_no_migration_twice(config: Config) -> None:
    first = Store.open(config)
    first.upsert_patient("A1", "Ama", None, None, actor="nurse")
    first.close()
    second = Store.open(config)
    assert [p.identifier for p in second.find_patients("A1")] == ["A1"]
    second.close()


def test_users_roles_and_passwords(store: Store) -> None:
    user = store.add_user("nurse1", "hash-1", "operator")
    assert store.get_user("nurse1") == user
    assert store.get_user_by_id(user.id) == user
    store.set_password_hash("nurse1", "hash-2")
    assert store.get_user("nurse1").password_hash == "hash-2"
    with pytest.raises(StoreError):
        store.add_user("nurse1", "x", "operator")
    with pytest.raises(StoreError):
        store.add_user("x", "x", "superuser")
    with pytest.raises(NotFoundError):
        store.set_password_hash("nobody", "x")
    assert [u.username for u in store.list_users()] == ["nurse1"]
    assert store.get_user("nobody") is None


def test_patients_upsert_and_find(store: Store) -> None:
    first = store.upsert_patient("HC-77", "Kofi Mensah", "1950-02-03", "male", actor="nurse")
    again = store.upsert_patient("HC-77", "Kofi A. Mensah", "1950-02-03", "male", actor="nurse")
    assert again.id == first.id and again.name == "Kofi A. Mensah"
    assert [p.id for p in store.find_patients("mensah")] == [first.id]
    with pytest.raises(NotFoundError):
        store.get_patient(999)


def test_record_screening_writes_results_and_one_outbox_item_per_destination(
        store: Store) -> None:
    screening = screen(store, 1)
    assert screening.verdict == "referable"
    assert len(screening.results) == 2 and screening.results[0]["laterality"] == "L"
    loaded = store.get_screening(screening.id)
    assert loaded.results == screening.results and loaded.image_shas == screening.image_shas
    with store.db.read() as conn:
        rows = conn.execute("SELECT destination, report_status, idempotency_key FROM outbox"
                            " ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("fhir", "preliminary"), ("hl7", "preliminary")]
    assert len({r[2] for r in rows}) == 2
    status = {s.destination: s for s in store.outbox_status()}
    assert status["fhir"].waiting == 1 and status["hl7"].oldest is not None


def test_a_failing_screening_write_leaves_nothing_behind(store: Store) -> None:
    sha = store.save_image(png_bytes(3), ".png")
    with pytest.raises(NotFoundError):
        store.record_screening(12345, [result()], actor="nurse", image_shas=[sha],
                               heatmap_shas=[None])
    with pytest.raises(NotFoundError):  # an image that was never saved
        patient = store.upsert_patient("Q", "Q", None, None, actor="nurse")
        store.record_screening(patient.id, [result()], actor="nurse", image_shas=["0" * 64],
                               heatmap_shas=[None])
    with store.db.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM screenings").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_sign_off_queues_the_final_report_and_only_once(store: Store) -> None:
    screening = screen(store, 2)
    signed = store.sign_off(screening.id, clinician="dr_a", decision="overrule",
                            note="haemorrhages are artefacts", verdict="non_referable")
    assert signed.sign_off is not None and signed.sign_off.verdict == "non_referable"
    assert signed.verdict == "referable"  # the kiosk's own verdict is kept as it was
    with store.db.read() as conn:
        finals = conn.execute("SELECT COUNT(*) FROM outbox WHERE report_status = 'final'")
        assert finals.fetchone()[0] == 2
    with pytest.raises(AlreadySignedError):  # a signed result is never rewritten (HTTP 409)
        store.sign_off(screening.id, clinician="dr_b", decision="confirm", note="")
    with pytest.raises(SignOffError, match="write why"):  # overruling needs a verdict and a note
        store.sign_off(screen(store, 3).id, clinician="dr_a", decision="overrule", note="")
    with pytest.raises(SignOffError, match="right verdict"):
        store.sign_off(screen(store, 4).id, clinician="dr_a", decision="overrule", note="why",
                       verdict="maybe")


def test_worklist_puts_unsigned_urgent_first(store: Store) -> None:
    calm = screen(store, 4, verdicts=("non_referable", "non_referable"))
    urgent = screen(store, 5)
    done = screen(store, 6)
    store.sign_off(done.id, clinician="dr_a", decision="confirm", note="")
    assert [s.id for s in store.worklist()] == [urgent.id, calm.id, done.id]


def test_images_are_content_addressed_and_whole(store: Store) -> None:
    data = png_bytes(7)
    sha = store.save_image(data, ".PNG")
    assert store.save_image(data, ".png") == sha
    path = store.image_path(sha)
    assert path.read_bytes() == data and path.name == f"{sha}.png"
    assert not list(path.parent.glob(".tmp-*"))
    with pytest.raises(NotFoundError):
        store.image_path("f" * 64)
    with pytest.raises(StoreError):
        store.save_image(data, "../x")


def test_low_disk_refuses_before_writing(config: Config) -> None:
    hungry = Store.open(replace(config, min_free_disk_mb=10**9))
    with pytest.raises(DiskFullError) as caught:
        hungry.save_image(png_bytes(8), ".png")
    assert "nothing was saved" in caught.value.message
    assert not list((config.data_dir / "images").rglob("*.png"))
    hungry.close()


def test_audit_chain_detects_tampering(store: Store) -> None:
    screen(store, 9)
    store.audit("dr_a", "result.view", patient_id=1, detail="screening 1")
    assert store.verify_audit() == (True, None)
    entries = store.audit_entries()
    assert entries[0].action == "result.view" and entries[-1].action == "patient.register"
    with store.db.write() as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE id = 2")
    with store.db.write() as conn:  # someone with the file drops the guard and edits an entry
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit SET detail = 'nothing happened' WHERE id = 2")
    assert store.verify_audit() == (False, 2)


def test_audit_detects_a_removed_entry(store: Store) -> None:
    for n in range(4):
        store.audit("nurse", "login", detail=str(n))
    with store.db.write() as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DELETE FROM audit WHERE id = 2")
    assert store.verify_audit() == (False, 3)


def test_settings_fall_back_and_are_audited(store: Store) -> None:
    assert store.get_setting("prevalence_fundus_dr", "0.1") == "0.1"
    store.set_setting("prevalence_fundus_dr", "0.2", actor="admin")
    assert store.get_setting("prevalence_fundus_dr") == "0.2"
    assert store.audit_entries("prevalence")[0].actor == "admin"


def test_parked_items_are_visible_and_retriable(store: Store) -> None:
    screen(store, 10)
    item = store.due_items()[0]
    store.park_item(item.id, "AR: unknown patient")
    assert [p.id for p in store.parked_items()] == [item.id]
    assert {s.destination: s.parked for s in store.outbox_status()}[item.destination] == 1
    assert item.id not in [i.id for i in store.due_items()]
    store.retry_item(item.id, actor="admin")
    assert store.get_item(item.id).state == "waiting" and not store.parked_items()
    with pytest.raises(StoreError):
        store.retry_item(item.id)


def test_backup_is_a_consistent_copy(store: Store, tmp_path: Path) -> None:
    screen(store, 11)
    target = tmp_path / "backups" / "kiosk-copy.db"
    store.backup(target)
    copy = sqlite3.connect(target)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT COUNT(*) FROM screenings").fetchone()[0] == 1
    copy.close()
