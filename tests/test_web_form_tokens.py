"""One screening per tap across web workers and restarts: the capture form's token lives in the
store (kiosk/store/form_tokens.py), not in one process's memory."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from browser.screening_setup import model_settings, open_pipeline
from browser.web_support import add_user, login, make_app, web_config
from flask import Flask
from test_web_flow import ONE_EYE, _fundus, _register, _upload

from kiosk.config import Config
from kiosk.errors import StoreError
from kiosk.store import Store, form_tokens
from kiosk.store.db import to_text, utc_now


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return model_settings(tmp_path_factory.mktemp("models"))


@pytest.fixture
def two_workers(tmp_path: Path, models: dict[str, object]
                ) -> Iterator[tuple[Config, list[tuple[Flask, Store]]]]:
    """Two app instances, each with its own store connection, on one data folder (as two web
    worker processes of one kiosk)."""
    config = web_config(tmp_path, **models)
    pipeline = open_pipeline(config)
    workers = [make_app(config, pipeline=pipeline) for _ in range(2)]
    add_user(workers[0][1], "nurse", "operator")
    yield config, workers
    for _app, store in workers:
        store.close()
    pipeline.close()


def _screenings(store: Store, identifier: str) -> int:
    return len([s for s in store.worklist() if s.patient.identifier == identifier])


def test_two_workers_sent_the_same_form_at_once_record_one_screening(two_workers) -> None:
    _config, workers = two_workers
    clients = [app.test_client() for app, _store in workers]
    for client in clients:
        login(client, "nurse")
    patient_id = _register(clients[0], "TAP-W2")
    photo = _fundus()  # read here: a skip for absent data must not happen inside a thread
    answers: list[object] = []

    def send(client: object) -> None:
        answers.append(_upload(client, patient_id, fields={**ONE_EYE, "visit_token": "tap-w2"},  # type: ignore[arg-type]
                               left_eye=(photo, "13_left.jpeg")))

    taps = [threading.Thread(target=send, args=(c,)) for c in clients]
    for tap in taps:
        tap.start()
    for tap in taps:
        tap.join()
    assert [a.status_code for a in answers] == [302, 302]  # type: ignore[attr-defined]
    assert len({a.headers["Location"] for a in answers}) == 1  # type: ignore[attr-defined]
    assert _screenings(workers[1][1], "TAP-W2") == 1


#: A second kiosk process (a restarted kiosk, or another web worker): it sends the same form.
SECOND_PROCESS = """
import json, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/browser"]
from browser.screening_setup import open_pipeline
from browser.web_support import login, make_app, web_config
from test_web_flow import ONE_EYE, _fundus, _upload
root, models, keys, patient_id = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
config = web_config(root, models_dir=models, trusted_keys=keys, sandbox_workers=0)
pipeline = open_pipeline(config)
app, store = make_app(config, pipeline=pipeline)
client = app.test_client()
login(client, "nurse")
answer = _upload(client, patient_id, fields={**ONE_EYE, "visit_token": "tap-restart"},
                 left_eye=(_fundus(), "13_left.jpeg"))
print(json.dumps([answer.status_code, answer.headers.get("Location")]))
store.close(); pipeline.close()
"""


def test_a_form_resent_from_another_process_goes_to_the_screening_it_made(
        two_workers, models: dict[str, object], tmp_path: Path) -> None:
    _config, workers = two_workers
    app, store = workers[0]
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client, "TAP-R")
    fields = {**ONE_EYE, "visit_token": "tap-restart"}
    first = _upload(client, patient_id, fields=fields, left_eye=(_fundus(), "13_left.jpeg"))
    assert first.status_code == 302
    tests = Path(__file__).parent
    ran = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, str(tests), str(tmp_path), str(models["models_dir"]),
         str(models["trusted_keys"]), str(patient_id)],
        capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    status, location = json.loads(ran.stdout.strip().splitlines()[-1])
    assert (status, location) == (302, first.headers["Location"])
    assert _screenings(store, "TAP-R") == 1


def test_a_form_sent_back_for_a_retake_can_be_sent_again_with_its_token(two_workers) -> None:
    _config, workers = two_workers
    app, store = workers[0]
    client = app.test_client()
    login(client, "nurse")
    patient_id = _register(client, "TAP-B")
    fields = {"visit_token": "tap-back"}  # one eye and no reason: sent back, nothing recorded
    assert _upload(client, patient_id, fields=fields,
                   left_eye=(_fundus(), "13_left.jpeg")).status_code == 422
    answer = _upload(client, patient_id, fields={**fields, **ONE_EYE})
    assert answer.status_code == 302
    assert _screenings(store, "TAP-B") == 1


def test_a_claim_waits_for_the_holder_and_a_dead_holders_claim_is_taken_over(
        two_workers) -> None:
    _config, workers = two_workers
    (_app, one), (_other, two) = workers
    assert form_tokens.claim(one.db, "t-1") is None  # held by the first worker now
    with pytest.raises(StoreError, match="still being screened"):
        form_tokens.claim(two.db, "t-1", wait_s=0.3)
    form_tokens.release(one.db, "t-1")
    assert form_tokens.claim(two.db, "t-1", wait_s=0.3) is None
    stale = to_text(utc_now() - form_tokens.STALE_CLAIM - timedelta(seconds=1))
    with two.db.write() as conn:  # the holder died (a killed worker) long ago
        conn.execute("UPDATE form_tokens SET created = ? WHERE token = 't-1'", (stale,))
    assert form_tokens.claim(one.db, "t-1", wait_s=0.3) is None


def test_old_tokens_are_forgotten(two_workers) -> None:
    _config, workers = two_workers
    store = workers[0][1]
    old = to_text(utc_now() - form_tokens.KEEP - timedelta(minutes=1))
    with store.db.write() as conn:
        conn.execute("INSERT INTO form_tokens (token, screening_id, created) VALUES "
                     "('old', NULL, ?)", (old,))
    assert form_tokens.claim(store.db, "new") is None
    with store.db.read() as conn:
        tokens = {row[0] for row in conn.execute("SELECT token FROM form_tokens")}
    assert tokens == {"new"}
