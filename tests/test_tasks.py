"""Tasks as data: what a manifest says about its task, and several tasks per kind of image.

The chest models are chosen by the patient's age (issue 13.2): an adult is never cleared by the
children's model, nor a child by the adults' one; with no age known both run and the result
says so. Tiny real signed bundles (tests/bundle_builder.py), the real pipeline, a real film.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bundle_builder import build_bundle, make_keys
from conftest import shared

from kiosk import decide, visit
from kiosk.config import Config, load_config
from kiosk.pipeline import Pipeline
from kiosk.tasks import DEFAULTS, describe

CHILDREN = {"age_years": [1, 5], "description": "children aged 1-5"}
ADULTS = {"age_years": [18, 120], "description": "adults (18 and over)"}


def _config(tmp_path: Path) -> Config:
    return load_config(env={}, data_dir=tmp_path / "data", engine_cache_dir=tmp_path / "e",
                       models_dir=tmp_path / "models", trusted_keys=tmp_path / "trusted_keys",
                       sandbox_workers=0)


def _film() -> bytes:
    return shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes()


def test_a_shipped_task_takes_its_words_and_codes_from_the_registry() -> None:
    task = describe({"task": "fundus-dr", "input": {"channels": 3}, "findings": []})
    assert task.kind == "fundus" and task.referral.to == "an eye doctor"
    assert task.code_for("L") is not None and task.code_for("L").code == "71490-7"
    assert task.code_for(None) is not None and task.code_for(None).code != "71490-7"
    assert task.prevalence == DEFAULTS["fundus-dr"]["prevalence"]


def test_a_manifest_overrides_the_registry_and_a_new_task_needs_no_code() -> None:
    own = describe({"task": "cxr-pneumonia", "title": "Chest X-ray (children, v2)",
                    "population": CHILDREN, "prevalence": 0.2})
    assert own.title == "Chest X-ray (children, v2)" and own.prevalence == 0.2
    assert own.fits(3.0) and own.fits(5.6) and not own.fits(40.0) and own.fits(None) is None
    new = describe({"task": "tb-screen", "input": {"channels": 1},
                    "findings": [{"operating_point": {"n_positive": 30, "n_negative": 70}}]})
    assert new.kind == "cxr" and new.title == "Chest X-ray" and new.prevalence == pytest.approx(0.3)
    assert new.population is None and new.fits(40.0) is None


@pytest.fixture
def two_chest_models(tmp_path: Path) -> Any:
    keys = make_keys(tmp_path)

    def children(manifest: dict[str, Any]) -> None:
        manifest["population"] = CHILDREN

    def adults(manifest: dict[str, Any]) -> None:
        manifest.update(population=ADULTS, title="Chest X-ray (adults)")

    build_bundle(tmp_path / "models", keys, kind="cxr", edit=children)
    build_bundle(tmp_path / "models", keys, kind="cxr", task="cxr-adult", edit=adults)
    made = Pipeline.from_config(_config(tmp_path))
    yield made
    made.close()


def _screen(pipeline: Pipeline, age: float | None) -> visit.Screened:
    return visit.screen(pipeline, [visit.Offered(_film(), "film.dcm", kind="cxr")], age=age)


def test_the_chest_model_is_chosen_by_the_patients_age(two_chest_models: Pipeline) -> None:
    child = _screen(two_chest_models, 3.0).results
    adult = _screen(two_chest_models, 40.0).results
    assert [r["task"] for r in child] == ["cxr-pneumonia"]
    assert [r["task"] for r in adult] == ["cxr-adult"]  # never cleared by the children's model
    assert all("reader_required" not in r for r in child + adult)
    assert adult[0]["model"]["population"]["description"] == ADULTS["description"]
    assert adult[0]["title"] == "Chest X-ray (adults)"


def test_with_no_age_both_models_run_and_the_result_says_so(two_chest_models: Pipeline) -> None:
    results = _screen(two_chest_models, None).results
    assert sorted(r["task"] for r in results) == ["cxr-adult", "cxr-pneumonia"]
    assert all(r["image"] == 0 for r in results)
    assert all(any("age is not known" in w for w in r["warnings"]) for r in results)
    assert len(decide.combine(results)["per_eye"]) == 2  # each model's answer is shown


def test_an_age_no_model_was_trained_on_needs_a_clinician(two_chest_models: Pipeline) -> None:
    results = _screen(two_chest_models, 11.0).results
    assert sorted(r["task"] for r in results) == ["cxr-adult", "cxr-pneumonia"]
    assert all("reader_required" in r for r in results)
    overall = decide.combine(results)
    assert overall["refer"] is True and overall["verdict"] in ("referable", "ungradable")


def test_the_dicom_header_age_chooses_when_no_record_does(two_chest_models: Pipeline) -> None:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(_film()))
    ds.PatientAge = "068Y"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    [outcome] = two_chest_models.screen(buffer.getvalue(), source="pushed.dcm")
    assert outcome.result["task"] == "cxr-adult"


def test_named_operating_points_and_one_decision_per_patient(tmp_path: Path) -> None:
    """The admin's operating point sets the threshold; the bundle's rule over both eyes decides."""
    keys = make_keys(tmp_path)

    def points(manifest: dict[str, Any]) -> None:
        finding = manifest["findings"][0]
        finding["operating_points"] = {
            "screening": {"threshold": 0.001, "sensitivity": 0.9, "specificity": 0.6},
            "balanced": {"threshold": 0.999, "sensitivity": 0.8, "specificity": 0.8}}
        manifest["default_operating_point"] = "screening"
        manifest["patient"] = {"rule": "mean", "operating_points": {
            "screening": {"threshold": 0.001}, "balanced": {"threshold": 0.999}}}

    build_bundle(tmp_path / "models", keys, kind="fundus", edit=points)
    made = Pipeline.from_config(_config(tmp_path))
    try:
        eyes = [visit.Offered(shared("fundus", "eyepacs-fullres", f"13_{side}.jpeg").read_bytes(),
                              f"13_{side}.jpeg", side[0].upper(), "fundus")
                for side in ("left", "right")]
        screening = visit.screen(made, eyes).results
        made.set_operating_point("fundus-dr", "balanced")
        balanced = visit.screen(made, eyes).results
        with pytest.raises(Exception, match="no operating point"):
            made.set_operating_point("fundus-dr", "reckless")
    finally:
        made.close()
    assert screening[0]["findings"][0]["threshold"] == 0.001
    assert screening[0]["model"]["operating_point"] == "screening"
    assert balanced[0]["findings"][0]["threshold"] == 0.999
    assert balanced[0]["patient_rule"] == {"rule": "mean", "threshold": 0.999,
                                           "operating_point": "balanced"}
    assert decide.combine(screening)["verdict"] == "referable"  # every score passes 0.001
    assert decide.combine(balanced)["verdict"] == "non_referable"


def test_the_patient_rule_replaces_each_eyes_own_decision() -> None:
    rule = {"rule": "mean", "threshold": 0.5, "operating_point": "screening"}

    def eye(side: str, score: float, verdict: str) -> dict[str, Any]:
        return {"task": "fundus-dr", "laterality": side, "verdict": verdict, "score": score,
                "priority": 0, "patient_rule": rule}

    one_high = [eye("L", 0.55, "referable"), eye("R", 0.2, "non_referable")]
    both_high = [eye("L", 0.7, "referable"), eye("R", 0.4, "non_referable")]
    assert decide.combine(one_high)["verdict"] == "non_referable"  # mean 0.375 < 0.5
    assert decide.combine(both_high)["verdict"] == "referable"  # mean 0.55
    ungraded = [eye("L", 0.55, "referable"), {**eye("R", 0.0, "ungradable"), "score": None}]
    assert decide.combine(ungraded)["verdict"] == "referable"  # no rule without both eyes
