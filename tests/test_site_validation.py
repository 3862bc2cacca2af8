"""Site validation before go-live (issue 16.2), end to end on real photographs and real bundles.

A clinic's labelled set is built in the test from EyePACS (../shared/data: a CSV of file, label,
patient, eye over the real images); the shipped fundus-dr bundle screens it through the real
pipeline. Skips with the reason when the images or the bundle are absent.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, shared

from engines.bundle import find_bundles
from kiosk import stats
from kiosk.config import Config, load_config
from kiosk.lifecycle import validation
from kiosk.pipeline import Pipeline
from kiosk.result import model_words
from kiosk.store import Store
from kiosk.visit import Offered, apply_settings, screen

pytestmark = pytest.mark.slow  # a real bundle screening a few hundred real photographs

TASK = "fundus-dr"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Pipeline]]:
    """The real pipeline (every shipped bundle) and a configuration with a fresh data folder."""
    if not any(p.name.startswith(f"{TASK}-") for p in find_bundles(ROOT / "models")):
        pytest.skip(f"the real {TASK} bundle is not in models/ (python -m export build {TASK})")
    tmp = tmp_path_factory.mktemp("site")
    config = load_config(env={}, data_dir=tmp / "data", engine_cache_dir=tmp / "e",
                         sandbox_workers=0)
    pipeline = Pipeline.from_config(config)
    yield config, pipeline
    pipeline.close()


@pytest.fixture
def pipeline(site: tuple[Config, Pipeline]) -> Iterator[Pipeline]:
    """The shared pipeline, its site point withdrawn again after each test."""
    yield site[1]
    site[1].set_site_point(TASK, None)


def eyepacs(tmp: Path, positives: int, negatives: int) -> tuple[Path, Path]:
    """A clinic's labelled set: the EyePACS folder and a CSV of the first such images."""
    folder = shared("fundus", "eyepacs-256", "images")
    with shared("fundus", "eyepacs-256", "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    wanted = {"1": positives, "0": negatives}
    picked = []
    for row in rows:
        if wanted[row["referable"]] > 0:
            wanted[row["referable"]] -= 1
            picked.append(row)
    labels = tmp / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "patient", "eye"])
        for row in picked:
            writer.writerow([row["image"], row["referable"], row["patient"], row["eye"]])
    return folder, labels


def validate(pipeline: Pipeline, tmp: Path, positives: int, negatives: int) -> dict:
    """Screen a labelled set of this make-up and report on it."""
    folder, labels = eyepacs(tmp, positives, negatives)
    scored = validation.screen_folder(pipeline, TASK, folder, validation.read_labels(labels))
    return validation.report(pipeline, TASK, scored)


def test_the_lower_bound_rule_bites_and_the_change_is_applied_and_undone(
        pipeline: Pipeline, site: tuple[Config, Pipeline], tmp_path: Path) -> None:
    config = site[0]
    figures = validate(pipeline, tmp_path, positives=60, negatives=240)
    assert (figures["n_positive"], figures["n_negative"]) == (60, 240)
    assert figures["auc"] > 0.5 and figures["auc_ci"][0] < figures["auc"] < figures["auc_ci"][1]
    assert figures["current"]["operating_point"] == "screening"
    assert figures["current"]["threshold"] == pytest.approx(bundle_threshold(pipeline))
    proposal = figures["proposal"]
    assert proposal["status"] == "proposed", proposal["reasons"]
    new = proposal["proposed"]
    # the rule: the LOWER bound clears the target; the point-estimate threshold would not
    assert new["sensitivity_ci"][0] >= 0.90
    usual = proposal["point_estimate"]
    assert usual["sensitivity"] >= 0.90 > usual["sensitivity_ci"][0]
    assert new["threshold"] < usual["threshold"]
    assert new["specificity"] < usual["specificity"]  # the price of the guarantee, shown
    store = Store.open(config)
    try:
        run = validation.keep(store, figures, source="folder", actor="admin")
        assert run.report["proposal"]["proposed"]["threshold"] == new["threshold"]
        assert pipeline.operating_point(TASK) == "screening"  # nothing changes before applying
        validation.apply(store, run.id, actor="admin", pipeline=pipeline)
        result = screened(pipeline)
        model = result["model"]
        assert model is not None and model["operating_point"] == "site"
        assert result["findings"][0]["threshold"] == new["threshold"]
        assert "calibrated at this site on" in model_words(result)
        assert f"n = {60 + 240}" in model_words(result)
        actions = [e.action for e in store.audit_entries("site_validation")]
        assert {"site_validation.run", "site_validation.apply"} <= set(actions)
        # a restart gives the pipeline the site point again, from the store
        pipeline.set_site_point(TASK, None)
        apply_settings(store, pipeline)
        assert pipeline.operating_point(TASK) == "site"
        validation.undo(store, TASK, actor="admin", pipeline=pipeline)
        assert pipeline.operating_point(TASK) == "screening"
        assert "site_validation.undo" in [e.action for e in store.audit_entries("site_validation")]
        assert screened(pipeline)["findings"][0]["threshold"] == pytest.approx(
            bundle_threshold(pipeline))
    finally:
        store.close()


