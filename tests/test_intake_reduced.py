"""Uncompressed films are shrunk as they are read (issue 17.4): only what the model needs is
windowed and leaves the decode sandbox, and it matches the full decode shrunk afterwards."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from builders import film_dicom
from conftest import shared
from pydicom.uid import ExplicitVRBigEndian

from kiosk.intake import read_image
from kiosk.sandbox import SandboxedIntake


@pytest.fixture(scope="module")
def real_film() -> np.ndarray:
    """The stored values of a real 15-bit CR film (RG1, 1955x1841), MONOCHROME2 (bright = dense)."""
    ds = pydicom.dcmread(shared("dicom", "RG1_J2KI.dcm"))
    stored: np.ndarray = ds.pixel_array
    if ds.PhotometricInterpretation == "MONOCHROME1":
        stored = (2**15 - 1) - stored
    return stored


def _shrunk(full: np.ndarray, factor: int) -> np.ndarray:
    rows, columns = (s // factor for s in full.shape)
    return full[: rows * factor, : columns * factor].reshape(rows, factor, columns, factor).mean(axis=(1, 3))


def test_an_uncompressed_film_decodes_reduced_and_matches_the_full_decode(real_film: np.ndarray) -> None:
    data = film_dicom(real_film, modality="CR", bits_stored=15)
    full = read_image(data).pixels.astype(np.float32)
    reduced = read_image(data, target_size=256)
    assert full.shape == (1955, 1841)
    assert reduced.pixels.shape == (488, 460)  # 1/4: the smaller side stays >= 256
    assert reduced.original_size == (1955, 1841) and reduced.kind == "cxr"
    difference = np.abs(_shrunk(full, 4) - reduced.pixels.astype(np.float32))
    assert float(difference.mean()) < 2.0 and float(np.percentile(difference, 99)) < 8.0


def test_polarity_is_kept_when_reduced(real_film: np.ndarray) -> None:
    grey = read_image(film_dicom(real_film, modality="CR", bits_stored=15), target_size=256).pixels
    as_monochrome1 = film_dicom((2**15 - 1) - real_film, modality="CR", bits_stored=15,
                                photometric="MONOCHROME1")
    inverted = read_image(as_monochrome1, target_size=256).pixels  # shown the same way round
    assert float(np.abs(grey.astype(np.int16) - inverted.astype(np.int16)).mean()) < 1.0


def test_bits_above_bits_stored_are_ignored_when_reduced(real_film: np.ndarray) -> None:
    clean = read_image(film_dicom(real_film, modality="CR", bits_stored=15), target_size=256).pixels
    overlaid = real_film.copy()
    overlaid[100:400, :] |= 0x8000  # an overlay plane in the unused top bit
    dirty = read_image(film_dicom(overlaid, modality="CR", bits_stored=15), target_size=256).pixels
    assert np.array_equal(clean, dirty)


def test_what_cannot_be_viewed_in_place_still_decodes_in_full(real_film: np.ndarray) -> None:
    big_endian = film_dicom(real_film, modality="CR", bits_stored=15, transfer_syntax=ExplicitVRBigEndian)
    decoded = read_image(big_endian, target_size=256).pixels
    assert decoded.shape == (1955, 1841)  # the pipeline's working copy shrinks it later


def test_the_reduced_film_is_what_crosses_the_sandbox(real_film: np.ndarray) -> None:
    data = film_dicom(real_film, modality="CR", bits_stored=15)
    with SandboxedIntake(workers=1) as sandbox:
        image = sandbox.read_image(data, target_size=256)
    assert image.pixels.shape == (488, 460)
    assert np.array_equal(image.pixels, read_image(data, target_size=256).pixels)
