"""Chest film gradability on real films and phantoms, and the layout checks intake relies on.

Orientation, polarity and "is this a chest" come from the learned check (see
tests/test_quality_chest_learned.py for the figures over every real film); intake's own pixel
checks on DICOM films (``check_chest_content``) still use the hand-made layout.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from builders import chest_phantom, limb_phantom, png_bytes
from conftest import shared

from kiosk.domain import Image
from kiosk.errors import IntakeError
from kiosk.intake import read_image
from kiosk.intake.detect import check_chest_content
from kiosk.quality import assess
from kiosk.quality.chest import assess_chest, looks_like_chest

PHANTOM = chest_phantom(256, seed=5)


def _films() -> list[tuple[str, np.ndarray]]:
    """The adult samples and 150 Kermany films (a fixed random draw), as decoded grey pixels."""
    samples = sorted(shared("cxr", "samples").iterdir())
    kermany = sorted(shared("cxr", "kermany-224", "train").glob("*/*.jpeg"))
    paths = samples + random.Random(11).sample(kermany, 150)
    return [(path.name, read_image(path.read_bytes(), target_size=224).pixels) for path in paths]


@pytest.fixture(scope="module")
def films() -> list[tuple[str, np.ndarray]]:
    return _films()


def _first_code(grey: np.ndarray) -> str:
    reasons = assess_chest(grey).reasons
    return reasons[0].code if reasons else "gradable"


def test_upright_films_are_gradable_and_pass_intake(films: list[tuple[str, np.ndarray]]) -> None:
    results: Counter[str] = Counter()
    for name, grey in films:
        check_chest_content(grey)  # raises for a film intake would refuse
        results[_first_code(grey)] += 1
        if name.startswith(("nih", "tbx", "jsrt", "covid", "padchest")):
            assert _first_code(grey) == "gradable", name  # every adult sample
    assert results["gradable"] >= 0.99 * len(films), results


def test_inverted_copies_are_refused_and_flagged(films: list[tuple[str, np.ndarray]]) -> None:
    flagged: Counter[str] = Counter()
    for name, grey in films:
        with pytest.raises(IntakeError) as refused:
            check_chest_content(255 - grey)
        assert refused.value.code == "photometric_mismatch", name
        flagged[_first_code(255 - grey)] += 1
    assert flagged["gradable"] == 0
    assert flagged["inverted"] >= 0.99 * len(films), flagged


def test_turned_films_are_flagged(films: list[tuple[str, np.ndarray]]) -> None:
    turned: Counter[str] = Counter()
    upside_down: Counter[str] = Counter()
    for _, grey in films:
        for turns in (1, 3):
            turned[_first_code(np.rot90(grey, turns).copy())] += 1
        upside_down[_first_code(np.rot90(grey, 2).copy())] += 1
    assert turned["rotated"] >= 0.99 * 2 * len(films), turned
    assert turned["gradable"] == 0, turned
    assert upside_down["upside_down"] >= 0.99 * len(films), upside_down
    assert upside_down["gradable"] == 0, upside_down


def test_mirrored_films_are_upright(films: list[tuple[str, np.ndarray]]) -> None:
    mirrored = Counter(_first_code(grey[:, ::-1].copy()) for _, grey in films)
    assert mirrored["gradable"] >= 0.99 * len(films), mirrored


def test_turned_message_says_where_the_head_is() -> None:
    left = assess_chest(np.rot90(PHANTOM).copy()).reasons[0]
    right = assess_chest(np.rot90(PHANTOM, 3).copy()).reasons[0]
    assert (left.code, right.code) == ("rotated", "rotated")
    assert "head is at the left" in left.message and "head is at the right" in right.message


def test_phantom_and_its_faults() -> None:
    assert _first_code(PHANTOM) == "gradable"
    assert _first_code(255 - PHANTOM) == "inverted"
    assert _first_code(np.rot90(PHANTOM).copy()) == "rotated"
    assert _first_code(PHANTOM[::-1].copy()) == "upside_down"


def test_blank_clipped_and_flat_films_are_flagged() -> None:
    blank = np.full((256, 256), 12, np.uint8)
    blank[100:140, 100:140] = PHANTOM[100:140, 100:140]
    assert _first_code(blank) == "mostly_blank"
    burnt = np.clip(PHANTOM.astype(float) * 2.5, 0, 255).astype(np.uint8)  # over-exposed
    assert _first_code(burnt) == "clipped"
    binary = np.where(PHANTOM > 100, 255, 0).astype(np.uint8)  # no longer reads as a chest
    assert {r.code for r in assess_chest(binary).reasons} >= {"clipped"}
    flat = (PHANTOM // 8 + 100).astype(np.uint8)
    assert _first_code(flat) == "low_contrast"


def test_over_exposed_real_films_say_clipped(films: list[tuple[str, np.ndarray]]) -> None:
    first: Counter[str] = Counter()
    for name, grey in films[:40]:
        burnt = np.clip(grey.astype(float) * 2.5, 0, 255).astype(np.uint8)
        first[_first_code(burnt)] += 1
        assert _first_code(burnt) in ("clipped", "gradable"), name  # never "not a chest"
    assert first["clipped"] >= 0.9 * 40, first


def test_a_limb_is_not_a_chest() -> None:
    assert not looks_like_chest(limb_phantom())  # intake's layout check (grey fundus vs film)
    for seed in range(5):
        assert _first_code(limb_phantom(seed=seed)) == "not_a_chest", seed


def test_real_non_chest_films_are_not_chests() -> None:
    for name in ("RG3_J2KR.dcm", "CR-ModalitySequenceLUT.dcm"):
        data = shared("dicom", name).read_bytes()
        with pytest.raises(IntakeError) as refused:
            read_image(data)  # the header already says tibia / teeth
        assert refused.value.code == "wrong_body_part"


def test_fundus_photograph_given_as_a_chest_is_flagged() -> None:
    photo = shared("fundus", "eyepacs-fullres", "10_left.jpeg").read_bytes()
    report = assess(read_image(photo, kind_hint="cxr", target_size=256))
    assert not report.gradable
    assert report.reasons[0].code in ("not_a_chest", "mostly_blank", "clipped")


def test_assess_dispatches_grey_films_and_reports_measures() -> None:
    report = assess(read_image(png_bytes(PHANTOM)))
    assert report.gradable
    assert {"p_chest", "p_inverted", "p_head_top", "p_head_left", "p_head_bottom", "p_head_right",
            "blank", "clipped", "contrast"} <= set(report.measures)
    assert report.measures["p_chest"] > 0.5 and report.measures["p_head_top"] > 0.5


def test_rgb_pixels_of_a_film_are_assessed_as_grey() -> None:
    rgb = np.repeat(PHANTOM[:, :, None], 3, axis=2)
    assert assess(Image(pixels=rgb, kind="cxr")).gradable
