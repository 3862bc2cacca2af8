"""Fine detail of a chest film (``kiosk/quality/chest.py``: ``fine_detail``, ``MIN_DETAIL``).

A film blurred, or a small copy enlarged (a thumbnail from a messaging app, a 28 px data-set
image), was read by the chest models with full confidence and no sense: issue 13.3's probe found
the children's model calling 93% of the 28 px copies of healthy films pneumonia. Such a film is
now ungradable (``film_blurred``: "send the original film"), and no model reads it. The
threshold was set on half of the real films before the enlarged copies were looked at; the slow
test holds it to every real film and to every PneumoniaMNIST film enlarged:

    .venv/bin/python -m pytest tests/test_quality_chest_detail.py -m slow -s -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, shared

from kiosk.errors import IntakeError
from kiosk.intake import read_image
from kiosk.pixels import as_grey
from kiosk.quality.chest import (
    MIN_DETAIL,
    MIN_LINES,
    assess_chest,
    distinct_lines,
    fine_detail,
    judge_film,
)

SAMPLE = ("cxr", "samples", "nih-00027426_000-no-finding.png")


def _grey(data: bytes, name: str = "film.png") -> np.ndarray:
    """The grey working copy the kiosk's quality gate sees (intake's reduced decode)."""
    return as_grey(read_image(data, source=name, target_size=256).pixels)


def _png(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def _enlarged(small: np.ndarray, side: int, interpolation: int) -> bytes:
    """A small film enlarged as a viewer or a messaging app does, as a PNG."""
    return _png(cv2.resize(small, (side, side), interpolation=interpolation))


def _codes(grey: np.ndarray) -> list[str]:
    return [reason.code for reason in assess_chest(grey).reasons]


def test_a_real_film_passes_and_its_blurred_or_enlarged_copies_do_not() -> None:
    film = cv2.imread(str(shared(*SAMPLE)), cv2.IMREAD_GRAYSCALE)
    assert _codes(_grey(_png(film))) == []
    assert fine_detail(_grey(_png(film))) > 1.5 * MIN_DETAIL
    thumbnail = cv2.resize(film, (28, 28), interpolation=cv2.INTER_AREA)
    for interpolation in (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4):
        enlarged = _grey(_enlarged(thumbnail, 512, interpolation))
        assert _codes(enlarged) == ["film_blurred"], interpolation
    blurred = cv2.GaussianBlur(film, (0, 0), film.shape[1] * 0.012)
    assert _codes(_grey(_png(blurred))) == ["film_blurred"]
    slightly = cv2.GaussianBlur(film, (0, 0), film.shape[1] * 0.001)  # a soft but real film
    assert _codes(_grey(_png(slightly))) == []


def test_the_gate_reads_the_film_as_each_measure_does_alone() -> None:
    """The gate crops the exposed area once for all its measures; each agrees with the measure
    made on its own (as ``export/chest_check.py`` trains the learned check)."""
    film = _grey(_png(cv2.imread(str(shared(*SAMPLE)), cv2.IMREAD_GRAYSCALE)))
    border = np.zeros((film.shape[0] + 80, film.shape[1] + 120), np.uint8)  # padding to crop
    border[40:-40, 60:-60] = film
    for grey in (film, border):
        measures = assess_chest(grey).measures
        assert measures["fine_detail"] == fine_detail(grey)
        assert measures["distinct_lines"] == distinct_lines(grey)
        assert {k: measures[k] for k in judge_film(grey).measures()} == judge_film(grey).measures()


def _jpeg(pixels: np.ndarray, quality: int = 80) -> bytes:
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return encoded.tobytes()


def test_a_blocky_enlarged_copy_is_caught_though_its_edges_are_sharp() -> None:
    """A small copy enlarged by repeating its pixels (nearest neighbour) has sharp block edges,
    so ``fine_detail`` passed it; it has only as many distinct lines as the small copy had."""
    film = cv2.imread(str(shared(*SAMPLE)), cv2.IMREAD_GRAYSCALE)
    assert distinct_lines(_grey(_png(film))) > 1.2 * MIN_LINES
    thumbnail = cv2.resize(film, (28, 28), interpolation=cv2.INTER_AREA)
    for side in (224, 512, 1024):
        blocky = cv2.resize(thumbnail, (side, side), interpolation=cv2.INTER_NEAREST)
        for data, name in ((_png(blocky), "film.png"), (_jpeg(blocky), "film.jpg")):
            grey = _grey(data, name)
            assert fine_detail(grey) >= MIN_DETAIL  # the old measure alone let it through
            assert distinct_lines(grey) < MIN_LINES and _codes(grey) == ["film_blurred"], (side, name)
    doubled = cv2.resize(film, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)  # a real film
    assert _codes(_grey(_png(doubled))) == []  # enlarged 2x is still a whole film: it passes


def test_the_reason_says_what_to_do() -> None:
    film = cv2.imread(str(shared(*SAMPLE)), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(film, (28, 28), interpolation=cv2.INTER_AREA)
    report = assess_chest(_grey(_enlarged(small, 512, cv2.INTER_CUBIC)))
    assert not report.gradable
    assert "send the original film" in report.reasons[0].message
    assert report.measures["fine_detail"] < MIN_DETAIL


def test_the_kiosk_does_not_read_an_enlarged_thumbnail(tmp_path: Path) -> None:
    """Through ``kiosk screen`` with the shipped chest models: the real film gets an answer from
    the model, its enlarged thumbnail is ungradable with the reason, and no score."""
    film = cv2.imread(str(shared(*SAMPLE)), cv2.IMREAD_GRAYSCALE)
    if not list((ROOT / "models").glob("cxr-adult-*/manifest.json")):
        pytest.skip("the shipped cxr-adult bundle is not in models/")
    (tmp_path / "real.png").write_bytes(_png(film))
    small = cv2.resize(film, (28, 28), interpolation=cv2.INTER_AREA)
    (tmp_path / "thumbnail.png").write_bytes(_enlarged(small, 512, cv2.INTER_CUBIC))
    env = {**os.environ, "KIOSK_MODELS_DIR": str(ROOT / "models"),
           "KIOSK_DATA_DIR": str(tmp_path / "data"), "KIOSK_SANDBOX_WORKERS": "0"}
    done = subprocess.run([sys.executable, "-m", "kiosk.cli", "screen", "--json", "--no-progress",
                           "--task", "cxr-adult", "--age", "40", str(tmp_path / "real.png"),
                           str(tmp_path / "thumbnail.png")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
                          check=False)
    results = {Path(r["input"]).name: r for r in map(json.loads, done.stdout.splitlines())}
    assert results["real.png"]["verdict"] in ("referable", "non_referable"), done.stderr
    thumbnail = results["thumbnail.png"]
    assert thumbnail["verdict"] == "ungradable" and thumbnail["score"] is None
    assert [r["code"] for r in thumbnail["quality"]["reasons"]] == ["film_blurred"]


def _real_films() -> list[Path]:
    cxr, dicom = shared("cxr"), shared("dicom")
    return (sorted((cxr / "kermany-224" / "train").glob("*/*"))
            + sorted((cxr / "nih-adult-512" / "images").glob("*"))
            + sorted((cxr / "samples").glob("*")) + sorted(dicom.glob("*.dcm")))


@pytest.mark.slow
def test_every_real_film_passes_and_enlarged_small_films_are_caught() -> None:
    refused, read = [], 0
    for path in _real_films():
        try:
            grey = _grey(path.read_bytes(), path.name)
        except IntakeError:
            continue  # not a chest film, or refused by intake for its own reason
        read += 1
        if fine_detail(grey) < MIN_DETAIL or distinct_lines(grey) < MIN_LINES:
            refused.append(path.name)
    print(f"\nreal chest films: {read} read, {len(refused)} refused as blurred {refused}")
    assert read > 6000 and len(refused) <= 0.005 * read  # issue 13.4: <= 0.5%; measured 0
    mnist = np.load(shared("cxr", "pneumoniamnist", "pneumoniamnist-balanced-28.npz"))
    smalls = np.concatenate([mnist["train_images"], mnist["val_images"]])
    for side, interpolation in ((224, cv2.INTER_LINEAR), (512, cv2.INTER_CUBIC)):
        caught = sum(fine_detail(_grey(_enlarged(s, side, interpolation))) < MIN_DETAIL
                     for s in smalls)
        print(f"PneumoniaMNIST 28 px enlarged to {side} ({interpolation}): caught {caught} of "
              f"{len(smalls)}")
        assert caught >= 0.95 * len(smalls)  # measured 97.8% and 97.8%
    for side, name in ((224, "film.png"), (512, "film.jpg")):  # blocky copies, PNG and JPEG
        encode = _png if name.endswith(".png") else _jpeg
        caught = sum(distinct_lines(_grey(encode(cv2.resize(s, (side, side),
                                                           interpolation=cv2.INTER_NEAREST)),
                                          name)) < MIN_LINES for s in smalls)
        print(f"PneumoniaMNIST 28 px enlarged to {side} by repeating pixels ({name}): caught "
              f"{caught} of {len(smalls)}")
        assert caught >= 0.99 * len(smalls)
