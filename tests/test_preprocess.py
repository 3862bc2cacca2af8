"""Preprocessing steps of docs/bundle.md: shapes, the fundus disc, and spec checking."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import shared

from kiosk.domain import Image
from kiosk.errors import BundleError
from kiosk.preprocess import check_spec, prepare, prepare_batch, render

FUNDUS = {
    "name": "image", "size": 64, "channels": 3, "layout": "NCHW", "dtype": "float32",
    "steps": [
        {"op": "fundus_crop", "margin": 0.02},
        {"op": "resize", "size": 64},
        {"op": "ben_graham", "sigma_fraction": 0.033},
        {"op": "fov_mask", "shrink": 0.9},
        {"op": "scale", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    ],
}
CHEST = {
    "name": "image", "size": 32, "channels": 1, "layout": "NCHW", "dtype": "float32",
    "steps": [{"op": "grey"}, {"op": "resize", "size": 32}, {"op": "clahe", "clip": 2.0},
              {"op": "scale", "mean": [0.5], "std": [0.25]}],
}


def phantom_fundus(height: int = 300, width: int = 400) -> np.ndarray:
    """A reddish disc off-centre on a black frame, with a dark 'vessel' line."""
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    cv2.circle(rgb, (220, 150), 120, (180, 90, 40), thickness=-1)
    cv2.line(rgb, (150, 100), (300, 200), (90, 30, 20), thickness=4)
    return rgb


def test_fundus_disc_is_cropped_and_centred() -> None:
    pixels = render(phantom_fundus(), FUNDUS)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    # Outside the shrunken disc is the fill grey; the corners are outside.
    assert (pixels[0, 0] == 128).all() and (pixels[-1, -1] == 128).all()
    # The disc is centred: the middle row is not fill across the whole width.
    assert (pixels[32, 8:56] != 128).any()


def test_prepare_gives_float_channels_first() -> None:
    tensor = prepare(Image(phantom_fundus(), kind="fundus"), FUNDUS)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32
    corner = tensor[:, 0, 0]
    assert np.allclose(corner, (128 / 255 - 0.5) / 0.25, atol=1e-5)


def test_grey_film_to_one_channel_and_batches() -> None:
    film = np.tile(np.arange(100, dtype=np.uint8)[None, :], (80, 1))
    batch = prepare_batch([Image(film, kind="cxr"), Image(np.dstack([film] * 3))], CHEST)
    assert batch.shape == (2, 1, 32, 32)
    assert np.allclose(batch[0], batch[1], atol=2 / 255 / 0.25)
    assert prepare_batch([], CHEST).shape == (0, 1, 32, 32)


def test_grey_film_fed_to_a_three_channel_model_is_replicated() -> None:
    spec = {**CHEST, "channels": 3, "steps": [{"op": "resize", "size": 32},
            {"op": "scale", "mean": [0.5] * 3, "std": [0.25] * 3}]}
    tensor = prepare(Image(np.full((50, 60), 200, dtype=np.uint8)), spec)
    assert tensor.shape == (3, 32, 32) and np.allclose(tensor[0], tensor[2])


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"steps": [{"op": "sharpen"}, {"op": "scale", "mean": [0.5], "std": [0.25]}]}, "unknown"),
        ({"steps": [{"op": "grey"}]}, "ending with a 'scale'"),
        ({"steps": [{"op": "resize"}, {"op": "scale", "mean": [0.5], "std": [0.25]}]}, "lacks size"),
        ({"steps": [{"op": "scale", "mean": [0.5, 0.5], "std": [0.2, 0.2]}]}, "one value per"),
        ({"layout": "NHWC"}, "NCHW"),
        ({"channels": 4}, "channels"),
    ],
)
def test_check_spec_refuses_what_it_cannot_apply(change: dict, reason: str) -> None:
    check_spec(CHEST)
    with pytest.raises(BundleError, match=reason):
        check_spec({**CHEST, **change})


def test_real_fundus_photographs_full_and_small_agree_in_framing() -> None:
    folder = shared("fundus", "eyepacs-fullres")
    rgb = cv2.cvtColor(cv2.imread(str(folder / "16_left.jpeg")), cv2.COLOR_BGR2RGB)
    small = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA)
    big, little = render(rgb, FUNDUS), render(small, FUNDUS)
    # The same eye at two resolutions gives the same fill mask (within a pixel ring).
    assert np.mean((big == 128).all(axis=2) == (little == 128).all(axis=2)) > 0.95
