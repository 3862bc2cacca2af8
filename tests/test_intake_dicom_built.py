"""DICOM intake on films and photographs built at test time (phantoms, a real fundus photo)."""

from __future__ import annotations

import numpy as np
import pytest
from builders import (
    chest_phantom,
    film_dicom,
    fundus_phantom,
    jpeg_bytes,
    limb_phantom,
    op_dicom,
    op_j2k_dicom,
)
from conftest import shared
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from kiosk.errors import IntakeError
from kiosk.intake import read_image
from kiosk.intake.codestreams import reduction_level

STORED = chest_phantom(256, bits=12, seed=1)  # 12-bit stored values, MONOCHROME2 sense


def _read(data: bytes, **kwargs: object) -> np.ndarray:
    image = read_image(data, **kwargs)  # type: ignore[arg-type]
    assert image.kind == "cxr" and image.pixels.dtype == np.uint8 and image.pixels.ndim == 2
    return image.pixels


def _same_picture(a: np.ndarray, b: np.ndarray, tolerance: float = 3.0) -> None:
    """Two 8-bit renderings of one film agree to within a few grey levels on average."""
    assert a.shape == b.shape
    assert float(np.abs(a.astype(int) - b.astype(int)).mean()) <= tolerance


def test_monochrome1_is_inverted_so_bright_means_dense() -> None:
    as_m2 = _read(film_dicom(STORED, bits_stored=12))
    as_m1 = _read(film_dicom((4095 - STORED).astype(np.uint16), bits_stored=12,
                             photometric="MONOCHROME1"))
    _same_picture(as_m1, as_m2)


def test_window_centre_and_width_are_applied() -> None:
    # A narrow window on the lungs' values: they spread over the grey scale, bone clips white.
    lungs = float(np.median(STORED[100:150, 40:90]))
    pixels = _read(film_dicom(STORED, bits_stored=12, window=(lungs, 600)))
    assert 90 <= float(np.median(pixels[100:150, 40:90])) <= 165
    assert float(np.median(pixels[100:150, 120:136])) >= 250


def test_rescale_slope_and_intercept_come_before_the_window() -> None:
    plain = _read(film_dicom(STORED, bits_stored=12, window=(2048, 4096)))
    rescaled = _read(film_dicom(STORED, bits_stored=12, rescale=(2.0, -1000.0),
                                window=(2 * 2048 - 1000, 2 * 4096)))
    _same_picture(plain, rescaled)


def test_voi_lut_sequence_is_applied() -> None:
    inverse_lut = np.linspace(65535, 0, 4096)  # a LUT that turns the film into its negative
    pixels = _read(film_dicom(STORED, bits_stored=12, voi_lut=inverse_lut,
                              photometric="MONOCHROME1"))
    # LUT-negated, then MONOCHROME1-inverted: the film under a window spanning all 12 bits.
    _same_picture(pixels, _read(film_dicom(STORED, bits_stored=12, window=(2048, 4096))))


def test_bits_above_bits_stored_are_ignored() -> None:
    dirty = STORED | np.uint16(0xF000)  # overlay bits set above the 12 stored ones
    _same_picture(_read(film_dicom(dirty, bits_stored=12)),
                  _read(film_dicom(STORED, bits_stored=12)))


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless, JPEGLSLossless,
                                    ImplicitVRLittleEndian])
def test_transfer_syntaxes_decode_to_the_same_film(syntax: UID) -> None:
    reference = _read(film_dicom(STORED, bits_stored=12))
    _same_picture(_read(film_dicom(STORED, bits_stored=12, transfer_syntax=syntax)), reference)


def test_file_without_part10_header_is_read() -> None:
    data = film_dicom(STORED, bits_stored=12, transfer_syntax=ImplicitVRLittleEndian,
                      part10=False)
    assert data[128:132] != b"DICM"
    _same_picture(_read(data), _read(film_dicom(STORED, bits_stored=12)))


