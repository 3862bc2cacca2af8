"""kiosk.pixels: the grey/RGB conversions and colour saturation every other module uses."""

from __future__ import annotations

import cv2
import numpy as np

from kiosk.domain import Image
from kiosk.pixels import MIN_SATURATION, as_grey, as_rgb, brightest, darkest, saturation
from kiosk.pixels.fov import find_field_of_view


def test_grey_and_rgb_round_trip_and_luminance_weights() -> None:
    grey = np.random.default_rng(0).integers(0, 256, (40, 60), dtype=np.uint8)
    rgb = as_rgb(grey)
    assert rgb.shape == (40, 60, 3) and all((rgb[:, :, c] == grey).all() for c in range(3))
    assert as_grey(grey) is grey and as_rgb(rgb) is rgb
    assert (as_grey(rgb) == grey).all()
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    assert int(as_grey(red)[0, 0]) == 76  # BT.601: 0.299 x 255, as OpenCV computes it
    view = np.ascontiguousarray(red[:, ::-1])[:, ::2]  # not C-contiguous
    assert (as_grey(view) == cv2.cvtColor(np.ascontiguousarray(view), cv2.COLOR_RGB2GRAY)).all()


def test_saturation_tells_a_colour_photograph_from_a_grey_one() -> None:
    grey = np.full((64, 64), 120, np.uint8)
    assert saturation(grey) == 0.0 and saturation(as_rgb(grey)) == 0.0
    assert saturation(np.zeros((64, 64, 3), np.uint8)) == 0.0  # nothing lit
    retina = np.zeros((64, 64, 3), np.uint8)
    retina[..., 0], retina[..., 1], retina[..., 2] = 200, 90, 40
    assert abs(saturation(retina) - 160 / 200) < 1e-6 and saturation(retina) > MIN_SATURATION


def test_brightest_and_darkest_channel_are_numpys_max_and_min() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    view = pixels[::2, 1::3]  # strided, as saturation samples
    for array in (pixels, view):
        assert (brightest(array) == array.max(axis=2)).all()
        assert (darkest(array) == array.min(axis=2)).all()
        assert brightest(array).dtype == np.uint8


def test_an_image_finds_its_field_of_view_once_per_pixel_array() -> None:
    pixels = np.zeros((200, 300, 3), np.uint8)
    cv2.circle(pixels, (150, 100), 90, (180, 80, 30), thickness=-1)
    image = Image(pixels=pixels, kind="fundus")
    found = image.field_of_view()
    assert found == find_field_of_view(pixels) and found is not None
    assert image.field_of_view() is found  # the same object: not searched again
    image.pixels = np.zeros((200, 300, 3), np.uint8)  # other pixels: searched afresh
    assert image.field_of_view() is None
