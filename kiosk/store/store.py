"""The Store: the kiosk's one door to its SQLite database and image files."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from datetime import date
from pathlib import Path
from typing import Any

from kiosk.config import Config
from kiosk.destinations import fleet_destinations
from kiosk.errors import NotFoundError, StoreError
from kiosk.names import PersonName
from kiosk.result import Result
from kiosk.store import audit as audit_log
from kiosk.store import fleet as fleet_store
from kiosk.store import form_tokens, images, outbox, records
from kiosk.store.db import Database, to_text, utc_now
from kiosk.store.fleet import FleetReport
from kiosk.store.models import (
    AuditEntry,
    DestinationStatus,
    OutboxItem,
    Patient,
    ReceivedFilm,
    Screening,
    User,
)

#: Rough upper bound of the database growth of one screening, checked before writing it.
SCREENING_BYTES = 256 * 1024


class Store:
    """Patients, screenings, sign-offs, users, settings, audit log and outbox, kept safely."""

    def __init__(self, config: Config, db: Database):
        self.config = config
        self.db = db
        self.images_dir = config.data_dir / "images"
        self.destinations = outbox.configured_destinations(config)
        self.fleet_destinations = fleet_destinations(config)
        self.audit_head = config.data_dir / "audit.head"
        db.after_commit.append(lambda conn: audit_log.write_head(conn, self.audit_head))
        images.sweep_partial(self.images_dir)  # only files an hour old: no capture in flight

    @classmethod
    def open(cls, config: Config) -> Store:
        """Open (creating and migrating when needed) the store in the configured data folder."""
        return cls(config, Database(config.db_path))

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    # users
    def add_user(self, username: str, password_hash: str, role: str, *, actor: str = "system") -> User:
        """Create a user with an already-hashed password (kiosk.accounts checks the rules)."""
        with self.db.write() as conn:
            user_id = records.insert_user(conn, username, password_hash, role)
            audit_log.append(conn, actor, "user.add", detail=f"{username} as {role}")
        user = self.get_user_by_id(user_id)
        assert user is not None
        return user

    def get_user(self, username: str) -> User | None:
        """The user with this name, or None."""
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
            return records.user_from_row(row)

    def get_user_by_id(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
            return records.user_from_row(row)

    def list_users(self) -> list[User]:
        """Every user, by name."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM users ORDER BY username").fetchall()
            return [user for row in rows if (user := records.user_from_row(row))]

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace a user's password hash (NotFoundError for an unknown user)."""
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
            )
            if cursor.rowcount != 1:
                raise NotFoundError(f"no user named {username!r}")
            audit_log.append(conn, "system", "user.password", detail=username)

    # patients
    def upsert_patient(self, identifier: str, name: PersonName | str, birth_date: str | None,
                       sex: str | None, *, actor: str) -> Patient:
        """Register a patient, or update the one with this identifier (a text name stays text)."""
        with self.db.write() as conn:
            patient_id, created = records.upsert_patient(conn, identifier, name, birth_date, sex)
            action = "patient.register" if created else "patient.update"
            audit_log.append(conn, actor, action, patient_id=patient_id, detail=identifier)
            return records.get_patient(conn, patient_id)

    def find_patients(self, query: str, limit: int = 20) -> list[Patient]:
        """Patients whose identifier or name contains the query."""
        with self.db.read() as conn:
            return records.find_patients(conn, query, limit)

    def get_patient(self, patient_id: int) -> Patient:
        """The patient with this id (NotFoundError when absent)."""
        with self.db.read() as conn:
            return records.get_patient(conn, patient_id)

    def signed_screenings(self, patient_id: int) -> int:
        """How many of the patient's screenings a clinician has signed (never to be rewritten)."""
        with self.db.read() as conn:
            row = conn.execute("SELECT COUNT(*) AS n FROM screenings s JOIN sign_offs o"
                               " ON o.screening_id = s.id WHERE s.patient_id = ?",
                               (patient_id,)).fetchone()
            return int(row["n"])

    # images and screenings
    def save_image(self, data: bytes, suffix: str) -> str:
        """Save image bytes under their sha256, durably; DiskFullError when space is short."""
        return images.save(self.images_dir, data, suffix, self.config.min_free_disk_mb)

    def image_path(self, sha256: str) -> Path:
        """Where the image with this sha256 is (NotFoundError when absent)."""
        return images.find(self.images_dir, sha256)

    def record_screening(self, patient_id: int, results: list[Result], *, actor: str,
                         image_shas: list[str], heatmap_shas: list[str | None],
                         films: list[ReceivedFilm] | None = None,
                         form_token: str | None = None) -> Screening:
        """Save a screening, its results, its outbox items, the received films it was made of
        and the capture form's token in one transaction (so a crash cannot leave a screened film
        unknown, nor a recorded visit whose form could record it again)."""
        images.check_free_space(self.config.data_dir, SCREENING_BYTES,
                                self.config.min_free_disk_mb)
        for sha in [*image_shas, *(h for h in heatmap_shas if h)]:
            self.image_path(sha)  # every referenced file must already be safely on disk
        with self.db.write() as conn:
            screening_id = records.insert_screening(
                conn, patient_id, results, actor, image_shas, heatmap_shas
            )
            records.insert_received_films(conn, screening_id, films or [])
            if form_token:
                form_tokens.bind(conn, form_token, screening_id)
            screening = records.get_screening(conn, screening_id)
            outbox.enqueue(conn, screening_id, screening.uid, self.destinations, "preliminary")
            audit_log.append(conn, actor, "screening.record", patient_id=patient_id,
                             detail=f"screening {screening_id}: {screening.verdict}")
            return screening

    def screening_for_image(self, image_sha: str) -> int | None:
        """The id of the screening that already holds this image (by sha256), if any."""
        with self.db.read() as conn:
            return records.screening_for_image(conn, image_sha)

    def received_films(self, sop_uid: str) -> list[ReceivedFilm]:
        """The films received before under this SOP Instance UID (with their screenings)."""
        with self.db.read() as conn:
            return records.received_films(conn, sop_uid)

    def get_screening(self, screening_id: int) -> Screening:
        """The screening with this id (NotFoundError when absent)."""
        with self.db.read() as conn:
            return records.get_screening(conn, screening_id)

    def worklist(self, day: date | None = None) -> list[Screening]:
        """The day's screenings (today by default): unsigned first, by priority, then waited."""
        with self.db.read() as conn:
            return [records.get_screening(conn, i) for i in records.worklist_ids(conn, day)]

    def sign_off(self, screening_id: int, *, clinician: str, decision: str, note: str,
                 verdict: str | None = None) -> Screening:
        """Record a clinician's confirm/overrule and queue the final report to every destination."""
        with self.db.write() as conn:
            screening = records.get_screening(conn, screening_id)
            records.insert_sign_off(conn, screening, clinician, decision, note, verdict)
            outbox.enqueue(conn, screening_id, screening.uid, self.destinations, "final")
            audit_log.append(conn, clinician, f"screening.{decision}",
                             patient_id=screening.patient.id,
                             detail=f"screening {screening_id}: {verdict or screening.verdict}")
            return records.get_screening(conn, screening_id)

    # audit
    def audit(self, actor: str, action: str, *, patient_id: int | None = None,
              detail: str = "") -> None:
        """Append one entry to the audit log (e.g. a result viewed, a log-in)."""
        with self.db.write() as conn:
            audit_log.append(conn, actor, action, patient_id=patient_id, detail=detail)

    def audit_entries(self, query: str = "", limit: int = 200) -> list[AuditEntry]:
        """The newest audit entries, optionally filtered."""
        with self.db.read() as conn:
            return audit_log.entries(conn, query, limit)

    def verify_audit(self) -> tuple[bool, int | None]:
        """(ok, first bad id): whether the audit chain is untouched."""
        with self.db.read() as conn:
            return audit_log.verify(conn, self.audit_head)

    # outbox
    def outbox_status(self) -> list[DestinationStatus]:
        """Per destination: waiting, oldest waiting, last error, parked, sent."""
        with self.db.read() as conn:
            return outbox.status(conn, self.destinations)

    def parked_items(self) -> list[OutboxItem]:
        """Items set aside after a non-retryable refusal."""
        with self.db.read() as conn:
            return outbox.parked(conn)

    def retry_item(self, item_id: int, *, actor: str = "admin") -> None:
        """Put a parked item back in the queue (a person fixed the cause)."""
        with self.db.write() as conn:
            item = outbox.unpark(conn, item_id)
            audit_log.append(conn, actor, "outbox.retry",
                             detail=f"item {item_id} to {item.destination}")

    def due_items(self, limit: int = 100, destinations: list[str] | None = None
                  ) -> list[OutboxItem]:
        """Waiting items whose next attempt is due (for the sync worker), oldest first."""
        with self.db.read() as conn:
            return outbox.due_items(conn, self.destinations if destinations is None
                                    else destinations, limit)

    def item_sent(self, item_id: int) -> None:
        """Mark an item acknowledged by its destination."""
        with self.db.write() as conn:
            outbox.mark_sent(conn, item_id)

    def item_failed(self, item_id: int, error: str, retry_in_s: float) -> None:
        """Record a retryable failure and when to try again."""
        with self.db.write() as conn:
            outbox.mark_failed(conn, item_id, error, retry_in_s)

    def park_item(self, item_id: int, error: str) -> None:
        """Set an item aside after a non-retryable refusal."""
        with self.db.write() as conn:
            outbox.park(conn, item_id, error)
            audit_log.append(conn, "sync", "outbox.park", detail=f"item {item_id}: {error[:200]}")

    def unsent_siblings(self, item: OutboxItem, destinations: tuple[str, ...]) -> int:
        """How many other items of the same screening and report, to these destinations, are
        not sent yet (to know when a rendering shared between them can go)."""
        marks = ",".join("?" * len(destinations))  # placeholders only: no value is formatted in
        query = f"SELECT COUNT(*) FROM outbox WHERE destination IN ({marks})"  # noqa: S608  # nosec B608
        with self.db.read() as conn:
            row = conn.execute(
                query + " AND screening_id = ? AND report_status = ? AND state != 'sent'"
                " AND id != ?",
                (*destinations, item.screening_id, item.report_status, item.id),
            ).fetchone()
            return int(row[0])

    # fleet reports (issue 16.5): one period's figures, queued once to the destinations taking them
    def queue_fleet_report(self, kiosk: str, start: str, end: str, figures: dict[str, Any], *,
                           actor: str) -> tuple[FleetReport, bool]:
        """Keep a period's figures and queue them; (report, True), or (the report queued before
        for that period, False): a period is reported once, so a central sum never counts twice."""
        if not self.fleet_destinations:
            raise StoreError("no destination takes fleet reports: set KIOSK_FHIR_URL",
                             code="no_fleet_destination")
        with self.db.write() as conn:
            known = fleet_store.find(conn, kiosk, start, end)
            if known is not None:
                return known, False
            report = fleet_store.insert(conn, kiosk, start, end, figures, actor)
            fleet_store.enqueue(conn, report, self.fleet_destinations, time.time())
            audit_log.append(conn, actor, "fleet.queue",
                             detail=f"fleet report {report.id}: {start} to {end}")
            return report, True

    def get_fleet_report(self, report_id: int) -> FleetReport:
        """One fleet report (NotFoundError when absent)."""
        with self.db.read() as conn:
            return fleet_store.get(conn, report_id)

    def fleet_reports(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest fleet reports with their outbox state per destination."""
        with self.db.read() as conn:
            return fleet_store.listed(conn, limit)

    def get_item(self, item_id: int) -> OutboxItem:
        """One outbox item (NotFoundError when absent)."""
        with self.db.read() as conn:
            return outbox.get_item(conn, item_id)

    def patient_history(self, patient_id: int) -> dict[str, str | None]:
        """Diabetes status (yes | no | unknown) and the last eye examination date of a patient."""
        with self.db.read() as conn:
            row = conn.execute("SELECT diabetes, last_eye_exam FROM patient_history"
                               " WHERE patient_id = ?", (patient_id,)).fetchone()
            if row is None:
                return {"diabetes": "unknown", "last_eye_exam": None}
            return {"diabetes": str(row["diabetes"]), "last_eye_exam": row["last_eye_exam"]}

    def set_patient_history(self, patient_id: int, diabetes: str, last_eye_exam: str | None, *,
                            actor: str) -> None:
        """Record a patient's diabetes status and last eye examination date (audited)."""
        with self.db.write() as conn:
            records.get_patient(conn, patient_id)
            conn.execute(
                "INSERT INTO patient_history (patient_id, diabetes, last_eye_exam, updated)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (patient_id) DO UPDATE SET"
                " diabetes = excluded.diabetes, last_eye_exam = excluded.last_eye_exam,"
                " updated = excluded.updated",
                (patient_id, diabetes, last_eye_exam, to_text(utc_now())))
            audit_log.append(conn, actor, "patient.history", patient_id=patient_id,
                             detail=f"diabetes={diabetes} last_eye_exam={last_eye_exam or '-'}")

    # clinic settings
    def get_setting(self, name: str, default: str | None = None) -> str | None:
        """A setting changed by the admin, else ``default``."""
        with self.db.read() as conn:
            row = conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
            return str(row["value"]) if row else default

    def set_setting(self, name: str, value: str, *, actor: str) -> None:
        """Change a clinic setting (audited)."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO settings (name, value, updated, actor) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated = excluded.updated, actor = excluded.actor",
                (name, value, to_text(utc_now()), actor),
            )
            audit_log.append(conn, actor, "setting.change", detail=f"{name} = {value}")

    # failed log-ins (web/security.LoginThrottle keeps its counts here)
    def throttle_state(self, key: str) -> tuple[list[float], float]:
        """Recent failure times (epoch seconds) and the lock-out end of one throttle key."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT failures, locked_until FROM login_throttle WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return [], 0.0
        return [float(t) for t in json.loads(row["failures"])], float(row["locked_until"])

    def set_throttle_state(self, key: str, failures: list[float], locked_until: float) -> None:
        """Keep one throttle key's state (the row goes when there is nothing left to remember)."""
        with self.db.write() as conn:
            if not failures and locked_until <= 0:
                conn.execute("DELETE FROM login_throttle WHERE key = ?", (key,))
                return
            conn.execute(
                "INSERT INTO login_throttle (key, failures, locked_until) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,"
                " locked_until = excluded.locked_until",
                (key, json.dumps(failures), locked_until),
            )

    def backup(self, target: Path) -> None:
        """Write a consistent copy of the database with the SQLite backup API."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        copy = sqlite3.connect(partial)
        try:
            with self.db.read() as conn:
                conn.backup(copy)
            check = copy.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            copy.close()
        if check != "ok":
            partial.unlink(missing_ok=True)
            raise StoreError(f"the backup failed its integrity check: {check}")
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
        with contextlib.suppress(OSError):
            images.fsync_dir(target.parent)
        self.audit("system", "store.backup", detail=str(target))