def test_jpeg2000_is_decoded_at_a_reduced_level_never_below_the_target() -> None:
    big = chest_phantom(1024, bits=12, seed=2)
    data = film_dicom(big, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    image = read_image(data, target_size=224)
    assert image.original_size == (1024, 1024)
    assert image.size == (256, 256)  # two levels down: 1024 -> 256 >= 224, a third would be 128
    full = read_image(data)
    assert full.size == (1024, 1024)
    thumb = full.pixels.reshape(256, 4, 256, 4).mean(axis=(1, 3))
    assert float(np.abs(thumb - image.pixels).mean()) < 6.0


def test_a_colour_jpeg2000_photograph_is_decoded_at_a_reduced_level_too() -> None:
    """Fundus cameras send OP as JPEG 2000 colour: 2048x1536 took 3.7 s at full size here."""
    import cv2

    photo = cv2.imread(str(shared("fundus", "eyepacs-fullres", "13_left.jpeg")), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(cv2.resize(photo, (1024, 768), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    data = op_j2k_dicom(rgb, laterality="R")
    image = read_image(data, target_size=192)
    assert image.kind == "fundus" and image.laterality == "R"
    assert image.original_size == (768, 1024) and image.size == (192, 256)  # two levels down
    full = read_image(data)
    assert full.size == (768, 1024) and np.array_equal(full.pixels, rgb)
    thumb = full.pixels.reshape(192, 4, 256, 4, 3).mean(axis=(1, 3))
    assert image.pixels.shape == (192, 256, 3)
    assert float(np.abs(thumb - image.pixels).mean()) < 6.0  # same picture, same colours


def test_reduction_level_keeps_the_smaller_side_at_or_above_the_target() -> None:
    assert reduction_level(2048, 2500, 224) == 3  # 256 >= 224; 128 would be too small
    assert reduction_level(1955, 1841, 224) == 3
    assert reduction_level(440, 440, 224) == 0
    assert reduction_level(448, 1000, 224) == 1


def test_chest_header_on_a_limb_film_is_refused_by_content() -> None:
    with pytest.raises(IntakeError) as refused:
        read_image(film_dicom(limb_phantom(), body_part="CHEST"))
    assert refused.value.code == "wrong_body_part"


def test_body_part_in_the_descriptions_is_refused() -> None:
    data = film_dicom(STORED, bits_stored=12, body_part=None,
                      descriptions={"StudyDescription": "XR KNEE 2 VIEWS"})
    with pytest.raises(IntakeError, match="knee") as refused:
        read_image(data)
    assert refused.value.code == "wrong_body_part"


def test_secondary_capture_of_a_chest_is_a_chest_film() -> None:
    image = read_image(film_dicom(STORED, bits_stored=12, modality="OT", body_part="CHEST"))
    assert image.kind == "cxr" and image.meta["modality"] == "OT"


def test_other_modalities_are_refused() -> None:
    with pytest.raises(IntakeError) as refused:
        read_image(film_dicom(STORED, bits_stored=12, modality="MG", body_part=None))
    assert refused.value.code == "unsupported_modality"


def test_retagged_monochrome1_phantom_is_a_photometric_mismatch() -> None:
    with pytest.raises(IntakeError) as refused:
        read_image(film_dicom(STORED, bits_stored=12, photometric="MONOCHROME1"))
    assert refused.value.code == "photometric_mismatch"


def test_header_fields_reach_the_image_meta() -> None:
    image = read_image(film_dicom(STORED, bits_stored=12))
    assert image.meta["modality"] == "DX" and image.meta["body_part"] == "CHEST"
    assert image.meta["format"] == "dicom" and image.meta["view_position"] == "PA"
    assert image.meta["transfer_syntax"] == ExplicitVRLittleEndian
    assert image.meta["patient_id"] == "TEST-0001" and image.meta["sop_uid"]


def test_op_dicom_around_a_phantom_photograph_is_a_fundus() -> None:
    photo = fundus_phantom(320)
    image = read_image(op_dicom(jpeg_bytes(photo, quality=95), laterality="R"))
    assert image.kind == "fundus" and image.laterality == "R"
    assert image.pixels.shape == (320, 320, 3)
    assert float(np.abs(image.pixels.astype(int) - photo.astype(int)).mean()) < 6.0


def test_op_dicom_around_a_real_eyepacs_photograph() -> None:
    jpeg = shared("fundus", "eyepacs-fullres", "13_left.jpeg").read_bytes()
    image = read_image(op_dicom(jpeg, laterality="L"), target_size=512)
    assert image.kind == "fundus" and image.laterality == "L"
    assert image.original_size == (1944, 2592)
    assert image.meta["modality"] == "OP"
    direct = read_image(jpeg)
    assert image.pixels.shape == direct.pixels.shape
    assert float(np.abs(image.pixels.astype(int) - direct.pixels.astype(int)).mean()) < 3.0
