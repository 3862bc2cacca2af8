"""Drift alarms (issue 16.1): the shipped references, ``kiosk screen --keep``, ``kiosk drift``
and the admin page, end to end on real photographs with the shipped bundles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from browser.web_support import add_user, login, make_app, web_config
from conftest import ROOT, shared

from engines.bundle import load_bundle
from kiosk.lifecycle import drift
from kiosk.pixels.features import VERSION
from kiosk.store import Store

MODELS = ROOT / "models"
TRUSTED = MODELS / "trusted_keys"
WITH_REFERENCE = ["fundus-dr-2.0.1", "cxr-adult-1.0.1"]


def test_psi_is_nil_for_the_reference_itself_and_grows_with_the_shift() -> None:
    rng = np.random.default_rng(1)
    reference = drift.reference_bins(rng.normal(100, 10, 800).tolist())
    same = drift.binned(reference["edges"], rng.normal(100, 10, 4000).tolist())
    darker = drift.binned(reference["edges"], rng.normal(92, 10, 4000).tolist())
    much_darker = drift.binned(reference["edges"], rng.normal(80, 10, 4000).tolist())
    values = [drift.psi(reference["counts"], c) for c in (same, darker, much_darker)]
    assert values[0] < 0.05 and 0.3 < values[1] < values[2]


def test_values_outside_the_reference_range_fall_in_bins_of_their_own() -> None:
    bins = drift.reference_bins([256.0] * 50)  # every training image was 256 px wide
    assert bins["counts"] == [0, 50, 0]
    assert drift.binned(bins["edges"], [255.0, 256.0, 2592.0]) == [1, 1, 1]


def test_a_source_device_outside_the_sites_first_cases_raises_the_alarm() -> None:
    bundle = load_bundle(MODELS / "fundus-dr-2.0.1", TRUSTED)
    usual = {"inputs": {"device": "Topcon NW400"}, "score": None, "sha256": bundle.sha256}
    other = {"inputs": {"device": "Canon CR-2"}, "score": None, "sha256": bundle.sha256}
    first = [usual] * drift.FIRST_CASES
    assert drift.measure(bundle, [usual] * 5, first).alarm is False
    found = drift.measure(bundle, [usual] * 4 + [other], first)
    assert found.alarm is True and found.new_devices == ["Canon CR-2"] and found.value is None
    too_few = drift.measure(bundle, [other], first[:-1])  # no baseline before FIRST_CASES results
    assert too_few.alarm is False


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_shipped_bundles_carry_the_reference_of_their_calibration_split(name: str) -> None:
    manifest = load_bundle(MODELS / name, TRUSTED).manifest
    reference = manifest["input_reference"]
    assert reference["version"] == VERSION and reference["split"] == "calibration"
    assert reference["n"] == sum(manifest["score_distribution"]["counts"])
    assert set(reference["features"]) == set(drift.NUMERIC)
    for bins in reference["features"].values():
        assert sum(bins["counts"]) == reference["n"]
        assert len(bins["counts"]) == len(bins["edges"]) + 1


def test_the_shipped_reference_is_what_the_kiosk_measures_on_those_films() -> None:
    """Measured again from the data (the recipe's split, the kiosk's intake and features), the
    cxr-adult reference is the one its bundle ships."""
    from export.recipes import RECIPES
    from export.reference import reference_for

    data = shared("cxr", "nih-adult-512").parent.parent
    shipped = load_bundle(MODELS / "cxr-adult-1.0.1", TRUSTED).manifest["input_reference"]
    assert reference_for(RECIPES["cxr-adult"], data, "cxr") == shipped


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a kiosk with the shipped bundles and an empty store."""
    tmp_path = tmp_path_factory.mktemp("clinic")
    values = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    values.update(KIOSK_MODELS_DIR=str(MODELS), KIOSK_TRUSTED_KEYS=str(TRUSTED),
                  KIOSK_DATA_DIR=str(tmp_path / "data"), KIOSK_SANDBOX_WORKERS="0",
                  KIOSK_ENGINE_CACHE_DIR=str(tmp_path / "engines"))
    return values


