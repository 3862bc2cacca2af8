"""The words a nurse acts on: one line per verdict, and no 'no referral' for an unread result."""

from __future__ import annotations

from web.words import action, image_line


def test_each_screening_verdict_says_what_to_do() -> None:
    assert action("referable", "fundus-dr") == "Refer to an eye doctor"
    assert action("non_referable", "fundus-dr") == "No referral needed"
    assert action("retake", "fundus-dr") == "Retake the photo"
    assert action("retake", "cxr-pneumonia") == "Retake the film"
    # ungradable at the screening level = retaken and still ungradable, or a result the model
    # cannot vouch for: the patient is referred, never sent home or asked for a third photo
    assert action("ungradable", "fundus-dr").startswith("Refer for an eye examination")
    assert action("ungradable", "cxr-pneumonia").startswith("Refer to a doctor")


def test_an_image_outside_the_trained_population_asks_for_a_clinician() -> None:
    result = {"verdict": "non_referable", "task": "cxr-pneumonia", "findings": [],
              "reader_required": "This model was trained on children aged 1-5; ..."}
    assert image_line(result).startswith("A clinician must read this image")
    assert image_line({**result, "verdict": "referable"}).startswith("Refer to a doctor")
    assert image_line({**result, "reader_required": None}) == "No referral needed"
