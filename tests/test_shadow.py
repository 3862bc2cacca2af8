"""Change control and shadow mode (issue 16.4) with the shipped bundles and real photographs.

A candidate is a shipped bundle copied with a newer version and another calibration, re-signed
with a key made here (tests/shadow_support.py). The rules of docs/change-control.md: a fresh
kiosk records its newest bundle as active; an installed newer bundle is only a candidate; the
active bundle gone or broken is never replaced by one nobody promoted; promote and rollback
are one audited step each. The shadow report is checked against the store's own rows.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.web_support import web_config
from conftest import shared
from shadow_support import Models, make_candidate, models_with

from kiosk import visit
from kiosk.cli import main
from kiosk.commands.doctor import check_lineup
from kiosk.config import Config
from kiosk.errors import BundleError
from kiosk.lifecycle import models as lineup
from kiosk.lifecycle.shadow import ShadowRunner
from kiosk.store import Store
from kiosk.store import shadow as kept

TASK = "fundus-dr"


@pytest.fixture
def kiosk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Config, Store, Models]]:
    """A fresh kiosk with the shipped fundus bundle; the CLI sees the same folders."""
    models = models_with(tmp_path, TASK)
    config = web_config(tmp_path, models_dir=models.folder, trusted_keys=models.trusted,
                        sandbox_workers=0)
    for name, value in {"KIOSK_MODELS_DIR": models.folder, "KIOSK_TRUSTED_KEYS": models.trusted,
                        "KIOSK_DATA_DIR": config.data_dir, "KIOSK_SANDBOX_WORKERS": "0"}.items():
        monkeypatch.setenv(name, str(value))
    store = Store.open(config)
    yield config, store, models
    store.close()


def _shipped(models: Models) -> Path:
    return models.shipped[TASK]


def _roles(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["models", "list", "--json"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {entry["version"]: entry["role"] for entry in entries}


def test_an_installed_newer_bundle_is_a_candidate_until_promoted(
        kiosk: tuple[Config, Store, Models], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, store, models = kiosk
    shipped = lineup.survey(config, store).active[TASK]  # a fresh kiosk: the newest, recorded
    first = store.audit_entries("model.activate")
    assert len(first) == 1 and shipped.sha256[:12] in first[0].detail
    candidate, version = make_candidate(_shipped(models), tmp_path / "incoming", models.keys)
    assert main(["models", "install", str(candidate)]) == 0
    assert "as candidate" in capsys.readouterr().out
    assert _roles(capsys) == {shipped.version: "active", version: "candidate"}
    assert lineup.survey(config, store).active[TASK].sha256 == shipped.sha256  # not silently
    assert main(["models", "promote", TASK, version, "--actor", "dr-admin"]) == 0
    capsys.readouterr()
    assert _roles(capsys) == {shipped.version: "previous", version: "active"}
    assert main(["models", "rollback", TASK, "--actor", "dr-admin"]) == 0
    assert f"active {shipped.version}" in capsys.readouterr().out
    assert _roles(capsys) == {shipped.version: "active", version: "candidate"}
    actions = [(e.action, e.actor) for e in store.audit_entries("model.")]
    assert ("model.promote", "dr-admin") in actions and ("model.rollback", "dr-admin") in actions
    assert ("model.install", "admin") in actions


def test_install_refuses_a_bundle_that_fails_verification_or_repeats_a_version(
        kiosk: tuple[Config, Store, Models], tmp_path: Path) -> None:
    config, store, models = kiosk
    candidate, _ = make_candidate(_shipped(models), tmp_path / "incoming", models.keys)
    manifest = json.loads((candidate / "manifest.json").read_text())
    manifest["findings"][0]["threshold"] = 0.01  # altered after signing
    (candidate / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError):
        lineup.install(config, store, candidate, actor="admin")
    assert sorted(p.name for p in config.models_dir.iterdir()) == [_shipped(models).name]
    with pytest.raises(lineup.ChangeRefused):
        lineup.install(config, store, _shipped(models), actor="admin")


def test_a_missing_or_broken_active_bundle_is_never_replaced_by_an_unpromoted_one(
        kiosk: tuple[Config, Store, Models], tmp_path: Path) -> None:
    config, store, models = kiosk
    shipped = lineup.survey(config, store).active[TASK]
    first, version = make_candidate(_shipped(models), tmp_path / "a", models.keys)
    newer, _ = make_candidate(_shipped(models), tmp_path / "b", models.keys, bump=2)
    lineup.install(config, store, first, actor="admin")
    lineup.promote(config, store, TASK, version, actor="admin")
    lineup.install(config, store, newer, actor="admin")
    shutil.rmtree(config.models_dir / first.name)  # the active bundle disappears
    after = lineup.survey(config, store)
    assert after.active[TASK].sha256 == shipped.sha256  # the previous one, which was promoted
    assert "previous one" in after.notes[TASK] and after.candidates[TASK].version != version
    assert [c.status for c in check_lineup(config)] == ["WARN"]  # kiosk doctor says so
    sig = config.models_dir / _shipped(models).name / "manifest.sig"
    sig.write_text(sig.read_text()[::-1])  # and the previous one fails verification
    broken = lineup.survey(config, store)
    assert TASK not in broken.active and "not screened" in broken.notes[TASK]
    (check,) = check_lineup(config)
    assert check.status == "FAIL" and "promote" in check.fix
    with pytest.raises(BundleError, match="no active model bundle"):
        lineup.open_pipeline(config, store, broken)
    assert [e.action for e in store.audit_entries("model.unavailable")] == ["model.unavailable"]


def _eyepacs(pairs: int) -> list[tuple[Path, Path, bool]]:
    """(right, left, referable) of the first patients of the EyePACS table with both eyes."""
    folder = shared("fundus", "eyepacs-256")
    with (folder / "labels.csv").open() as table:
        rows = list(csv.DictReader(table))
    eyes: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        eyes.setdefault(row["patient"], {})[row["eye"]] = row
    both = [e for e in eyes.values() if {"left", "right"} <= set(e)][:pairs]
    return [(folder / "images" / e["right"]["image"], folder / "images" / e["left"]["image"],
             "1" in (e["right"]["referable"], e["left"]["referable"])) for e in both]


def test_shadow_results_are_kept_apart_and_the_report_counts_them(
        kiosk: tuple[Config, Store, Models], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, store, models = kiosk
    patients = _eyepacs(6)
    candidate, version = make_candidate(_shipped(models), tmp_path / "incoming", models.keys)
    bundle = lineup.install(config, store, candidate, actor="admin")
    lazy = visit.LazyPipeline(config, store)
    try:
        screenings = []
        for index, (right, left, referable) in enumerate(patients):
            patient = store.upsert_patient(f"E-{index}", "EyePACS patient", None, None, actor="t")
            offered = [visit.Offered(right.read_bytes(), right.name, "R", "fundus"),
                       visit.Offered(left.read_bytes(), left.name, "L", "fundus")]
            screening = visit.record(store, patient.id, visit.screen(lazy(), offered, age=55.0),
                                     actor="nurse")
            if index % 2 == 0:  # a clinician signs half of them, with the graders' answer
                verdict = "referable" if referable else "non_referable"
                decision = "confirm" if verdict == screening.verdict else "overrule"
                store.sign_off(screening.id, clinician="dr", decision=decision, note="graded",
                               verdict=verdict)
            screenings.append(screening)
        shadow = lazy().shadow
        assert isinstance(shadow, ShadowRunner)
        shadow.drain()
    finally:
        lazy.close()
    pairs = []
    for screening in screenings:
        kept_results = store.get_screening(screening.id).results
        assert all(r["model"]["sha256"] != bundle.sha256 for r in kept_results)  # staff's table
        with store.db.read() as conn:
            shadows = kept.shadow_results(conn, screening.id)
        graded = [r for r in kept_results if r["verdict"] in ("referable", "non_referable")]
        assert len(shadows) == len(graded)
        assert {(r["model"]["version"], r["model"]["sha256"]) for r in shadows} == {
            (version, bundle.sha256)}
        pairs += list(zip(graded, shadows, strict=True))
    assert any(a["score"] != s["score"] for a, s in pairs)  # the candidate reads differently
    assert main(["models", "shadow-report", "--json"]) == 0
    (entry,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entry["candidate"]["sha256"] == bundle.sha256 and entry["n"] == len(pairs)
    agreed = sum(a["verdict"] == s["verdict"] for a, s in pairs)
    assert entry["versus_active"]["agreement"]["value"] == round(agreed / len(pairs), 4)
    clinicians = entry["versus_clinicians"]
    assert clinicians["n_signed"] == 3
    for side in ("active", "candidate"):
        counts = clinicians[side]
        assert counts["tp"] + counts["fp"] + counts["tn"] + counts["fn"] == 3



def test_kiosk_screen_reads_with_the_active_bundle_not_the_newest_installed(
        kiosk: tuple[Config, Store, Models], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, store, models = kiosk
    shipped = lineup.survey(config, store).active[TASK]
    candidate, version = make_candidate(_shipped(models), tmp_path / "incoming", models.keys)
    lineup.install(config, store, candidate, actor="admin")
    right, _, _ = _eyepacs(1)[0]
    assert main(["screen", "--json", "--task", TASK, str(right)]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (result["model"]["version"], result["model"]["sha256"]) == (shipped.version,
                                                                       shipped.sha256)
    lineup.promote(config, store, TASK, version, actor="admin")
    assert main(["screen", "--json", "--task", TASK, str(right)]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["model"]["version"] == version


def test_a_replaced_pipeline_is_closed_once_after_its_grace_period() -> None:
    closed: list[str] = []

    class Replaced:
        def close(self) -> None:
            closed.append("closed")

    retired = lineup.Retired(Replaced(), after_s=0.05)  # type: ignore[arg-type]
    assert not retired.closed
    deadline = time.monotonic() + 10
    while not retired.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    retired.close()  # at shutdown: already done, not twice
    assert closed == ["closed"]