def bundle_threshold(pipeline: Pipeline) -> float:
    """The threshold of the bundle's own "screening" point (the card's)."""
    spec = pipeline.models[TASK].bundle.manifest["findings"][0]
    return float(spec["operating_points"]["screening"]["threshold"])


def screened(pipeline: Pipeline) -> dict:
    """One real photograph screened the way a visit screens it."""
    photo = shared("fundus", "eyepacs-256", "images", "10009_left.jpeg")
    outcomes = screen(pipeline, [Offered(photo.read_bytes(), photo.name, "L")]).outcomes[0]
    return dict(next(o.result for o in outcomes if o.result["task"] == TASK))


def test_too_few_positives_are_refused_with_the_reason(pipeline: Pipeline, site: tuple[Config, Pipeline],
                                                      tmp_path: Path) -> None:
    figures = validate(pipeline, tmp_path, positives=20, negatives=150)
    proposal = figures["proposal"]
    assert proposal["status"] == "refused" and proposal["proposed"] is None
    assert any("only 20 positive images: at least 40" in why for why in proposal["reasons"])
    assert any("35 are needed" in why for why in proposal["reasons"])  # the Wilson floor at 0.90
    assert figures["current"]["n_positive"] == 20  # the local figures are still reported
    store = Store.open(site[0])
    try:
        run = validation.keep(store, figures, source="folder", actor="admin")
        with pytest.raises(validation.ValidationError, match="proposes no threshold"):
            validation.apply(store, run.id, actor="admin", pipeline=pipeline)
        assert pipeline.operating_point(TASK) == "screening"
    finally:
        store.close()


def test_a_labels_csv_that_leaves_the_folder_is_refused(pipeline: Pipeline, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n../labels.csv,1\n")
    (tmp_path / "set").mkdir()
    rows = validation.read_labels(labels)
    with pytest.raises(validation.ValidationError, match="outside the labelled folder"):
        validation.screen_folder(pipeline, TASK, tmp_path / "set", rows)
    labels.write_text("file,label\na.jpeg,maybe\n")
    with pytest.raises(validation.ValidationError, match="neither positive"):
        validation.read_labels(labels)


def test_the_wilson_floor_and_the_bound_threshold() -> None:
    assert stats.wilson(35, 35)[0] >= 0.90 > stats.wilson(34, 34)[0]
    assert stats.positives_needed(0.90) == 35
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(60, bool), np.zeros(200, bool)]
    scores = np.r_[rng.uniform(0.3, 1.0, 60), rng.uniform(0.0, 0.7, 200)]
    bound = stats.threshold_for_sensitivity_bound(labels, scores, 0.90)
    estimate = stats.threshold_for_sensitivity(labels, scores, 0.90)
    assert bound is not None and bound < estimate
    assert stats.measure(labels, scores, bound).sensitivity_ci[0] >= 0.90
    assert stats.measure(labels, scores, estimate).sensitivity_ci[0] < 0.90
    assert stats.threshold_for_sensitivity_bound(labels[:-200][:30], scores[:30], 0.90) is None


def test_kiosk_calibrate_proposes_applies_and_undoes(site: tuple[Config, Pipeline],
                                                      tmp_path: Path) -> None:
    folder, labels = eyepacs(tmp_path, positives=45, negatives=110)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env.update(KIOSK_DATA_DIR=str(tmp_path / "data"), KIOSK_SANDBOX_WORKERS="0",
               KIOSK_ENGINE_CACHE_DIR=str(tmp_path / "e"))

    def kiosk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kiosk.cli", "calibrate", TASK, *args],
                              env=env, capture_output=True, text=True, timeout=300, check=False)

    source = ("--labels", str(labels), "--images", str(folder), "--json")
    refused = kiosk(*source, "--min-positives", "100", "--apply")
    assert refused.returncode == 1, refused.stderr
    answer = json.loads(refused.stdout)
    assert answer["proposal"]["status"] == "refused" and answer["applied"] is None
    assert "only 45 positive images: at least 100" in answer["proposal"]["reasons"][0]
    applied = kiosk(*source, "--apply", "--actor", "admin")
    assert applied.returncode == 0, applied.stderr
    answer = json.loads(applied.stdout)
    assert answer["applied"] and answer["proposal"]["proposed"]["sensitivity_ci"][0] >= 0.90
    assert answer["current"]["operating_point"] == "screening"
    undone = kiosk("--undo", "--json")
    assert undone.returncode == 0 and json.loads(undone.stdout)["withdrawn"] == answer["validation"]
    store = Store.open(load_config(env=env))
    try:
        actions = [e.action for e in store.audit_entries("site_validation")]
        assert actions == ["site_validation.undo", "site_validation.apply", "site_validation.run",
                           "site_validation.run"]
    finally:
        store.close()
