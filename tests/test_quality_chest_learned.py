"""The learned chest check: its weights are pinned, its numpy forward pass is faithful, and on
every real chest film it meets issue 13.4's goals (few false refusals, turned films caught).

The goals test decodes every real film in ../shared/data with the kiosk's intake and runs
``assess_chest`` on it and on its mirrored, turned and inverted copies (a few minutes: ``slow``):

    .venv/bin/python -m pytest tests/test_quality_chest_learned.py -m slow -s -p no:cacheprovider
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from conftest import shared

from kiosk.errors import IntakeError, QualityError
from kiosk.intake import read_image
from kiosk.intake.detect import check_chest_content
from kiosk.quality.chest import assess_chest, content_failures
from kiosk.quality.chest_check import WEIGHTS, WEIGHTS_SHA256, ChestCheck, ChestVerdict
from kiosk.quality.film import SIDE

if TYPE_CHECKING:
    from export.chest_check import Film  # export needs the export extra: imported where used

#: What each copy of a real film should be refused as (None: it should pass).
COPIES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str | None]] = {
    "upright": (lambda g: g, None),
    "mirrored": (lambda g: g[:, ::-1], None),
    "turned_90": (lambda g: np.rot90(g, 1), "rotated"),
    "upside_down": (lambda g: np.rot90(g, 2), "upside_down"),
    "turned_270": (lambda g: np.rot90(g, 3), "rotated"),
    "inverted": (lambda g: 255 - g, "inverted"),
}


def test_weights_are_small_and_pinned() -> None:
    assert WEIGHTS.stat().st_size < 300 * 1024
    ChestCheck.load()  # the shipped file matches the pinned sha256


def test_changed_weights_are_refused(tmp_path: Path) -> None:
    damaged = tmp_path / "chest_check.npz"
    data = bytearray(WEIGHTS.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed
    damaged.write_bytes(bytes(data))
    with pytest.raises(QualityError) as refused:
        ChestCheck.load(damaged)
    assert refused.value.code == "chest_check_mismatch"
    assert WEIGHTS_SHA256 in refused.value.message
    with pytest.raises(QualityError) as missing:
        ChestCheck.load(tmp_path / "absent.npz")
    assert missing.value.code == "chest_check_missing"


def test_numpy_forward_pass_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    from export.chest_check import build_network, folded_weights

    torch.manual_seed(3)
    network = build_network()
    for module in network:  # non-trivial batch-norm statistics, so folding is really tested
        if module.__class__.__name__ == "BatchNorm2d":
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    network.eval()
    thumb = np.random.default_rng(1).random((2, SIDE, SIDE)).astype(np.float32)
    expected = network(torch.from_numpy(thumb)[None]).detach().numpy()[0]
    got = ChestCheck(folded_weights(network)).logits(thumb)
    assert np.allclose(got, expected, atol=1e-4), (got, expected)


def test_reasons_follow_the_verdict() -> None:
    def verdict(top: float, left: float, bottom: float, inverted: float, chest: float
                ) -> ChestVerdict:
        right = 1.0 - top - left - bottom
        return ChestVerdict({"top": top, "left": left, "bottom": bottom, "right": right},
                            inverted, chest)

    assert content_failures(verdict(0.9, 0.05, 0.03, 0.1, 0.9)) == []
    assert content_failures(verdict(0.9, 0.05, 0.03, 0.1, 0.2)) == ["not_a_chest"]
    assert content_failures(verdict(0.1, 0.05, 0.8, 0.9, 0.9)) == ["inverted", "upside_down"]
    assert content_failures(verdict(0.1, 0.1, 0.1, 0.1, 0.9)) == ["rotated"]


def _refusal(grey: np.ndarray) -> list[str]:
    return [reason.code for reason in assess_chest(np.ascontiguousarray(grey)).reasons]


def _tally(films: list[Film], decode: Callable[[Film], np.ndarray]
           ) -> dict[str, dict[str, Counter[str]]]:
    """For held-out and all films: per copy, 'wrong' (refused upright / passed or misnamed)."""
    tally: dict[str, dict[str, Counter[str]]] = {"held_out": {}, "all": {}}
    for film in films:
        grey = decode(film)
        for copy, (make, expected) in COPIES.items():
            codes = _refusal(make(grey))
            outcome = ("refused " + "+".join(codes)) if codes else "passed"
            if expected is not None and expected in codes:
                outcome = "caught as " + expected
            for part in ("all", "held_out") if film.held_out else ("all",):
                tally[part].setdefault(copy, Counter())[outcome] += 1
    return tally


@pytest.mark.slow
@pytest.mark.timeout(3600)  # about 36,000 assessments: 3 CPU minutes, longer on a busy machine
def test_goals_on_every_real_chest_film() -> None:
    shared("cxr", "kermany-224")
    from export.chest_check import TURNED_IN_THE_DATA, chest_films, decode_film, upright_film

    films = chest_films(shared())
    tally = _tally(films, upright_film)
    for part, copies in tally.items():
        for copy, outcomes in copies.items():
            print(f"{part:8s} {copy:12s} {sum(outcomes.values()):5d} {dict(outcomes)}")
        upright = copies["upright"] + copies["mirrored"]
        assert upright["passed"] <= sum(upright.values())  # sanity
        assert sum(upright.values()) - upright["passed"] <= 0.005 * sum(upright.values()), part
        for copy in ("turned_90", "upside_down", "turned_270", "inverted"):
            outcomes = copies[copy]
            assert outcomes["passed"] <= 0.01 * sum(outcomes.values()), (part, copy, outcomes)
    for film in films:  # stored turned in the data set: refused as it is stored
        if film.path.name in TURNED_IN_THE_DATA:
            assert _refusal(decode_film(film.path)) == ["upside_down"], film.path.name


def test_other_body_parts_are_refused_as_not_a_chest() -> None:
    from kiosk.intake.dicom import parse, stored_pixels, to_uint8

    for name in ("RG3_J2KI.dcm", "RG3_J2KR.dcm", "CR-ModalitySequenceLUT.dcm"):
        data = shared("dicom", name).read_bytes()
        with pytest.raises(IntakeError) as refused:
            read_image(data)  # the header says tibia / teeth
        assert refused.value.code == "wrong_body_part"
        ds = parse(data)
        grey = to_uint8(stored_pixels(ds, 512), ds)
        assert "not_a_chest" in _refusal(grey), name  # the pixels alone say so too
        for turns in (1, 2, 3):
            assert "not_a_chest" in _refusal(np.rot90(grey, turns)), (name, turns)
        with pytest.raises(IntakeError) as by_pixels:
            check_chest_content(grey)  # intake's own pixel check, with no header to go by
        assert by_pixels.value.code == "wrong_body_part"


def test_fundus_photographs_in_grey_are_not_chests() -> None:
    folder = shared("fundus", "eyepacs-fullres")
    for path in sorted(folder.glob("*.jp*g")):
        rgb = read_image(path.read_bytes(), kind_hint="fundus", target_size=256).pixels
        assert "not_a_chest" in _refusal(rgb.mean(axis=2).astype(np.uint8)), path.name
