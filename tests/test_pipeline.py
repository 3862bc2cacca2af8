"""The pipeline end to end on real images, through tiny signed bundles built at test time."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from bundle_builder import build_bundle, make_keys
from conftest import shared
from PIL import Image as PILImage

from kiosk.config import Config, load_config
from kiosk.errors import BundleError
from kiosk.framing import laterality_from_name, working_copy
from kiosk.pipeline import Pipeline

RESULT_KEYS = {"input", "task", "verdict", "score", "findings", "quality", "model", "backend",
               "laterality", "priority", "timings_ms", "warnings", "error"}
#: What a screened result adds: the image kind, the task's title, its referral, its codes and
#: the image's input features (for drift alarms).
SCREENED_KEYS = RESULT_KEYS | {"kind", "title", "referral", "codes", "inputs"}
TIMINGS = {"decode", "quality", "preprocess", "infer", "total"}


def _config(tmp_path: Path, **overrides: object) -> Config:
    values: dict[str, object] = {"data_dir": tmp_path / "data", "engine_cache_dir": tmp_path / "e",
                                 "models_dir": tmp_path / "models",
                                 "trusted_keys": tmp_path / "trusted_keys", "sandbox_workers": 0}
    values.update(overrides)
    return load_config(env={}, **values)


@pytest.fixture
def pipeline(tmp_path: Path):
    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys, kind="fundus")
    # pneumothorax scores high on bright films, pneumonia never fires
    build_bundle(tmp_path / "models", keys, kind="cxr", gains=[0.0, 4.0], biases=[-5.0, 0.0])
    made = Pipeline.from_config(_config(tmp_path))
    yield made
    made.close()


def _fundus(name: str = "13_left.jpeg") -> bytes:
    return shared("fundus", "eyepacs-fullres", name).read_bytes()


def test_a_full_size_fundus_photograph_gets_a_verdict(pipeline: Pipeline) -> None:
    outcome = pipeline.screen(_fundus(), source="13_left.jpeg")[0]
    result = outcome.result
    assert set(result) == SCREENED_KEYS and set(result["timings_ms"]) == TIMINGS
    assert result["error"] is None and result["task"] == "fundus-dr"
    assert result["quality"]["gradable"] is True, result["quality"]
    assert result["verdict"] in ("referable", "non_referable")
    assert result["laterality"] == "L" and result["backend"] == "onnxruntime-cpu"
    [found] = result["findings"]
    assert found["label"] == "referable_dr" and result["score"] == found["probability"]
    assert found["positive"] == (result["verdict"] == "referable")
    assert result["model"]["sha256"] == pipeline.models["fundus-dr"].bundle.sha256
    assert outcome.heatmap_png is not None and outcome.heatmap_png.startswith(b"\x89PNG")
    assert outcome.image is not None and min(outcome.image.size) < 1944  # decoded reduced
    json.dumps(result)  # plain JSON


def test_a_photograph_too_dark_to_grade_is_ungradable_with_reasons(pipeline: Pipeline) -> None:
    picture = np.asarray(PILImage.open(io.BytesIO(_fundus())).convert("RGB"))
    dark = PILImage.fromarray((picture // 12).astype(np.uint8))
    buffer = io.BytesIO()
    dark.save(buffer, format="JPEG", quality=90)
    result = pipeline.screen(buffer.getvalue(), source="dark.jpg", task="fundus-dr")[0].result
    assert result["verdict"] == "ungradable" and result["findings"] == []
    assert result["quality"]["reasons"], "an ungradable image must say why"
    assert result["error"] is None


def test_a_chest_dicom_is_screened_as_chest_whatever_the_task_says(pipeline: Pipeline) -> None:
    data = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes()
    result = pipeline.screen(data, source="siim.dcm", task="fundus-dr")[0].result
    assert result["task"] == "cxr-pneumonia", result
    assert result["error"] is None and result["quality"]["gradable"], result["quality"]
    assert [f["label"] for f in result["findings"]] == ["pneumonia", "pneumothorax"]
    assert any("a chest film, not a fundus photograph: screened with cxr-pneumonia" in w
               for w in result["warnings"])


def test_an_urgent_chest_finding_raises_the_priority(pipeline: Pipeline, tmp_path: Path) -> None:
    data = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes()
    result = pipeline.screen(data, source="siim.dcm")[0].result
    by_label = {f["label"]: f for f in result["findings"]}
    if by_label["pneumothorax"]["positive"]:
        assert result["priority"] == 3 and result["verdict"] == "referable"
    else:
        assert result["priority"] == 0 and result["verdict"] == "non_referable"


def test_bytes_that_are_no_image_are_refused_with_a_reason(pipeline: Pipeline) -> None:
    outcome = pipeline.screen(b"%PDF-1.4 not a picture", source="letter.pdf")[0]
    result = outcome.result
    assert result["verdict"] is None and result["error"]["code"] == "not_an_image"
    assert set(result) == RESULT_KEYS and outcome.image is None


def test_screen_many_batches_give_the_same_results_as_one_by_one(pipeline: Pipeline) -> None:
    names = ["10_left.jpeg", "13_right.jpeg", "17_left.jpeg"]
    items = [(_fundus(n), n) for n in names] + [(b"junk", "junk.bin")]
    groups = pipeline.screen_many(items, heatmap=False)
    assert [len(group) for group in groups] == [1, 1, 1, 1]  # one fundus task, one result each
    many = [group[0] for group in groups]
    assert [o.result["input"] for o in many] == [*names, "junk.bin"]
    assert many[-1].result["error"]["code"] == "not_an_image"
    for outcome, (data, name) in zip(many, items[:3], strict=False):
        single = pipeline.screen(data, source=name)[0].result
        assert outcome.result["verdict"] == single["verdict"]
        assert outcome.result["score"] == pytest.approx(single["score"], abs=1e-4)
        assert outcome.heatmap_png is None


def test_check_runs_no_inference(pipeline: Pipeline) -> None:
    result = pipeline.check(_fundus(), source="13_left.jpeg").result
    assert result["findings"] == [] and result["score"] is None
    assert result["quality"]["gradable"] is True and result["verdict"] is None


def test_describe_says_what_runs_and_who_signed_it(pipeline: Pipeline) -> None:
    described = {d["id"]: d for d in pipeline.describe()}
    assert set(described) == {"fundus-dr", "cxr-pneumonia"} == set(pipeline.tasks())
    fundus = described["fundus-dr"]
    assert fundus["signature"] == {"status": "verified", "key_id": "test-key"}
    assert fundus["backend"] == "onnxruntime-cpu" and fundus["warmup_ms"] > 0
    assert fundus["intended_use"] == "Tests only."


def test_a_tampered_bundle_is_refused_and_the_others_still_load(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys, kind="fundus")
    bad = build_bundle(tmp_path / "models", keys, kind="cxr")
    (bad / "MODEL_CARD.md").write_text("edited")
    made = Pipeline.from_config(_config(tmp_path))
    assert made.tasks() == ["fundus-dr"]
    [refused] = [d for d in made.describe() if d["signature"]["status"] == "refused"]
    assert refused["error"]["code"] == "bad_checksum" and refused["id"] == "cxr-pneumonia-1.0.0"
    assert refused["backend"] is None
    result = made.screen(shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes())[0].result
    assert result["error"]["code"] == "no_model"


def test_no_verified_bundle_at_all_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    with pytest.raises(BundleError) as caught:
        Pipeline.from_config(_config(tmp_path))
    assert caught.value.code == "no_model" and str(tmp_path / "models") in caught.value.message


def test_the_newest_version_of_a_task_wins(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys, version="1.2.0")
    build_bundle(tmp_path / "models", keys, version="1.10.0")
    made = Pipeline.from_config(_config(tmp_path))
    assert made.describe()[0]["version"] == "1.10.0"


def test_the_decode_sandbox_is_used_when_configured(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys)
    made = Pipeline.from_config(_config(tmp_path, sandbox_workers=1))
    try:
        result = made.screen(_fundus(), source="13_left.jpeg")[0].result
        assert result["error"] is None and result["verdict"] in ("referable", "non_referable")
    finally:
        made.close()


@pytest.mark.parametrize(("name", "side"), [("13_left.jpeg", "L"), ("eye-OD.png", "R"),
                                            ("right_15.jpg", "R"), ("film.dcm", None),
                                            ("leftover.jpg", None)])
def test_laterality_from_the_file_name(name: str, side: str | None) -> None:
    assert laterality_from_name(f"/some/dir/{name}") == side


def test_a_full_size_picture_is_shrunk_to_a_working_copy(pipeline: Pipeline) -> None:
    picture = PILImage.open(io.BytesIO(_fundus("13_left.jpeg"))).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    outcome = pipeline.screen(buffer.getvalue(), source="13_left.png")[0]
    assert outcome.image is not None and 256 <= min(outcome.image.size) <= 512
    assert outcome.image.original_size == (picture.height, picture.width)
    assert outcome.result["verdict"] in ("referable", "non_referable")


def test_working_copy_keeps_twice_the_target_on_the_shorter_side() -> None:
    from kiosk.domain import Image

    film = Image(pixels=np.zeros((2000, 1600), np.uint8), kind="cxr", original_size=(2000, 1600))
    shrunk = working_copy(film, 256)
    assert shrunk.size == (640, 512) and shrunk.kind == "cxr" and shrunk.original_size == (2000, 1600)
    small = Image(pixels=np.zeros((500, 400, 3), np.uint8), kind="fundus")
    assert working_copy(small, 256) is small


def test_the_same_film_sent_uncompressed_or_as_jpeg2000_is_judged_alike(pipeline: Pipeline) -> None:
    import pydicom

    path = shared("dicom", "RG1_J2KI.dcm")
    ds = pydicom.dcmread(path)
    ds.decompress()
    native = io.BytesIO()
    ds.save_as(native, enforce_file_format=True)
    sent_j2k = pipeline.screen(path.read_bytes(), source="rg1-j2k.dcm")[0].result
    sent_native = pipeline.screen(native.getvalue(), source="rg1-native.dcm")[0].result
    assert sent_j2k["error"] is None and sent_native["error"] is None
    assert sent_j2k["verdict"] == sent_native["verdict"]
    assert sent_j2k["score"] == pytest.approx(sent_native["score"], abs=0.02)


def test_an_image_whose_kind_cannot_be_told_needs_a_task(pipeline: Pipeline) -> None:
    buffer = io.BytesIO()
    PILImage.new("RGB", (300, 300), (200, 40, 40)).save(buffer, format="PNG")  # neither eye nor film
    result = pipeline.screen(buffer.getvalue(), source="red.png")[0].result
    assert result["verdict"] is None and result["error"]["code"] == "unknown_task"
    assert "fundus-dr" in result["error"]["message"] and "cxr-pneumonia" in result["error"]["message"]
    told = pipeline.screen(buffer.getvalue(), source="red.png", task="fundus-dr")[0].result
    assert told["task"] == "fundus-dr" and told["error"] is None
    assert told["verdict"] == "ungradable" and told["quality"]["reasons"]


def test_a_patient_outside_the_models_trained_ages_gets_a_warning(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)

    def paediatric(manifest: dict) -> None:
        manifest["population"] = {"age_years": [1, 5], "description": "children aged 1-5"}

    build_bundle(tmp_path / "models", keys, kind="cxr", edit=paediatric)
    data = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes()
    made = Pipeline.from_config(_config(tmp_path))
    try:
        adult = made.screen(data, source="siim.dcm", age_years=68.2)[0].result
        child = made.screen(data, source="siim.dcm", age_years=3.0)[0].result
        unknown = made.screen(data, source="siim.dcm")[0].result
    finally:
        made.close()
    assert adult["verdict"] is not None
    assert any("trained on children aged 1-5" in w and "68 years" in w for w in adult["warnings"])
    assert "68 years" in adult["reader_required"]
    for result in (child, unknown):
        assert not any("trained on" in w for w in result["warnings"]), result["warnings"]
        assert "reader_required" not in result


def test_the_dicom_header_gives_the_age_when_no_patient_record_does(tmp_path: Path) -> None:
    """The listener and `kiosk screen` know no birth date: PatientAge in the header tells."""
    import pydicom

    keys = make_keys(tmp_path)

    def paediatric(manifest: dict) -> None:
        manifest["population"] = {"age_years": [1, 5], "description": "children aged 1-5"}

    build_bundle(tmp_path / "models", keys, kind="cxr", edit=paediatric)
    ds = pydicom.dcmread(shared("dicom", "SIIM-CXR-no-pneumothorax.dcm"))
    variants = {}
    for name, age in (("adult", "068Y"), ("child", "030M"), ("unknown", "")):
        ds.PatientAge = age
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        variants[name] = buffer.getvalue()
    made = Pipeline.from_config(_config(tmp_path))
    try:
        adult = made.screen(variants["adult"], source="adult.dcm")[0].result
        told = made.screen(variants["adult"], source="adult.dcm", age_years=3.0)[0].result
        many = [group[0] for group in made.screen_many(
            [(variants[n], f"{n}.dcm") for n in ("adult", "child", "unknown")])]
    finally:
        made.close()
    assert "68 years" in adult["reader_required"]
    assert "reader_required" not in told  # the patient record, when given, is the one believed
    flagged = ["reader_required" in outcome.result for outcome in many]
    assert flagged == [True, False, False]
