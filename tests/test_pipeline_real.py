"""The real reference bundles (models/) screening real images (../shared/data).

Skips with the reason while a bundle is not built yet or the real images are absent.
"""

from __future__ import annotations

import pytest
from conftest import ROOT, shared

from engines.bundle import find_bundles, load_bundle
from kiosk.config import Config, load_config
from kiosk.intake.dicom import age_in_years
from kiosk.pipeline import Pipeline

pytestmark = pytest.mark.slow  # the real model bundles on real full-size images

MODELS = ROOT / "models"
TRUSTED = MODELS / "trusted_keys"
#: EyePACS full-size samples with their ICDR grade (../shared/data/README.md)
FUNDUS_GRADES = {"10_left": 0, "10_right": 0, "13_left": 0, "13_right": 0, "15_left": 1,
                 "15_right": 2, "16_left": 4, "16_right": 4, "17_left": 0, "17_right": 1}


def _need(task: str) -> None:
    if not any(p.name.startswith(f"{task}-") for p in find_bundles(MODELS)):
        pytest.skip(f"the real {task} bundle is not in {MODELS} yet (python -m export build {task})")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    if not find_bundles(MODELS):
        pytest.skip(f"no real bundle in {MODELS} yet")
    tmp = tmp_path_factory.mktemp("real")
    config: Config = load_config(env={}, data_dir=tmp / "data", engine_cache_dir=tmp / "e",
                                 sandbox_workers=0)
    made = Pipeline.from_config(config)
    yield made
    made.close()


def test_every_shipped_bundle_verifies_under_the_shipped_keys() -> None:
    bundles = find_bundles(MODELS)
    if not bundles:
        pytest.skip(f"no real bundle in {MODELS} yet")
    for path in bundles:
        bundle = load_bundle(path, TRUSTED)
        assert bundle.manifest["findings"] and bundle.manifest["intended_use"]


def test_the_cpu_engine_uses_int8_exactly_when_the_manifest_says_so(pipeline: Pipeline) -> None:
    for model in pipeline.models.values():
        expected = "int8" if model.bundle.prefers_int8_on_cpu() else "fp32"
        assert model.engine.variant == expected


def test_full_size_fundus_photographs(pipeline: Pipeline) -> None:
    _need("fundus-dr")
    scores: dict[int, list[float]] = {}
    for name, grade in FUNDUS_GRADES.items():
        data = shared("fundus", "eyepacs-fullres", f"{name}.jpeg").read_bytes()
        outcome = pipeline.screen(data, source=f"{name}.jpeg")[0]
        result = outcome.result
        assert result["error"] is None and result["task"] == "fundus-dr"
        assert result["laterality"] == name.split("_")[1][0].upper()
        if result["verdict"] == "ungradable":
            assert result["quality"]["reasons"]
            continue
        assert outcome.heatmap_png is not None
        scores.setdefault(grade, []).append(result["score"])
    assert scores.get(4), "the proliferative DR eyes (grade 4) must be gradable"
    # proliferative retinopathy scores above every eye without retinopathy
    assert min(scores[4]) > max(scores.get(0, [0.0]))


def test_chest_films_from_both_classes(pipeline: Pipeline) -> None:
    _need("cxr-pneumonia")
    folder = shared("cxr", "kermany-224", "train")
    means = {}
    for label in ("NORMAL", "PNEUMONIA"):
        files = sorted((folder / label).iterdir())[:8]
        results = [pipeline.screen(f.read_bytes(), source=f.name, task="cxr-pneumonia")[0].result
                   for f in files]
        assert all(r["error"] is None for r in results)
        graded = [r["score"] for r in results if r["verdict"] != "ungradable"]
        assert graded, f"no {label} film was gradable"
        means[label] = sum(graded) / len(graded)
    assert means["PNEUMONIA"] > means["NORMAL"]


@pytest.mark.parametrize("name", ["SIIM-CXR-no-pneumothorax.dcm", "RG1_J2KI.dcm"])
def test_real_chest_dicom_gets_a_verdict(pipeline: Pipeline, name: str) -> None:
    _need("cxr-pneumonia")
    chest = sorted(t for t in pipeline.tasks() if pipeline.task(t).kind == "cxr")
    outcomes = pipeline.screen(shared("dicom", name).read_bytes(), source=name)
    ran = sorted(str(o.result["task"]) for o in outcomes)
    age = age_in_years(outcomes[0].image.meta) if outcomes[0].image is not None else None
    if age is None:  # no age in the header, no patient record: every chest model reads it
        assert ran == chest
    else:  # the header's age chooses the model trained for such patients
        assert ran and all(pipeline.task(t).fits(age) is not False for t in ran), (age, ran)
    for outcome in outcomes:
        result = outcome.result
        assert result["error"] is None
        assert result["verdict"] in ("referable", "non_referable", "ungradable")
        if len(ran) > 1:
            assert any("age is not known" in w for w in result["warnings"])
        finding = result["findings"][0] if result["findings"] else None
        if finding is not None:
            assert 0.0 < finding["ppv"] <= 1.0 and "of 100 images flagged" in finding["meaning"]
            low, high = finding["ppv_range"]
            assert low <= finding["ppv"] <= high


def test_a_tibia_film_is_refused(pipeline: Pipeline) -> None:
    result = pipeline.screen(shared("dicom", "RG3_J2KR.dcm").read_bytes(), source="tibia.dcm")[0].result
    assert result["verdict"] is None and result["error"]["code"] == "wrong_body_part"


def test_the_repository_bundles_are_what_describe_reports(pipeline: Pipeline) -> None:
    for entry in pipeline.describe():
        if entry["signature"]["status"] == "refused":
            pytest.fail(f"a shipped bundle is refused: {entry}")
        assert (TRUSTED / f"{entry['signature']['key_id']}.pub").is_file()
        assert entry["backend"] == "onnxruntime-cpu" and entry["warmup_ms"] > 0
