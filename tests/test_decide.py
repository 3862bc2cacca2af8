"""decide: calibration, findings, verdicts, PPV/NPV at the clinic's prevalence, triage, combine."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from bundle_builder import cxr_manifest, fundus_manifest

from kiosk import decide
from kiosk.tasks import Population


def test_temperature_softens_the_probability() -> None:
    manifest = fundus_manifest()
    manifest["calibration"]["temperature"] = 2.0
    probs = decide.probabilities(np.array([[2.0], [-2.0]]), manifest)
    np.testing.assert_allclose(probs[:, 0], [1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0))])


def test_softmax_bundles_sum_to_one() -> None:
    manifest = fundus_manifest()
    manifest["outputs"]["activation"] = "softmax"
    probs = decide.probabilities(np.array([[1.0, 2.0, 3.0]]), manifest)
    assert probs.shape == (1, 3) and probs.sum() == pytest.approx(1.0) and probs.argmax() == 2


def test_a_sensitive_test_at_low_prevalence_flags_mostly_false_positives() -> None:
    # The example: 98% sensitive, 90% specific, 0.5% prevalence.
    ppv, npv = decide.predictive_values(0.98, 0.90, 0.005)
    assert ppv == pytest.approx(0.0469, abs=1e-3)  # fewer than 5 in 100 flagged have it
    assert npv == pytest.approx(0.99989, abs=1e-4)
    text = decide.explain_predictive_values("Pneumonia", ppv, npv, 0.005)
    assert "of 100 images flagged for pneumonia, about 5 truly have it" in text


def test_predictive_values_rise_with_prevalence() -> None:
    low, _ = decide.predictive_values(0.9, 0.8, 0.02)
    high, _ = decide.predictive_values(0.9, 0.8, 0.3)
    assert low < high


def test_findings_carry_threshold_positive_and_what_a_positive_means() -> None:
    manifest = fundus_manifest()
    [found] = decide.findings_for(np.array([0.62]), manifest, prevalence=0.1)
    assert found["label"] == "referable_dr" and found["positive"] is True
    assert found["probability"] == 0.62 and found["threshold"] == 0.5
    ppv, npv = decide.predictive_values(0.9, 0.8, 0.1)
    assert found["ppv"] == round(ppv, 3) and found["npv"] == round(npv, 3)
    low, high = found["ppv_range"]
    assert low < found["ppv"] < high
    assert "about 33 truly have it (somewhere between 27 and 40" in found["meaning"]


def test_a_perfect_measured_specificity_still_shows_its_uncertainty() -> None:
    manifest = fundus_manifest()
    point = manifest["findings"][0]["operating_point"]
    point.update(sensitivity=0.9, specificity=1.0, sensitivity_ci=[0.87, 0.92],
                 specificity_ci=[0.98, 1.0])
    [found] = decide.findings_for(np.array([0.9]), manifest, prevalence=0.05)
    assert found["ppv"] == 1.0  # the point estimate alone would promise certainty
    assert found["ppv_range"][0] < 0.75 and "between 70 and 100" in found["meaning"]


def test_verdicts_follow_quality_then_referable_findings() -> None:
    manifest = cxr_manifest()
    negative = decide.findings_for(np.array([0.1, 0.2]), manifest, 0.05)
    positive = decide.findings_for(np.array([0.1, 0.9]), manifest, 0.05)
    assert decide.verdict(negative, gradable=True) == "non_referable"
    assert decide.verdict(positive, gradable=True) == "referable"
    assert decide.verdict(positive, gradable=False) == "ungradable"
    assert decide.score(positive) == 0.9


def test_a_positive_that_is_not_referable_does_not_refer() -> None:
    manifest = cxr_manifest()
    manifest["findings"][0]["referable"] = False
    found = decide.findings_for(np.array([0.9, 0.1]), manifest, 0.05)
    assert decide.verdict(found, gradable=True) == "non_referable"
    assert decide.score(found) == 0.1


def test_pneumothorax_is_triaged_before_pneumonia() -> None:
    manifest = cxr_manifest()
    pneumonia = decide.findings_for(np.array([0.9, 0.1]), manifest, 0.05)
    pneumothorax = decide.findings_for(np.array([0.1, 0.9]), manifest, 0.05)
    nothing = decide.findings_for(np.array([0.1, 0.1]), manifest, 0.05)
    assert decide.priority(pneumothorax) > decide.priority(pneumonia) > decide.priority(nothing) == 0
    assert decide.cam_label(pneumothorax) == "pneumothorax"


def test_a_manifest_priority_overrides_the_default_rank() -> None:
    manifest = cxr_manifest()
    manifest["findings"][0]["priority"] = 9
    found = decide.findings_for(np.array([0.9, 0.9]), manifest, 0.05)
    assert decide.priority(found, manifest) == 9


def _eye(laterality: str, verdict: str | None, reasons: tuple[str, ...] = ()) -> dict:
    return {"laterality": laterality, "verdict": verdict, "priority": 1 if verdict == "referable" else 0,
            "quality": {"gradable": verdict != "ungradable",
                        "reasons": [{"code": "x", "message": m} for m in reasons]}}


@pytest.mark.parametrize(
    ("eyes", "expected", "refer"),
    [
        ([("L", "referable"), ("R", "non_referable")], "referable", True),
        ([("L", "referable"), ("R", "ungradable")], "referable", True),
        ([("L", "non_referable"), ("R", "non_referable")], "non_referable", False),
        ([("L", "ungradable"), ("R", "non_referable")], "retake", False),
        ([("L", "ungradable"), ("R", "non_referable"), ("L", "ungradable")], "ungradable", True),
        ([("L", "ungradable"), ("R", "non_referable"), ("L", "non_referable")], "non_referable", False),
        ([("L", None), ("R", "non_referable")], "retake", False),
    ],
)
def test_combine_follows_the_screening_programme(eyes, expected: str, refer: bool) -> None:
    combined = decide.combine([_eye(side, verdict) for side, verdict in eyes])
    assert combined["verdict"] == expected and combined["refer"] is refer


def test_combine_reports_each_eye_and_the_quality_reasons() -> None:
    combined = decide.combine([_eye("L", "ungradable", ("Image too dark — retake",)),
                               _eye("R", "referable")])
    assert combined["per_eye"] == {"L": "retake", "R": "referable"}
    assert combined["priority"] == 1
    assert "Left eye: Image too dark — retake" in combined["reasons"]


def test_films_without_laterality_are_judged_one_by_one() -> None:
    combined = decide.combine([{"verdict": "non_referable"}, {"verdict": "referable"}])
    assert combined["verdict"] == "referable" and len(combined["per_eye"]) == 2


def test_the_heat_map_lights_up_where_the_activation_is_inside_the_crop_box() -> None:
    pixels = np.full((100, 200), 90, dtype=np.uint8)
    cam = np.zeros((4, 4), dtype=np.float32)
    cam[0, 3] = 5.0  # top right of the box
    picture = decide.heatmap(pixels, cam, box=(50, 0, 150, 100))
    assert picture.shape == (100, 200, 3) and picture.dtype == np.uint8
    changed = np.abs(picture.astype(int) - 90).sum(axis=2) > 10
    ys, xs = np.nonzero(changed)
    assert xs.min() >= 50 and xs.max() < 150 and ys.max() < 60  # inside the box, top part
    assert not changed[:, :50].any() and not changed[:, 150:].any()


def test_the_heat_map_png_decodes_and_is_bounded_in_size() -> None:
    pixels = np.zeros((2000, 1500, 3), dtype=np.uint8)
    png = decide.heatmap_png(pixels, np.ones((7, 7), np.float32), max_side=512)
    assert png.startswith(b"\x89PNG")
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (512, 384, 3)


def test_population_warning_only_outside_the_trained_ages() -> None:
    population = Population.parse({"age_years": [1, 5], "description": "children aged 1-5"})
    assert decide.population_warning(population, 3.0) is None
    assert decide.population_warning(population, 5.6) is None  # 5 years and 7 months is "aged 5"
    assert decide.population_warning(population, None) is None
    assert decide.population_warning(None, 40.0) is None
    warning = decide.population_warning(population, 40.9)
    assert warning is not None and "children aged 1-5" in warning and "40 years" in warning
    assert decide.population_warning(population, 6.0) is not None
    assert decide.population_warning(Population.parse({"age_years": [18, 120]}), 12.0) is not None
    baby = decide.population_warning(population, 0.7)
    assert baby is not None and "8 months old" in baby


def test_a_result_a_clinician_must_read_cannot_clear_the_patient() -> None:
    """Outside the model's trained population: referred for examination, never 'no referral'."""
    warning = "This model was trained on children aged 1-5; this patient is 68 years old."
    clear = {"verdict": "non_referable", "laterality": None, "priority": 0}
    unread = {**clear, "reader_required": warning}
    overall = decide.combine([unread])
    assert overall["verdict"] == "ungradable" and overall["refer"] is True
    assert any("68 years" in reason for reason in overall["reasons"])
    positive = {**unread, "verdict": "referable", "priority": 1}
    assert decide.combine([positive])["verdict"] == "referable"
    assert decide.combine([clear])["verdict"] == "non_referable"


@pytest.mark.parametrize(
    ("meta", "years"),
    [
        ({"patient_age": "068Y"}, 68.0),
        ({"patient_age": "018M"}, 1.5),
        ({"patient_age": "006W"}, 6 / (365.25 / 7)),
        ({"birth_date": "19580301", "study_date": "20260301"}, 68.0),
        ({"birth_date": "19580301", "acquisition_date": "20260301"}, 68.0),
        ({"birth_date": "20300101", "study_date": "20260301"}, None),
        ({"patient_age": "old", "birth_date": "garbage"}, None),
        ({}, None),
    ],
)
def test_age_from_the_dicom_header(meta: dict, years: float | None) -> None:
    from kiosk.intake.dicom import age_in_years

    found = age_in_years(meta)
    assert found == pytest.approx(years, abs=0.01) if years is not None else found is None
