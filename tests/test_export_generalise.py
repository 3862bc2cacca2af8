"""cxr-pneumonia 1.1: film-level shifts for training views, the generalisation probes, the comparison."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export import film_shift, lite, transfer  # noqa: E402
from export.compare import paired_auc_difference  # noqa: E402
from export.generalise import MATCH_CORRELATION, Scorer, mnist_sources, point  # noqa: E402
from export.recipes import RECIPES  # noqa: E402
from export.train import augment  # noqa: E402
from kiosk.preprocess import render  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
RECIPE = RECIPES["cxr-pneumonia-1.1"]


def film(seed: int = 0, size: int = 224) -> np.ndarray:
    """A smooth random grey 'film' with structure at several scales (uint8)."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((7, 7)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.0)
    return np.clip((0.7 * coarse + 0.6 * fine) * 255 / 1.3, 0, 255).astype(np.uint8)


def test_raw_then_rest_is_the_whole_preprocessing() -> None:
    """Shifts are drawn between the two halves; with no shift the training view is the kiosk's."""
    raw, rest = film_shift.raw_spec(RECIPE.spec), film_shift.rest_spec(RECIPE.spec)
    assert [s["op"] for s in raw["steps"]] == ["grey", "resize", "scale"]
    assert [s["op"] for s in rest["steps"]] == ["clahe", "scale"]
    pixels = film(1, 300)
    assert np.array_equal(render(render(pixels, raw)[:, :, 0], rest), render(pixels, RECIPE.spec))


def test_each_shift_moves_the_film_and_the_neutral_ones_do_not() -> None:
    pixels = film(2)
    assert np.array_equal(film_shift.tone(pixels, 1.0, 1.0), pixels)
    assert np.array_equal(film_shift.unsharp(pixels, 0.0, 1.0), pixels)
    assert np.abs(film_shift.resolution(pixels, 1.0).astype(int) - pixels).max() <= 1
    low, high = (np.abs(film_shift.jpeg(pixels, q).astype(int) - pixels).mean() for q in (10, 95))
    assert low > high > 0
    assert film_shift.tone(pixels, 0.6, 1.0).mean() > pixels.mean() > film_shift.tone(pixels, 1.6, 1.0).mean()
    cropped = film_shift.crop(pixels, np.random.default_rng(0))
    assert cropped.shape == pixels.shape and not np.array_equal(cropped, pixels)


def test_shifted_views_are_seeded_and_rendered_like_the_data_set() -> None:
    raw = np.stack([film(i)[:, :, None] for i in range(4)])
    first = film_shift.shifted_views(raw, RECIPE.spec, np.random.default_rng(7))
    again = film_shift.shifted_views(raw, RECIPE.spec, np.random.default_rng(7))
    other = film_shift.shifted_views(raw, RECIPE.spec, np.random.default_rng(8))
    assert first.shape == raw.shape and first.dtype == np.uint8
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_chest_recipe_never_mirrors_the_heart_side() -> None:
    """Bright left half, dark right half: without hflip every augmented copy keeps the bright side
    on the left (rotation +-7 degrees, zoom and shift cannot swap it); with hflip some copies do."""
    x = torch.full((64, 1, 32, 32), -0.8)
    x[:, :, :, :16] = 0.8
    for hflip, expect_swapped in ((False, False), (True, True)):
        out = augment(x, replace(RECIPE, hflip=hflip), torch.Generator().manual_seed(0))
        swapped = out[:, 0, :, :16].mean(dim=(1, 2)) < out[:, 0, :, 16:].mean(dim=(1, 2))
        assert bool(swapped.any()) is expect_swapped


