"""Fleet reports (issue 16.5) without a peer: the outbox migration, small cells, what may leave,
queueing once per period, and the worker's routing of a fleet item.

The two-kiosk run against the real FHIR server, with real screenings, is tests/test_fleet_peer.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from store_helpers import result, screen

from kiosk.cli import main
from kiosk.config import Config
from kiosk.errors import StoreError
from kiosk.lifecycle import fleet
from kiosk.store import Store
from kiosk.store.migrations import MIGRATIONS
from kiosk.sync import SyncWorker
from kiosk.sync.base import Delivery, ReportDelivery
from kiosk.sync.status import sync_status

FHIR = "http://127.0.0.1:9/fhir"  # nothing listens: these tests never send


def _store(config: Config, **overrides: Any) -> Store:
    return Store.open(replace(config, min_free_disk_mb=1, fhir_url=FHIR, **overrides))


def _version_6_store(path: Path) -> None:
    """A store as the kiosk left it before fleet reports: schema 6, screenings in its outbox."""
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in MIGRATIONS[:6]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 6")
    conn.execute("INSERT INTO patients (identifier, name, created, updated)"
                 " VALUES ('P1', 'A', 't', 't')")
    conn.execute("INSERT INTO screenings (uid, patient_id, created, verdict, priority, actor)"
                 " VALUES ('u1', 1, '2026-12-01T10:00:00.000000+00:00', 'referable', 1, 'n')")
    conn.execute("INSERT INTO results (screening_id, position, result_json, image_sha)"
                 " VALUES (1, 0, ?, 'ab')", (json.dumps(result()),))
    for item_id, (destination, state) in enumerate([("fhir", "sent"), ("hl7", "waiting"),
                                                    ("dicom", "parked")], start=7):
        conn.execute(
            "INSERT INTO outbox (id, screening_id, destination, report_status, idempotency_key,"
            " state, attempts, next_attempt, last_error, created) VALUES"
            " (?, 1, ?, 'preliminary', ?, ?, 3, 12.5, 'e', 't')",
            (item_id, destination, f"u1.{destination}.preliminary", state))
    conn.close()


def test_the_outbox_rebuild_keeps_every_row_and_index_and_takes_fleet_items(config: Config) -> None:
    _version_6_store(config.db_path)
    store = _store(config)
    with store.db.read() as conn:
        rows = [tuple(r) for r in conn.execute(
            "SELECT id, screening_id, fleet_report_id, destination, idempotency_key, state,"
            " attempts, next_attempt, last_error FROM outbox ORDER BY id")]
        indexes = {r["name"] for r in conn.execute("PRAGMA index_list(outbox)")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert version == len(MIGRATIONS)
    assert rows == [(7, 1, None, "fhir", "u1.fhir.preliminary", "sent", 3, 12.5, "e"),
                    (8, 1, None, "hl7", "u1.hl7.preliminary", "waiting", 3, 12.5, "e"),
                    (9, 1, None, "dicom", "u1.dicom.preliminary", "parked", 3, 12.5, "e")]
    assert "outbox_due" in indexes
    with pytest.raises(StoreError), store.db.write() as conn:  # neither a screening nor a report
        conn.execute("INSERT INTO outbox (destination, report_status, idempotency_key,"
                     " next_attempt, created) VALUES ('fhir', 'final', 'k', 0, 't')")
    report, queued = fleet.queue(store, fleet.Period(date(2026, 12, 1), date(2026, 12, 1)),
                                 today=date(2026, 12, 2))
    assert queued and report.figures["tasks"][0]["n"] is None  # one screening: a small cell
    assert [i.fleet_report_id for i in store.due_items(10, ["fhir"])] == [report.id]
    store.close()


def test_small_cells_are_left_out_and_a_lone_one_hides_its_neighbour() -> None:
    assert fleet.suppress({"a": 12, "b": 0, "c": 7}, True, 5) == {"a": 12, "b": 0, "c": 7}
    # 2 alone hidden, the total 9 shown: 7 would give it back, so 7 goes too
    assert fleet.suppress({"a": 2, "b": 0, "c": 7}, True, 5) == {"a": None, "b": 0, "c": None}
    # two hidden cells already hide each other
    assert fleet.suppress({"a": 2, "b": 3, "c": 7}, True, 5) == {"a": None, "b": None, "c": 7}
    # the total itself hidden: nothing to subtract from
    assert fleet.suppress({"a": 1, "b": 0}, False, 5) == {"a": None, "b": 0}


def _counts(referable: int, non_referable: int, ungradable: int,
            scores: list[int]) -> dict[str, dict[str, fleet.ModelCounts]]:
    model = fleet.ModelCounts("fundus-dr", "2.0.0", "cd" * 32,
                              {"referable": referable, "non_referable": non_referable,
                               "ungradable": ungradable}, scores)
    return {"fundus-dr": {"fundus-dr@2.0.0": model}}


def test_figures_hide_what_a_small_cell_could_be_worked_back_from() -> None:
    period = fleet.Period(date(2026, 12, 1), date(2026, 12, 1))
    made = fleet.figures("k", period, _counts(8, 6, 2, [0, 1, 5, 0, 0, 0, 0, 6, 2, 0]))
    task = made["tasks"][0]
    assert task["n"] == 16
    assert task["verdicts"] == {"referable": 8, "non_referable": None, "ungradable": None}
    assert task["gradable"] is None  # 16 - 14 would give the 2 ungradable back
    assert task["referable_share"] is None
    assert task["models"][0]["scores"]["counts"] == [0, None, 5, 0, 0, 0, 0, 6, None, 0]
    big = fleet.figures("k", period, _counts(8, 6, 0, [0, 0, 5, 0, 0, 0, 0, 9, 0, 0]))["tasks"][0]
    assert (big["n"], big["gradable"], big["referable_share"]) == (14, 14, round(8 / 14, 4))
    assert big["verdicts"] == {"referable": 8, "non_referable": 6, "ungradable": 0}


def test_only_listed_fields_of_drift_and_surveillance_leave() -> None:
    period = fleet.Period(date(2026, 12, 1), date(2026, 12, 1))
    drift = {"task": "fundus-dr", "model_version": "2.0.0", "n": 40, "statistic": "psi",
             "value": 0.31, "threshold": 0.25, "alarm": True, "window": 200,
             "new_devices": ["Camera of Dr Smith"], "reason": "",
             "quantities": [{"name": "brightness", "psi": 0.31, "edges": [1.0],
                             "recent": [3, 37], "reference": [1, 2]}]}
    watched = {"task": "fundus-dr", "model_version": "2.0.0", "model_sha256": "cd" * 32,
               "operating_point": "screening", "n_signed": 30, "n_outcomes": 3, "tp": 10,
               "fp": 2, "tn": 18, "fn": 0, "note": "Mrs Jones overruled",
               "agreement": {"value": round(27 / 30, 4), "ci": [0.7, 0.97], "n": 30},
               "sensitivity": {"value": 1.0, "ci": [0.72, 1.0], "n": 10},
               "specificity": {"value": 0.9, "ci": [0.69, 0.97], "n": 20},
               "ppv": {"value": round(10 / 12, 4), "ci": [0.55, 0.95], "n": 12},
               "alarm": False, "alarms": []}
    made = fleet.figures("k", period, {}, drift=[drift], surveillance=[watched])
    text = str(made)
    for absent in ("Dr Smith", "Mrs Jones", "recent", "reference", "'tp'", "'fp'"):
        assert absent not in text
    assert made["drift"][0]["value"] == 0.31 and made["drift"][0]["quantities"][0]["psi"] == 0.31
    row = made["surveillance"][0]
    assert row["agreement"] is None  # 3 disagreements: a small cell
    assert row["sensitivity"]["value"] == 1.0 and row["specificity"] is None  # 2 false positives
    assert row["ppv"] is None and row["n_outcomes"] is None and row["n_signed"] == 30
    few = fleet.figures("k", period, {}, drift=[{**drift, "n": 3}])["drift"][0]
    assert few["value"] is None and few["n"] is None and few["quantities"][0]["psi"] is None


def test_a_period_is_queued_once_and_only_once_it_has_ended(config: Config) -> None:
    store = _store(config)
    for seed in range(3):
        screen(store, seed, verdicts=("non_referable", "non_referable"))
    today = date.today()
    with pytest.raises(StoreError) as open_period:
        fleet.queue(store, fleet.Period(today, today), today=today)
    assert open_period.value.code == "period_open"
    first, queued = fleet.queue(store, fleet.Period(today, today), today=today, allow_open=True)
    again, queued_again = fleet.queue(store, fleet.Period(today, today), today=today,
                                      allow_open=True)
    assert queued and not queued_again and again.id == first.id
    assert first.figures["tasks"][0]["n"] == 6
    assert first.figures["tasks"][0]["verdicts"]["non_referable"] == 6
    empty, _ = fleet.queue(store, fleet.Period(today - timedelta(days=3), today - timedelta(days=2)),
                           today=today)
    assert empty.figures["tasks"] == []
    assert [r["outbox"] for r in store.fleet_reports()] == [{"fhir": "waiting"}] * 2
    store.close()


def test_without_a_destination_taking_reports_nothing_is_queued(config: Config) -> None:
    store = Store.open(replace(config, hl7_address="127.0.0.1:9"))
    with pytest.raises(StoreError) as refused:
        fleet.queue(store, fleet.Period(date(2026, 1, 1), date(2026, 1, 1)))
    assert refused.value.code == "no_fleet_destination"
    assert store.fleet_reports() == []
    store.close()


class _ScreeningsOnly:
    """A destination that takes screenings and knows nothing of fleet reports."""

    name = "fhir"

    def __init__(self) -> None:
        self.delivered: list[int] = []

    def send(self, delivery: Delivery) -> None:
        self.delivered.append(delivery.item.id)

    def close(self) -> None:
        pass


def test_a_destination_without_send_report_parks_the_report_and_sends_the_rest(
        config: Config) -> None:
    store = _store(config)
    screened = screen(store, 1)
    report, _ = fleet.queue(store, fleet.Period(date(2026, 1, 1), date(2026, 1, 1)))
    destination = _ScreeningsOnly()
    outcome = SyncWorker(store, {"fhir": destination}, store.config).run_once()
    assert (outcome.sent, outcome.parked) == (1, 1)
    assert [store.get_item(i).screening_id for i in destination.delivered] == [screened.id]
    parked = store.parked_items()
    assert [p.fleet_report_id for p in parked] == [report.id]
    assert "takes no fleet reports" in parked[0].last_error
    [shown] = sync_status(store)["parked"]  # kiosk sync --status
    assert (shown["screening_id"], shown["fleet_report_id"]) == (None, report.id)
    store.close()


def test_kiosk_fleet_report_queues_yesterday_once_and_lists_it(
        config: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KIOSK_DATA_DIR", str(config.data_dir))
    monkeypatch.setenv("KIOSK_FHIR_URL", FHIR)
    monkeypatch.setenv("KIOSK_KIOSK_ID", "clinic-7-kiosk-2")
    assert main(["fleet", "report"]) == 0
    made = json.loads(capsys.readouterr().out)
    yesterday = (datetime.now(fleet.UTC).date() - timedelta(days=1)).isoformat()
    assert made["queued"] and made["period"] == [yesterday, yesterday]
    assert made["kiosk"] == "clinic-7-kiosk-2" and made["destinations"] == ["fhir"]
    assert {row["task"] for row in made["figures"]["drift"]} >= {"fundus-dr"}  # bundles in models/
    assert main(["fleet", "report"]) == 0
    assert not json.loads(capsys.readouterr().out)["queued"]
    assert main(["fleet", "report", "--day", datetime.now(fleet.UTC).date().isoformat()]) == 2
    assert "has not ended" in capsys.readouterr().err
    assert main(["fleet", "list"]) == 0
    assert [r["outbox"] for r in json.loads(capsys.readouterr().out)] == [{"fhir": "waiting"}]


class _TakesReports(_ScreeningsOnly):
    """A destination that takes fleet reports too, and stops the loop once it has one."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop
        self.reports: list[str] = []

    def send_report(self, delivery: ReportDelivery) -> None:
        self.reports.append(delivery.report.period_start)
        self.stop.set()


def test_the_sync_loop_queues_yesterday_once_when_asked_to(config: Config) -> None:
    store = _store(config, fleet_daily=True)
    stop = threading.Event()
    destination = _TakesReports(stop)
    worker = SyncWorker(store, {"fhir": destination}, store.config)
    worker.run_forever(0, stop)
    yesterday = (datetime.now(fleet.UTC).date() - timedelta(days=1)).isoformat()
    assert destination.reports == [yesterday]
    worker.daily_fleet_report()  # the next pass: already queued, nothing new
    assert len(store.fleet_reports()) == 1 and store.due_items() == []
    store.close()
    quiet = Store.open(replace(config, data_dir=config.data_dir / "other", hl7_address="h:1",
                               fleet_daily=True))
    SyncWorker(quiet, {}, quiet.config).daily_fleet_report()  # no FHIR: logged, never raised
    assert quiet.fleet_reports() == []
    quiet.close()
