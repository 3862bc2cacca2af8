"""Surveillance from the clinicians' decisions (issue 16.3), end to end on real films.

A clinic that records no ages screens adult chest films (NIH, ../shared/data): both shipped
chest models read each film, the paediatric pneumonia model among them. Its clinicians confirm
or overrule every screening with the film's label. The running estimates per model version then
say what a clinic would need to know: the paediatric model is far below its card on adults (an
alarm, audited once); the adults' model is not. Skips with the reason when the films or the
bundles are absent.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, shared

from engines.bundle import find_bundles
from kiosk.config import load_config
from kiosk.errors import NotFoundError, StoreError
from kiosk.lifecycle import surveillance, validation
from kiosk.pipeline import Pipeline
from kiosk.store import Screening, Store
from kiosk.visit import Offered, record, screen

pytestmark = pytest.mark.slow  # two real chest models on 60 real films

FILMS = 30  # of each class


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Store, list[Screening], Pipeline]]:
    """A store with 60 real adult films screened, each signed off with its label."""
    found = {p.name.rsplit("-", 1)[0] for p in find_bundles(ROOT / "models")}
    if not {"cxr-adult", "cxr-pneumonia"} <= found:
        pytest.skip("the real cxr-adult and cxr-pneumonia bundles are not both in models/")
    folder = shared("cxr", "nih-adult-512", "images")
    with shared("cxr", "nih-adult-512", "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    picked = ([r for r in rows if r["abnormal"] == "1"][:FILMS]
              + [r for r in rows if r["abnormal"] == "0"][:FILMS])
    tmp = tmp_path_factory.mktemp("clinic")
    config = load_config(env={}, data_dir=tmp / "data", engine_cache_dir=tmp / "e",
                         sandbox_workers=0)
    pipeline, store = Pipeline.from_config(config), Store.open(config)
    screenings = [_screen_and_sign(store, pipeline, folder / row["image"], row, index)
                  for index, row in enumerate(picked)]
    yield store, screenings, pipeline
    pipeline.close()
    store.close()


def _screen_and_sign(store: Store, pipeline: Pipeline, film: Path, row: dict[str, str],
                     index: int) -> Screening:
    """One visit: the film screened and kept, then the clinician's decision from its label."""
    patient = store.upsert_patient(f"NIH{index:03d}", f"Patient {index}", None, None,
                                   actor="nurse")  # no age recorded: every chest model reads it
    screened = screen(pipeline, [Offered(film.read_bytes(), film.name, kind="cxr")], heatmap=False)
    done = record(store, patient.id, screened, actor="nurse")
    truth = "referable" if row["abnormal"] == "1" else "non_referable"
    if done.verdict == truth:
        return store.sign_off(done.id, clinician="dr", decision="confirm", note="")
    return store.sign_off(done.id, clinician="dr", decision="overrule", note="film label",
                          verdict=truth)


def _row(rows: list[dict], task: str) -> dict:
    """The one summary entry of a task."""
    mine = [row for row in rows if row["task"] == task]
    assert len(mine) == 1, rows
    return mine[0]


def test_the_childrens_model_on_adults_raises_an_alarm_and_the_adults_model_does_not(
        clinic: tuple[Store, list[Screening], Pipeline]) -> None:
    store, _, _ = clinic
    rows = surveillance.summary(store)
    child, adult = _row(rows, "cxr-pneumonia"), _row(rows, "cxr-adult")
    for row in (child, adult):
        assert row["n_signed"] == 2 * FILMS
        assert row["tp"] + row["fn"] == FILMS and row["tn"] + row["fp"] == FILMS
        assert row["card"] is not None and len(row["model_sha256"]) == 64
        for name in ("agreement", "sensitivity", "specificity", "ppv"):
            low, high = row[name]["ci"]
            assert low <= row[name]["value"] <= high
    # the children's card: specificity 1.0 (0.98-1.0) on Guangzhou children; here far below
    assert child["alarm"] and "specificity" in child["alarms"]
    assert child["specificity"]["ci"][1] < child["card"]["specificity_ci"][0]
    assert not adult["alarm"], adult
    assert adult["sensitivity"]["ci"][1] >= adult["card"]["sensitivity_ci"][0]
    alarms = store.audit_entries("surveillance.alarm")
    assert len(alarms) == len(child["alarms"])
    assert "cxr-pneumonia" in alarms[0].detail and "below the model card" in alarms[0].detail
    surveillance.summary(store)
    assert len(store.audit_entries("surveillance.alarm")) == len(child["alarms"])  # once


def test_no_patient_data_leaves_in_the_summary(
        clinic: tuple[Store, list[Screening], Pipeline]) -> None:
    store, screenings, _ = clinic
    text = repr(surveillance.summary(store))
    for screening in screenings[:5]:
        assert screening.patient.identifier not in text and screening.patient.name not in text
        assert screening.uid not in text


def test_the_sign_offs_are_a_labelled_set_for_site_validation(
        clinic: tuple[Store, list[Screening], Pipeline]) -> None:
    store, _, pipeline = clinic
    sha = pipeline.models["cxr-adult"].bundle.sha256
    scored = validation.from_sign_offs(store, "cxr-adult", sha)
    assert len(scored.cases) == 2 * FILMS and sum(c.positive for c in scored.cases) == FILMS
    figures = validation.report(pipeline, "cxr-adult", scored)
    assert figures["auc"] is not None and figures["proposal"]["status"] == "refused"
    assert "only 30 positive images: at least 40" in figures["proposal"]["reasons"][0]
    looser = validation.report(pipeline, "cxr-adult", scored, target=0.80, min_positives=20,
                               min_negatives=20)
    assert looser["proposal"]["proposed"]["sensitivity_ci"][0] >= 0.80
    other = validation.from_sign_offs(store, "cxr-adult", "0" * 64)  # another version's scores
    assert not other.cases and other.excluded == {"another model version": 2 * FILMS}


def test_a_referral_outcome_outranks_the_clinicians_verdict(
        clinic: tuple[Store, list[Screening], Pipeline]) -> None:
    store, screenings, _ = clinic
    before = _row(surveillance.summary(store), "cxr-adult")
    # a film the clinician called non-referable turns out to have the disease at referral
    cleared = next(s for s in screenings if s.sign_off and s.sign_off.verdict == "non_referable")
    surveillance.enter_outcome(store, cleared.id, "disease", "pneumonia at the hospital",
                               actor="dr")
    after = _row(surveillance.summary(store), "cxr-adult")
    assert after["n_outcomes"] == before["n_outcomes"] + 1
    assert after["tp"] + after["fn"] == before["tp"] + before["fn"] + 1
    assert after["tn"] + after["fp"] == before["tn"] + before["fp"] - 1
    assert surveillance.outcome_of(store, cleared.id)["outcome"] == "disease"
    assert store.audit_entries("screening.referral_outcome")[0].patient_id == cleared.patient.id
    with pytest.raises(StoreError, match="unknown referral outcome"):
        surveillance.enter_outcome(store, cleared.id, "maybe", "", actor="dr")
    with pytest.raises(NotFoundError):
        surveillance.enter_outcome(store, 10_000, "disease", "", actor="dr")
