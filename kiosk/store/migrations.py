"""Schema changes, in order: the store's ``PRAGMA user_version`` says how many are applied.

Never edit a released migration; append a new one. Each is a list of single SQL statements run
in one transaction with the version bump.
"""

from __future__ import annotations

_V1 = [
    """CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('operator', 'clinician', 'admin')),
        created TEXT NOT NULL)""",
    """CREATE TABLE patients (
        id INTEGER PRIMARY KEY,
        identifier TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        birth_date TEXT,
        sex TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL)""",
    """CREATE TABLE screenings (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        patient_id INTEGER NOT NULL REFERENCES patients (id),
        created TEXT NOT NULL,
        verdict TEXT NOT NULL,
        priority INTEGER NOT NULL,
        actor TEXT NOT NULL)""",
    "CREATE INDEX screenings_created ON screenings (created)",
    """CREATE TABLE results (
        screening_id INTEGER NOT NULL REFERENCES screenings (id),
        position INTEGER NOT NULL,
        result_json TEXT NOT NULL,
        image_sha TEXT NOT NULL,
        heatmap_sha TEXT,
        PRIMARY KEY (screening_id, position))""",
    """CREATE TABLE sign_offs (
        screening_id INTEGER PRIMARY KEY REFERENCES screenings (id),
        clinician TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('confirm', 'overrule')),
        verdict TEXT NOT NULL,
        note TEXT NOT NULL,
        signed TEXT NOT NULL)""",
    """CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated TEXT NOT NULL,
        actor TEXT NOT NULL)""",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        patient_id INTEGER,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL)""",
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        screening_id INTEGER NOT NULL REFERENCES screenings (id),
        destination TEXT NOT NULL,
        report_status TEXT NOT NULL CHECK (report_status IN ('preliminary', 'final')),
        idempotency_key TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'sent', 'parked')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        failed_at REAL NOT NULL DEFAULT 0,
        created TEXT NOT NULL,
        sent TEXT)""",
    "CREATE INDEX outbox_due ON outbox (state, next_attempt)",
]

#: Failed log-ins per key ("user:NAME", "addr:IP"), so a restart does not reset the throttle.
_V2 = [
    """CREATE TABLE login_throttle (
        key TEXT PRIMARY KEY,
        failures TEXT NOT NULL,
        locked_until REAL NOT NULL)""",
]

