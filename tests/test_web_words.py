"""The words a nurse acts on: one line per verdict, and no 'no referral' for an unread result."""

from __future__ import annotations

from web.words import action, headline, image_line


def test_each_screening_verdict_says_what_to_do() -> None:
    assert action("referable", "fundus") == "Refer to an eye doctor"
    assert action("non_referable", "fundus") == "No referral needed"
    assert action("retake", "fundus") == "Retake the photo"
    assert action("retake", "cxr") == "Retake the film"
    # ungradable at the screening level = retaken and still ungradable, or a result the model
    # cannot vouch for: the patient is referred, never sent home or asked for a third photo
    assert action("ungradable", "fundus").startswith("Refer for an eye examination")
    assert action("ungradable", "cxr").startswith("Refer to a doctor")
    assert action("ungradable", "cxr", read=True).startswith("A clinician must read the film: the")


def test_an_image_outside_the_trained_population_asks_for_a_clinician() -> None:
    result = {"verdict": "non_referable", "task": "cxr-pneumonia", "findings": [],
              "reader_required": "This model was trained on children aged 1-5; ..."}
    assert image_line(result).startswith("A clinician must read this image")
    assert image_line({**result, "verdict": "referable"}) == "Urgent: refer to a doctor today"
    assert image_line({**result, "reader_required": None}) == "No referral needed"


def test_the_headline_names_every_referral_the_visit_calls_for() -> None:
    """An urgent chest finding and referable eyes: both referrals, the urgent one first."""
    eye = {"verdict": "referable", "task": "fundus-dr", "kind": "fundus", "findings": [],
           "referral": {"to": "an eye doctor", "urgency": "routine", "within": "within 3 months"}}
    chest = {"verdict": "referable", "task": "cxr-adult", "kind": "cxr",
             "findings": [{"positive": True, "urgent": True}],
             "referral": {"to": "a doctor", "urgency": "soon", "within": "within a week"}}
    clear = {**eye, "verdict": "non_referable"}
    line = headline("referable", [eye, chest])
    assert line == "Urgent: refer to a doctor within a week; Refer to an eye doctor within 3 months"
    assert headline("referable", [clear, chest]).startswith("Urgent: refer to a doctor")
    assert "eye doctor" not in headline("referable", [clear, chest])
    assert headline("non_referable", [clear]) == "No referral needed"
