"""Photo intake: PNG and JPEG, 8/16-bit, grey/colour/palette/alpha, EXIF orientation, draft."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from builders import (
    chest_phantom,
    fundus_phantom,
    jpeg_bytes,
    png_bytes,
    stored_for_orientation,
)
from conftest import shared
from PIL import Image as PILImage

from kiosk.errors import IntakeError
from kiosk.intake import read_image

CHEST = chest_phantom(240, seed=3)
FUNDUS = fundus_phantom(240, seed=3)


def test_grey_png_is_a_chest_film() -> None:
    image = read_image(png_bytes(CHEST), source="chest.png")
    assert image.kind == "cxr" and image.meta["format"] == "png"
    assert np.array_equal(image.pixels, CHEST)
    assert image.source == "chest.png" and image.original_size == (240, 240)


def test_sixteen_bit_png_is_stretched_to_eight_bits() -> None:
    film = chest_phantom(240, bits=12, seed=3)  # 12 bits used in a 16-bit PNG
    image = read_image(png_bytes(film))
    assert image.kind == "cxr" and image.meta["bits"] == "16"
    assert image.pixels.dtype == np.uint8
    low, high = np.percentile(image.pixels, [1, 99])
    assert low < 30 and high > 225  # the full 8-bit range, not the top 4 bits of 12
    assert np.corrcoef(image.pixels.ravel(), film.ravel())[0, 1] > 0.99


def test_colour_png_of_a_fundus_stays_rgb() -> None:
    image = read_image(png_bytes(FUNDUS))
    assert image.kind == "fundus" and image.pixels.shape == (240, 240, 3)
    assert np.array_equal(image.pixels, FUNDUS)


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA"])
def test_palette_and_alpha_pngs_are_flattened(mode: str) -> None:
    source = CHEST if mode == "LA" else FUNDUS
    image = read_image(png_bytes(source, mode=mode))
    assert image.kind == ("cxr" if mode == "LA" else "fundus")
    reference = source if mode == "LA" else FUNDUS
    assert float(np.abs(image.pixels.astype(int) - reference.astype(int)).mean()) < 8


def test_grey_stored_as_rgb_jpeg_is_a_chest_film() -> None:
    rgb = np.repeat(CHEST[:, :, None], 3, axis=2)
    image = read_image(jpeg_bytes(rgb))
    assert image.kind == "cxr" and image.pixels.ndim == 2


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = chest_phantom(240, seed=4)[:, 20:200]  # taller than wide, so a turn shows
    data = jpeg_bytes(stored_for_orientation(upright, orientation), orientation=orientation,
                      quality=95)
    image = read_image(data)
    assert image.size == upright.shape and image.original_size == upright.shape
    assert float(np.abs(image.pixels.astype(int) - upright.astype(int)).mean()) < 4


def test_kind_hint_is_honoured() -> None:
    image = read_image(png_bytes(CHEST), kind_hint="fundus")
    assert image.kind == "fundus" and image.pixels.shape == (240, 240, 3)


def test_colour_picture_that_is_no_fundus_has_no_kind() -> None:
    rng = np.random.default_rng(0)
    landscape = np.zeros((200, 300, 3), np.uint8)
    landscape[:100] = (90, 140, 230)  # sky
    landscape[100:] = (60, 150, 60)  # grass
    landscape = np.clip(landscape + rng.normal(0, 8, landscape.shape), 0, 255).astype(np.uint8)
    assert read_image(png_bytes(landscape)).kind is None


def test_jpeg_draft_decodes_at_reduced_size_never_below_target() -> None:
    big = np.ascontiguousarray(np.tile(fundus_phantom(400, seed=5), (3, 4, 1)))  # 1200 x 1600
    data = jpeg_bytes(big)
    image = read_image(data, target_size=256)
    assert image.original_size == (1200, 1600)
    assert min(image.size) >= 256 and image.size == (300, 400)  # an eighth would be 150
    assert read_image(data).size == (1200, 1600)


def test_real_fullres_fundus_decodes_in_draft_mode() -> None:
    data = shared("fundus", "eyepacs-fullres", "16_left.jpeg").read_bytes()
    image = read_image(data, target_size=512)
    assert image.kind == "fundus" and min(image.size) >= 512
    assert max(image.size) < max(image.original_size)


def test_real_chest_samples_are_read_as_chest_films() -> None:
    for path in sorted(shared("cxr", "samples").iterdir()):
        image = read_image(path.read_bytes(), source=path.name, target_size=224)
        assert image.kind == "cxr", path.name
        assert image.pixels.ndim == 2 and min(image.size) >= 224


def test_a_gif_is_refused_as_not_supported() -> None:
    with pytest.raises(IntakeError) as refused:
        read_image(b"GIF89a" + bytes(100))
    assert refused.value.code == "not_an_image"


def test_sixteen_bit_colour_png_and_cmyk_jpeg_are_read_as_rgb() -> None:
    import cv2  # writes 16-bit colour PNGs, which Pillow cannot

    ok, encoded = cv2.imencode(".png", (FUNDUS.astype(np.uint16) * 257)[:, :, ::-1].copy())
    assert ok
    image = read_image(encoded.tobytes())
    assert image.kind == "fundus" and np.array_equal(image.pixels, FUNDUS)
    cmyk = BytesIO()
    PILImage.fromarray(FUNDUS).convert("CMYK").save(cmyk, format="JPEG", quality=95)
    image = read_image(cmyk.getvalue())
    assert image.kind == "fundus" and image.pixels.shape == (240, 240, 3)


def test_a_missing_codec_is_not_called_a_damaged_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import kiosk.intake as intake

    def no_codec(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'openjpeg'", name="openjpeg")

    monkeypatch.setattr(intake, "_decode", no_codec)  # stands in for an installation without the codec
    with pytest.raises(IntakeError) as refused:
        read_image(png_bytes(np.zeros((32, 32), np.uint8)))
    assert refused.value.code == "codec_missing"
    assert "openjpeg" in refused.value.message
