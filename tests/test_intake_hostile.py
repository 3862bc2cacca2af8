"""Refusal of bad input: a specific IntakeError, never a crash, a traceback or a memory blow-up."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from builders import (
    chest_phantom,
    dicom_declaring,
    dicom_without_pixels,
    film_dicom,
    jpeg_bytes,
    jpeg_declaring,
    png_bomb,
    png_bytes,
    truncated,
)
from conftest import shared
from PIL import Image as PILImage
from pydicom.encaps import encapsulate
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import MPEG2MPML, DeflatedExplicitVRLittleEndian, JPEG2000Lossless

from kiosk.config import Config
from kiosk.errors import IntakeError
from kiosk.intake import IntakeLimits, read_image

FILM = chest_phantom(128, seed=9)
TESTS = Path(__file__).resolve().parent


def _refused(data: bytes, **kwargs: object) -> IntakeError:
    """The IntakeError read_image raises for ``data``; fails the test if it accepts it."""
    with pytest.raises(IntakeError) as refused:
        read_image(data, **kwargs)  # type: ignore[arg-type]
    assert refused.value.message and refused.value.http_status == 422
    return refused.value


@pytest.mark.parametrize("data", [b"", b"hello, this is a text file\n" * 20, bytes(1000),
                                  b"%PDF-1.7\n" + bytes(500), b"GIF89a" + bytes(200)])
def test_not_an_image(data: bytes) -> None:
    assert _refused(data).code == "not_an_image"


@pytest.mark.parametrize("make", [lambda: png_bytes(FILM), lambda: jpeg_bytes(FILM),
                                  lambda: film_dicom(FILM),
                                  lambda: film_dicom(FILM, transfer_syntax=JPEG2000Lossless)])
def test_truncated_files(make: object) -> None:
    data = make()  # type: ignore[operator]
    assert _refused(truncated(data, 0.6)).code == "truncated"


def test_dicom_without_pixel_data() -> None:
    assert _refused(dicom_without_pixels()).code == "not_an_image"


@pytest.mark.parametrize("data", [png_bomb(), jpeg_declaring(60_000, 60_000),
                                  dicom_declaring(65_535, 65_535)])
def test_decompression_bombs_are_refused_from_the_header(data: bytes) -> None:
    assert _refused(data).code == "decompression_bomb"


@pytest.mark.parametrize("mode", ["P", "RGBA", "RGB", "I;16", "L"])
def test_small_png_of_many_pixels_under_the_limit_is_a_bomb(mode: str) -> None:
    # 6 megapixels of one colour squeeze into a few kilobytes: inside the pixel limit, but no
    # photograph or film compresses a thousandfold; decoding it is what the bomb wants.
    out = BytesIO()
    PILImage.new(mode, (2500, 2500), 0).save(out, format="PNG")
    error = _refused(out.getvalue())
    assert error.code == "decompression_bomb" and "would expand" in error.message


def test_small_jpeg2000_film_of_many_pixels_is_a_bomb() -> None:
    blank = np.zeros((2500, 2500), np.uint16)  # 12 MB of one value in a few hundred bytes
    data = film_dicom(blank, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    error = _refused(data)
    assert error.code == "decompression_bomb" and "would expand" in error.message


def test_real_pngs_are_not_taken_for_bombs() -> None:
    for path in sorted(shared("cxr", "samples").glob("*.png")):
        assert read_image(path.read_bytes()).kind == "cxr", path.name


def test_pillow_own_bomb_limit_is_an_error_not_a_warning() -> None:
    # Past Pillow's MAX_IMAGE_PIXELS but inside a (generous) kiosk limit: Pillow's warning,
    # escalated locally, is what stops it.
    generous = IntakeLimits(max_pixels=10**12)
    error = _refused(png_bomb(12_000, 12_000), limits=generous)
    assert error.code == "decompression_bomb" and "any camera" in error.message  # Pillow's limit


def test_bomb_refusal_stays_under_64_mb_of_extra_memory() -> None:
    # A fresh interpreter, so the peak resident size measures this refusal and nothing else.
    script = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(TESTS)!r})
        from builders import png_bomb, jpeg_declaring
        from kiosk.errors import IntakeError
        from kiosk.intake import read_image
        import kiosk.intake.photo, kiosk.intake.dicom
        bombs = [png_bomb(), png_bomb(30_000, 30_000), jpeg_declaring(60_000, 60_000)]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for bomb in bombs:
            try:
                read_image(bomb)
            except IntakeError as error:
                assert error.code == "decompression_bomb", error.code
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert float(result.stdout.strip()) < 64, result.stdout


def test_file_over_the_size_limit() -> None:
    data = png_bytes(FILM)
    error = _refused(data, limits=IntakeLimits(max_bytes=len(data) - 1))
    assert error.code == "too_large" and "MiB" in error.message


@pytest.mark.parametrize(("rows", "columns"), [(0, 100), (100, 0), (10, 10), (40, 4000)])
def test_zero_tiny_or_absurd_dimensions(rows: int, columns: int) -> None:
    assert _refused(dicom_declaring(rows, columns)).code == "bad_dimensions"


def test_unsupported_photometric_interpretation() -> None:
    assert _refused(dicom_declaring(64, 64, PhotometricInterpretation="CMYK")).code == \
        "unsupported_photometric"


def test_unsupported_bit_depth() -> None:
    data = dicom_declaring(64, 64, BitsAllocated=32, BitsStored=32, HighBit=31)
    assert _refused(data).code == "unsupported_bit_depth"


def test_codestream_larger_than_its_header_is_refused_before_decoding() -> None:
    big = film_dicom(chest_phantom(512, bits=12), transfer_syntax=JPEG2000Lossless,
                     bits_stored=12)
    ds = pydicom.dcmread(BytesIO(big))
    ds.Rows = ds.Columns = 64  # the header claims a small image; the codestream is 512 x 512
    crafted = BytesIO()
    ds.save_as(crafted)
    error = _refused(crafted.getvalue())
    assert error.code == "bad_dimensions" and "512x512" in error.message


def test_unsupported_transfer_syntax() -> None:
    ds = pydicom.dcmread(BytesIO(film_dicom(chest_phantom(64))))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML  # a video syntax: no decoder for it here
    ds.PixelData = encapsulate([bytes(64)])
    out = BytesIO()
    ds.save_as(out)
    error = _refused(out.getvalue())
    assert error.code == "unsupported_transfer_syntax" and "MPEG2" in error.message


def test_deflated_dicom_bomb_is_refused_before_pydicom_inflates_it() -> None:
    header = film_dicom(chest_phantom(64), transfer_syntax=DeflatedExplicitVRLittleEndian)
    stream = BytesIO(header)
    read_preamble(stream, False)
    meta = _read_file_meta_info(stream)
    meta_end = stream.tell()  # the deflated body starts after the file meta group
    squeezer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = b"".join(squeezer.compress(bytes(2**20)) for _ in range(64)) + squeezer.flush()
    assert meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    bomb = header[:meta_end] + body  # 64 MiB of zeros squeezed into ~64 KiB
    error = _refused(bomb, limits=IntakeLimits(max_pixels=1_000_000))
    assert error.code == "decompression_bomb"


def test_deflated_dicom_within_limits_is_read() -> None:
    data = film_dicom(chest_phantom(128), transfer_syntax=DeflatedExplicitVRLittleEndian)
    assert read_image(data).size == (128, 128)


def test_limits_come_from_the_configuration() -> None:
    limits = IntakeLimits.from_config(Config(max_upload_mb=3, max_pixels=1000))
    assert limits == IntakeLimits(max_bytes=3 * 2**20, max_pixels=1000)


def _mutations(data: bytes, count: int, seed: int) -> list[bytes]:
    """Copies of ``data`` with random bytes overwritten, chunks cut out, or tails dropped."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        mutated = bytearray(data)
        action = rng.choice(("flip", "cut", "tail"))
        if action == "flip":
            for _ in range(rng.randint(1, 12)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        elif action == "cut":
            start = rng.randrange(len(mutated))
            del mutated[start : start + rng.randint(1, 200)]
        else:
            del mutated[rng.randrange(1, len(mutated)) :]
        out.append(bytes(mutated))
    return out


@pytest.mark.parametrize("name", ["png", "jpeg", "dicom", "dicom-j2k"])
def test_mutated_files_give_an_image_or_an_intake_error_only(name: str) -> None:
    film16 = chest_phantom(96, bits=12, seed=2)
    seed_file = {"png": png_bytes(FILM), "jpeg": jpeg_bytes(FILM),
                 "dicom": film_dicom(film16, bits_stored=12),
                 "dicom-j2k": film_dicom(film16, bits_stored=12,
                                         transfer_syntax=JPEG2000Lossless)}[name]
    codes = set()
    for data in _mutations(seed_file, 150, seed=len(name)):
        try:
            image = read_image(data)
        except IntakeError as error:
            codes.add(error.code)
            assert error.__cause__ is None or isinstance(error.__cause__, Exception)
        else:
            assert image.pixels.dtype == np.uint8
    assert codes  # the mutations did hit the refusal paths
