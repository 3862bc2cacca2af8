"""Users, patients, screenings and sign-offs: reads and writes on an open connection."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import date, datetime, time, timedelta

from kiosk import names
from kiosk.accounts import ROLES
from kiosk.decide import combine
from kiosk.errors import AlreadySignedError, NotFoundError, SignOffError, StoreError
from kiosk.names import NameParts, PersonName
from kiosk.result import Result
from kiosk.store.db import from_text, to_text, utc_now
from kiosk.store.models import Patient, ReceivedFilm, Screening, SignOff, User

DECISIONS = ("confirm", "overrule")
#: The verdicts a clinician may stand behind when overruling.
VERDICTS = ("referable", "non_referable", "ungradable")


def user_from_row(row: sqlite3.Row | None) -> User | None:
    """A User from its row, or None."""
    if row is None:
        return None
    return User(id=row["id"], username=row["username"], role=row["role"],
                password_hash=row["password_hash"])


def insert_user(conn: sqlite3.Connection, username: str, password_hash: str, role: str) -> int:
    """Add a user; refuses an unknown role or a taken username."""
    if role not in ROLES:
        raise StoreError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}",
                         code="bad_role")
    try:
        cursor = conn.execute(
            "INSERT INTO users (username, password_hash, role, created) VALUES (?, ?, ?, ?)",
            (username, password_hash, role, to_text(utc_now())),
        )
    except sqlite3.IntegrityError as exc:
        raise StoreError(f"the user name {username!r} is taken", code="user_exists") from exc
    return int(cursor.lastrowid or 0)


def person_name_from_row(row: sqlite3.Row) -> PersonName:
    """The name in its parts; text only when it was never split (``family_name`` NULL)."""
    if row["family_name"] is None:
        return names.from_text(row["name"])
    parts = NameParts(row["family_name"], tuple(json.loads(row["given_names"])),
                      row["name_prefix"], row["name_suffix"])
    return PersonName(parts, text=row["name"], ideographic=names.group_from_text(row["name_ideographic"]),
                      phonetic=names.group_from_text(row["name_phonetic"]))


def patient_from_row(row: sqlite3.Row) -> Patient:
    """A Patient from its row."""
    return Patient(id=row["id"], identifier=row["identifier"], name=row["name"],
                   birth_date=row["birth_date"], sex=row["sex"],
                   created=from_text(row["created"]), person_name=person_name_from_row(row))


def _name_columns(name: PersonName) -> tuple[str, str | None, str, str, str, str, str]:
    """(name as shown, family, given JSON, prefix, suffix, ideographic, phonetic) to store."""
    shown = name.display.strip()
    if not name.structured:
        return shown, None, "[]", "", "", "", ""
    p = name.parts
    return (shown, p.family, json.dumps(list(p.given), ensure_ascii=False), p.prefix, p.suffix,
            names.group_to_text(name.ideographic), names.group_to_text(name.phonetic))


def upsert_patient(conn: sqlite3.Connection, identifier: str, name: PersonName | str,
                   birth_date: str | None, sex: str | None) -> tuple[int, bool]:
    """Register or update a patient by identifier; returns (id, created?).

    A name given as plain text is kept as text (never split into family and given names).
    """
    identifier = identifier.strip()
    columns = _name_columns(names.from_text(name) if isinstance(name, str) else name)
    if not identifier or not columns[0]:
        raise StoreError("a patient needs an identifier and a name", code="bad_patient")
    now = to_text(utc_now())
    row = conn.execute("SELECT id FROM patients WHERE identifier = ?", (identifier,)).fetchone()
    if row is not None:
        conn.execute(
            "UPDATE patients SET name = ?, family_name = ?, given_names = ?, name_prefix = ?,"
            " name_suffix = ?, name_ideographic = ?, name_phonetic = ?, birth_date = ?, sex = ?,"
            " updated = ? WHERE id = ?",
            (*columns, birth_date, sex, now, row["id"]),
        )
        return int(row["id"]), False
    cursor = conn.execute(
        "INSERT INTO patients (name, family_name, given_names, name_prefix, name_suffix,"
        " name_ideographic, name_phonetic, identifier, birth_date, sex, created, updated)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*columns, identifier, birth_date, sex, now, now),
    )
    return int(cursor.lastrowid or 0), True


def get_patient(conn: sqlite3.Connection, patient_id: int) -> Patient:
    """The patient with this id (NotFoundError when absent)."""
    row = conn.execute("SELECT * FROM patients WHERE id = ?", (patient_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no patient with id {patient_id}")
    return patient_from_row(row)


def find_patients(conn: sqlite3.Connection, query: str, limit: int) -> list[Patient]:
    """Patients whose identifier or name contains the query, most recently registered first."""
    like = f"%{query.strip()}%"
    rows = conn.execute(
        "SELECT * FROM patients WHERE identifier LIKE ? OR name LIKE ? ORDER BY id DESC LIMIT ?",
        (like, like, limit),
    ).fetchall()
    return [patient_from_row(row) for row in rows]


def insert_screening(conn: sqlite3.Connection, patient_id: int, results: list[Result], actor: str,
                     image_shas: list[str], heatmap_shas: list[str | None]) -> int:
    """Write a screening and its per-image results; returns its id."""
    if not results or len(results) != len(image_shas) or len(results) != len(heatmap_shas):
        raise StoreError("a screening needs one image and one heat-map entry per result",
                         code="bad_screening")
    get_patient(conn, patient_id)
    overall = combine(results)
    cursor = conn.execute(
        "INSERT INTO screenings (uid, patient_id, created, verdict, priority, actor)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (uuid.uuid4().hex, patient_id, to_text(utc_now()), str(overall["verdict"]),
         int(overall.get("priority") or 0), actor),
    )
    screening_id = int(cursor.lastrowid or 0)
    for position, (result, image_sha, heatmap_sha) in enumerate(
            zip(results, image_shas, heatmap_shas, strict=True)):
        conn.execute(
            "INSERT INTO results (screening_id, position, result_json, image_sha, heatmap_sha)"
            " VALUES (?, ?, ?, ?, ?)",
            (screening_id, position, json.dumps(result, sort_keys=True), image_sha, heatmap_sha),
        )
    return screening_id


def insert_received_films(conn: sqlite3.Connection, screening_id: int,
                          films: list[ReceivedFilm]) -> None:
    """Note the films a screening was made of (in the screening's own transaction)."""
    for film in films:
        conn.execute(
            "INSERT OR IGNORE INTO received_films (sop_uid, pixel_sha256, screening_id,"
            " calling_ae, received) VALUES (?, ?, ?, ?, ?)",
            (film.sop_uid, film.pixel_sha256, screening_id, film.calling_ae, to_text(utc_now())),
        )


def received_films(conn: sqlite3.Connection, sop_uid: str) -> list[ReceivedFilm]:
    """Every film received under this SOP Instance UID, first screened first."""
    rows = conn.execute("SELECT * FROM received_films WHERE sop_uid = ? ORDER BY screening_id",
                        (sop_uid,)).fetchall()
    return [ReceivedFilm(r["sop_uid"], r["pixel_sha256"], r["calling_ae"], r["screening_id"])
            for r in rows]


def screening_for_image(conn: sqlite3.Connection, image_sha: str) -> int | None:
    """The id of the first screening holding the image with this sha256, if any."""
    row = conn.execute("SELECT screening_id FROM results WHERE image_sha = ? ORDER BY screening_id LIMIT 1",
                       (image_sha,)).fetchone()
    return int(row["screening_id"]) if row is not None else None


def get_screening(conn: sqlite3.Connection, screening_id: int) -> Screening:
    """The screening with its results, patient and sign-off (NotFoundError when absent)."""
    row = conn.execute("SELECT * FROM screenings WHERE id = ?", (screening_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no screening with id {screening_id}")
    results = conn.execute(
        "SELECT * FROM results WHERE screening_id = ? ORDER BY position", (screening_id,)
    ).fetchall()
    signed = conn.execute(
        "SELECT * FROM sign_offs WHERE screening_id = ?", (screening_id,)
    ).fetchone()
    created = from_text(row["created"])
    return Screening(
        id=row["id"], uid=row["uid"], patient=get_patient(conn, row["patient_id"]),
        created=created, results=[json.loads(r["result_json"]) for r in results],
        image_shas=[r["image_sha"] for r in results],
        heatmap_shas=[r["heatmap_sha"] for r in results],
        verdict=row["verdict"], priority=row["priority"],
        sign_off=_sign_off(signed), waited=max(utc_now() - created, timedelta(0)),
    )


def _sign_off(row: sqlite3.Row | None) -> SignOff | None:
    if row is None:
        return None
    return SignOff(clinician=row["clinician"], decision=row["decision"], verdict=row["verdict"],
                   note=row["note"], signed=from_text(row["signed"]))


def worklist_ids(conn: sqlite3.Connection, day: date | None) -> list[int]:
    """Screenings of one local day: unsigned first, then by priority, then longest waited."""
    day = day or date.today()
    start = datetime.combine(day, time.min).astimezone()
    rows = conn.execute(
        "SELECT s.id FROM screenings s LEFT JOIN sign_offs o ON o.screening_id = s.id"
        " WHERE s.created >= ? AND s.created < ?"
        " ORDER BY o.screening_id IS NOT NULL, s.priority DESC, s.created ASC",
        (to_text(start), to_text(start + timedelta(days=1))),
    ).fetchall()
    return [int(row["id"]) for row in rows]


def check_sign_off(screening: Screening, decision: str, note: str, verdict: str | None) -> None:
    """The sign-off rule, the one place it is written: once per screening; confirm, or
    overrule with the clinician's verdict and a note saying why."""
    if screening.sign_off is not None:
        raise AlreadySignedError("This screening is already signed off; a signed result is never "
                                 "rewritten.")
    if decision not in DECISIONS:
        raise SignOffError("Choose Confirm or Overrule.")
    if decision == "overrule" and (verdict not in VERDICTS or not note.strip()):
        raise SignOffError("To overrule, choose the right verdict and write why in the note.")


def insert_sign_off(conn: sqlite3.Connection, screening: Screening, clinician: str,
                    decision: str, note: str, verdict: str | None) -> None:
    """Record a clinician's sign-off (the rule: ``check_sign_off``)."""
    check_sign_off(screening, decision, note, verdict)
    final = verdict if decision == "overrule" and verdict else screening.verdict
    conn.execute(
        "INSERT INTO sign_offs (screening_id, clinician, decision, verdict, note, signed)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (screening.id, clinician, decision, final, note, to_text(utc_now())),
    )