#: Names in their parts (issue 18.1): ``name`` stays the name as shown; ``family_name`` NULL
#: means the name was never split (text only, never guessed apart). ``given_names`` is a JSON
#: list; the ideographic and phonetic groups are DICOM PN fragments (Family^Given^Middle^...).
#: Received films (issue 18.2): a pushed film is known by its SOP Instance UID and the sha256 of
#: its Pixel Data, whoever sends it; the same UID with other pixels is a second row.
_V3 = [
    "ALTER TABLE patients ADD COLUMN family_name TEXT",
    "ALTER TABLE patients ADD COLUMN given_names TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE patients ADD COLUMN name_prefix TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE patients ADD COLUMN name_suffix TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE patients ADD COLUMN name_ideographic TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE patients ADD COLUMN name_phonetic TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE received_films (
        sop_uid TEXT NOT NULL,
        pixel_sha256 TEXT NOT NULL,
        screening_id INTEGER NOT NULL REFERENCES screenings (id),
        calling_ae TEXT NOT NULL,
        received TEXT NOT NULL,
        PRIMARY KEY (sop_uid, pixel_sha256))""",
]

#: A patient's eye-screening history (issue 14.12): diabetes status (yes | no | unknown) and the
#: date of the last eye examination, one row per patient, changed with an audit entry.
_V4 = [
    """CREATE TABLE patient_history (
        patient_id INTEGER PRIMARY KEY REFERENCES patients (id),
        diabetes TEXT NOT NULL DEFAULT 'unknown',
        last_eye_exam TEXT,
        updated TEXT NOT NULL)""",
]

#: Site validation and surveillance (issue 16.2, 16.3): labelled sets' reports and referral
#: outcomes. (Owned by the site-validation work; filled in by it.)
_V5: list[str] = [
    # One row per validation run: figures only (counts, AUC, intervals, the proposal), never a
    # patient; ``applied`` / ``withdrawn`` say when an admin put its threshold in force or undid it.
    """CREATE TABLE site_validations (
        id INTEGER PRIMARY KEY,
        task TEXT NOT NULL,
        model_version TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('folder', 'sign_offs')),
        created TEXT NOT NULL,
        actor TEXT NOT NULL,
        report_json TEXT NOT NULL,
        applied TEXT,
        applied_by TEXT,
        withdrawn TEXT,
        withdrawn_by TEXT)""",
    "CREATE INDEX site_validations_task ON site_validations (task, applied)",
    # What became of a screened patient later (the specialist's finding), one per screening.
    """CREATE TABLE referral_outcomes (
        screening_id INTEGER PRIMARY KEY REFERENCES screenings (id),
        outcome TEXT NOT NULL CHECK (outcome IN ('disease', 'no_disease')),
        note TEXT NOT NULL,
        entered TEXT NOT NULL,
        actor TEXT NOT NULL)""",
    # Surveillance alarms already raised (audited once each, not on every page view).
    """CREATE TABLE surveillance_alarms (
        key TEXT PRIMARY KEY,
        raised TEXT NOT NULL,
        detail TEXT NOT NULL)""",
]

#: Shadow mode and change control (issue 16.4): a candidate model's results, never shown to staff.
#: (Owned by the shadow-mode work; filled in by it.)
_V6: list[str] = [
    # Which bundle of each task screens for staff (``active``) and which it replaced
    # (``previous``, the one a rollback returns to): a bundle is named by version and sha256.
    """CREATE TABLE model_lineup (
        task TEXT PRIMARY KEY,
        active_version TEXT NOT NULL,
        active_sha256 TEXT NOT NULL,
        previous_version TEXT,
        previous_sha256 TEXT,
        changed TEXT NOT NULL,
        actor TEXT NOT NULL)""",
    # A candidate bundle's reading of one active result (same screening, same position in its
    # results): kept apart from ``results`` so no page, report or outbox writer can show it.
    """CREATE TABLE shadow_results (
        screening_id INTEGER NOT NULL REFERENCES screenings (id),
        position INTEGER NOT NULL,
        task TEXT NOT NULL,
        model_version TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        result_json TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (screening_id, position, model_sha256))""",
    "CREATE INDEX shadow_results_model ON shadow_results (task, model_sha256)",
]

#: Fleet metrics (issue 16.5): aggregate reports that leave through the outbox.
#: ``fleet_reports`` keeps each period's figures as queued (counts and proportions only, never a
#: patient), so every retry sends the same MeasureReport. An outbox item now carries either a
#: screening or a fleet report (exactly one): SQLite cannot drop a NOT NULL, so the outbox is
#: rebuilt (new table, every row copied with its id, old one dropped, index made again). A later
#: migration that adds an outbox column must come after this one (it does: slots are in order).
_V7: list[str] = [
    """CREATE TABLE fleet_reports (
        id INTEGER PRIMARY KEY,
        kiosk TEXT NOT NULL,
        period_start TEXT NOT NULL,
        period_end TEXT NOT NULL,
        created TEXT NOT NULL,
        actor TEXT NOT NULL,
        report_json TEXT NOT NULL,
        UNIQUE (kiosk, period_start, period_end))""",
    """CREATE TABLE outbox_v7 (
        id INTEGER PRIMARY KEY,
        screening_id INTEGER REFERENCES screenings (id),
        fleet_report_id INTEGER REFERENCES fleet_reports (id),
        destination TEXT NOT NULL,
        report_status TEXT NOT NULL CHECK (report_status IN ('preliminary', 'final')),
        idempotency_key TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'sent', 'parked')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        failed_at REAL NOT NULL DEFAULT 0,
        created TEXT NOT NULL,
        sent TEXT,
        CHECK ((screening_id IS NULL) <> (fleet_report_id IS NULL)))""",
    """INSERT INTO outbox_v7 (id, screening_id, destination, report_status, idempotency_key,
        state, attempts, next_attempt, last_error, failed_at, created, sent)
        SELECT id, screening_id, destination, report_status, idempotency_key, state, attempts,
        next_attempt, last_error, failed_at, created, sent FROM outbox""",
    "DROP TABLE outbox",
    "ALTER TABLE outbox_v7 RENAME TO outbox",
    "CREATE INDEX outbox_due ON outbox (state, next_attempt)",
]

#: One screening per tap (issue 14.3): form tokens kept across restarts.
#: (Owned by the web-app work; filled in by it.)
_V8: list[str] = [
    # A capture form's token, claimed when its first tap is screened and bound to the screening
    # it made in the same transaction as that screening: a second tap, a second web worker or a
    # restarted kiosk finds it here and shows that screening instead of recording another.
    """CREATE TABLE form_tokens (
        token TEXT PRIMARY KEY,
        screening_id INTEGER REFERENCES screenings (id),
        created TEXT NOT NULL)""",
    "CREATE INDEX form_tokens_created ON form_tokens (created)",
]

#: The images of a visit kept while another is retaken, per user and patient (they were named
#: in the session cookie, which every response rewrites: a request still in flight from another
#: tab, or from the same page, wrote an older list back and the kept eyes were lost).
_V9: list[str] = [
    """CREATE TABLE visit_images (
        username TEXT NOT NULL,
        patient_id INTEGER NOT NULL REFERENCES patients (id),
        items TEXT NOT NULL,
        updated TEXT NOT NULL,
        PRIMARY KEY (username, patient_id))""",
    "CREATE INDEX visit_images_updated ON visit_images (updated)",
]

#: Every migration, oldest first; index + 1 is the schema version it brings the store to.
MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9]