def test_feature_cache_draws_film_shifts_from_the_raw_films(tmp_path: Path) -> None:
    """With raw films, view 1 is a film-shifted view (not the plain one) and is the same on a rerun."""
    from export.data import Dataset
    from tests.test_export_transfer import tiny_state

    spec = {**RECIPE.spec, "size": 32, "steps": [{"op": "grey"}, {"op": "resize", "size": 32},
                                                  {"op": "clahe", "clip": 2.0, "tiles": 4},
                                                  {"op": "scale", "mean": [0.5], "std": [0.5]}]}
    recipe = replace(RECIPE, spec=spec, cache_blocks=2, cached_views=2)
    raw = np.stack([film(i, 32)[:, :, None] for i in range(6)])
    images = np.stack([render(r[:, :, 0], spec) for r in raw])
    split = np.array(["train"] * 4 + ["calibration"] * 2)
    data = Dataset(images, np.zeros((6, 1), np.float32), np.arange(6).astype(str), split, split.copy())
    net = lite.from_state(tiny_state(), 1, 1)
    views, _ = transfer.feature_cache(net, data, recipe, tmp_path / "a", "cpu", lambda _: None, raw[:4])
    plain, _ = transfer.feature_cache(net, data, recipe, tmp_path / "b", "cpu", lambda _: None, None)
    again, _ = transfer.feature_cache(net, data, recipe, tmp_path / "c", "cpu", lambda _: None, raw[:4])
    assert np.array_equal(views[0], plain[0]) and not np.array_equal(views[1], plain[1])
    assert np.array_equal(views[1], again[1])


def small(pixels: np.ndarray) -> np.ndarray:
    """28 px, as MedMNIST made its copies."""
    return np.asarray(cv2.resize(pixels, (28, 28), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def test_mnist_copies_are_traced_to_their_source_film() -> None:
    """A 28 px centre crop (70% of the width) of a film is found among others, above the bar."""
    films = np.stack([film(i) for i in range(12)])
    copies = np.stack([small(films[i][:, 34:190]) for i in (3, 8)])
    index, correlation = mnist_sources(copies, films)
    assert index.tolist() == [3, 8] and bool((correlation > MATCH_CORRELATION).all())
    strangers = np.stack([small(film(100 + i)) for i in range(2)])
    assert bool((mnist_sources(strangers, films)[1] < MATCH_CORRELATION).all())


def test_point_counts_and_refuses_an_auc_from_too_few() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1])
    found = point(labels, p, 0.5, seed=0)
    assert found["sensitivity"] == 0.75 and found["specificity"] == round(5 / 6, 4)
    assert "auc" not in found  # 4 positives: too few for an AUC
    big = point(np.repeat(labels, 2), np.repeat(p, 2), 0.5, seed=0, patients=np.repeat(np.arange(10), 2))
    assert big["auc"] == round(23 / 24, 4) and big["auc_ci"][0] <= 23 / 24 <= big["auc_ci"][1]


def test_paired_difference_is_zero_for_the_same_scores_and_positive_for_a_better_model() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200).astype(bool)
    patients = np.arange(200) // 2
    noisy = labels + rng.normal(0, 1.0, 200)
    same = paired_auc_difference(labels, noisy, noisy, patients, seed=0, rounds=200)
    assert same["difference"] == 0 and same["ci"] == [0.0, 0.0]
    better = paired_auc_difference(labels, noisy, labels + rng.normal(0, 0.2, 200), patients, 0, 200)
    assert better["difference"] > 0 and better["ci"][0] > 0


@pytest.mark.skipif(not (SHARED / "cxr" / "kermany-224").is_dir(), reason="needs ../shared/data/cxr")
def test_scorer_gives_the_kiosk_probability_of_a_real_film() -> None:
    """The probes score films exactly as the card's per-file table (kiosk preprocessing) does."""
    from engines.bundle import load_bundle
    from export.generalise import grey
    from export.provenance import _probability

    folders = sorted((ROOT / "models").glob("cxr-pneumonia-*"))
    if not folders:
        pytest.skip("no cxr-pneumonia bundle in models/")
    bundle = load_bundle(folders[-1], ROOT / "models" / "trusted_keys")
    scorer = Scorer.from_bundle(folders[-1], ROOT / "models" / "trusted_keys", "fp32")
    paths = sorted((SHARED / "cxr" / "kermany-224" / "train" / "PNEUMONIA").glob("*.jpeg"))[:3]
    films = [grey(p) for p in paths]
    expected = [_probability(bundle.variant_path("fp32"), f, bundle.manifest) for f in films]
    assert scorer.probabilities(films) == pytest.approx(expected, abs=1e-5)