def _kiosk(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiosk.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _drift(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    done = _kiosk(env, "drift", "--json")
    assert done.returncode in (0, 1), done.stderr
    found = [json.loads(line) for line in done.stdout.splitlines()]
    return done.returncode, {str(one["task"]): one for one in found}


def _held_out_photographs(count: int) -> list[Path]:
    """Test-split EyePACS photographs (held out from training and from the reference)."""
    from export.recipes import RECIPES
    from export.reference import split_files

    data = shared("fundus", "eyepacs-256").parent.parent
    return split_files(RECIPES["fundus-dr"], data, "test")[:count]


def _darkened(files: list[Path], folder: Path) -> list[Path]:
    """Copies at 60% of their brightness (an under-exposed flash), as JPEG files."""
    folder.mkdir()
    for path in files:
        pixels = np.asarray(cv2.imread(str(path)), dtype=np.float32)
        cv2.imwrite(str(folder / path.name), (pixels * 0.6).astype(np.uint8))
    return [folder / path.name for path in files]


Checked = tuple[int, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Kept:
    """What the clinic screened and what ``kiosk drift`` said before and after the change."""

    first: dict[str, Any]
    first_path: Path
    before: Checked
    after: Checked


@pytest.fixture(scope="module")
def kept(clinic: dict[str, str]) -> Kept:
    """A clinic that kept a window of held-out photographs, then 20 darkened ones."""
    usual = _held_out_photographs(drift.WINDOW + 20)
    screened = _kiosk(clinic, "screen", "--keep", "--json", "--no-progress", "--task", "fundus-dr",
                      *map(str, usual[: drift.WINDOW]))
    assert screened.returncode == 0, screened.stderr
    first = json.loads(screened.stdout.splitlines()[0])
    before = _drift(clinic)
    dark = _darkened(usual[drift.WINDOW :], Path(clinic["KIOSK_DATA_DIR"]).parent / "dark")
    # the eye slot names the task: a darkened photograph no longer says what it is by itself
    again = _kiosk(clinic, "screen", "--keep", "--no-progress", "--task", "fundus-dr",
                   *map(str, dark))
    assert again.returncode == 0, again.stderr
    return Kept(first, usual[0], before, _drift(clinic))


def test_kept_screenings_raise_the_drift_alarm_only_once_the_images_change(
        kept: Kept, clinic: dict[str, str]) -> None:
    from export.reference import file_features

    # the features the kiosk put on the result are those the reference was built with
    assert kept.first["inputs"] == file_features(kept.first_path, "fundus", 256)
    code, before = kept.before
    fundus = before["fundus-dr"]
    assert code == 0 and fundus["alarm"] is False and fundus["n"] == drift.WINDOW
    assert fundus["statistic"] == "psi" and fundus["threshold"] == drift.THRESHOLDS["fundus-dr"]
    assert isinstance(fundus["value"], float) and fundus["value"] <= fundus["threshold"]
    code, after = kept.after
    assert code == 1 and after["fundus-dr"]["alarm"] is True
    assert after["fundus-dr"]["value"] > after["fundus-dr"]["threshold"]
    assert after["cxr-adult"]["alarm"] is False and after["cxr-adult"]["n"] == 0
    # audited once when raised, not on every check
    code, _ = _drift(clinic)
    assert code == 1
    assert _alarms_audited(clinic) == 1


def _alarms_audited(clinic: dict[str, str]) -> int:
    config = web_config(Path(clinic["KIOSK_DATA_DIR"]).parent)
    store = Store.open(config)
    try:
        return sum(e.action == "drift.alarm" for e in store.audit_entries("drift"))
    finally:
        store.close()


def test_the_admin_page_plots_the_distributions_and_shows_the_alarm(
        kept: Kept, clinic: dict[str, str]) -> None:
    config = web_config(Path(clinic["KIOSK_DATA_DIR"]).parent, models_dir=MODELS,
                        trusted_keys=TRUSTED, sandbox_workers=0)
    app, store = make_app(config)
    add_user(store, "boss", "admin")
    add_user(store, "nurse", "operator")
    client = app.test_client()
    try:
        login(client, "nurse")
        assert client.get("/admin/monitoring/").status_code == 403
        client = app.test_client()
        login(client, "boss")
        page = client.get("/admin/monitoring/").get_data(as_text=True)
        assert 'role="alert"' in page and "fundus-dr 2.0.1" in page
        assert page.count("<svg") >= 2 * len(drift.NUMERIC)  # fundus-dr and cxr-adult, + scores
        assert 'href="/admin/monitoring/"' in page  # the admin's menu leads here
        assert sum(e.action == "drift.alarm" for e in store.audit_entries("drift")) == 1
        french = client.get("/admin/monitoring/?lang=fr").get_data(as_text=True)
        assert "Alarme de dérive" in french and "Luminosité" in french
    finally:
        app.extensions["kiosk"].pipeline.close()
        store.close()
