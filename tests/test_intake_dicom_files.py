"""Every file in ../shared/data/dicom is read correctly or refused for a stated reason."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest
from builders import film_dicom
from conftest import shared
from pydicom.uid import JPEGLosslessSV1

from kiosk.errors import IntakeError
from kiosk.intake import IntakeLimits, read_image
from kiosk.intake.dicom import check_header, parse, stored_pixels, to_uint8

READ = {  # file -> (rows, columns) of the stored image
    "CR-MONO1-10-chest.dcm": (440, 440),
    "RG1_J2KI.dcm": (1955, 1841),
    "SIIM-CXR-no-pneumothorax.dcm": (1024, 1024),
}
REFUSED = {
    "RG3_J2KI.dcm": "wrong_body_part",
    "RG3_J2KR.dcm": "wrong_body_part",
    "CR-ModalitySequenceLUT.dcm": "wrong_body_part",
    "SIIM-CXR-retagged-MONOCHROME1.dcm": "photometric_mismatch",
}


def test_every_shared_dicom_file_is_listed_here() -> None:
    names = {path.name for path in shared("dicom").glob("*.dcm")}
    assert names == set(READ) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(READ))
@pytest.mark.parametrize("target_size", [None, 224])
def test_chest_films_are_read_as_chests(name: str, target_size: int | None) -> None:
    image = read_image(shared("dicom", name).read_bytes(), source=name, target_size=target_size)
    assert image.kind == "cxr"
    assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 2
    assert image.original_size == READ[name]
    assert min(image.size) >= (target_size or min(READ[name]))
    assert image.meta["format"] == "dicom" and image.meta["modality"] == "CR"
    # Bright means dense: the film uses most of the grey range, not a blank or clipped one.
    low, high = np.percentile(image.pixels, [2, 98])
    assert high - low > 100


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_other_files_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(IntakeError) as refused:
        read_image(shared("dicom", name).read_bytes(), source=name)
    assert refused.value.code == REFUSED[name]
    assert len(refused.value.message) > 20


def test_reduced_jpeg2000_decode_matches_the_full_decode() -> None:
    data = shared("dicom", "RG1_J2KI.dcm").read_bytes()
    full = read_image(data).pixels.astype(np.float32)
    reduced = read_image(data, target_size=224).pixels.astype(np.float32)
    # Three levels down at OpenJPEG's size (ceil: 1841 -> 231), which Pillow's own reduce gets
    # wrong (230) and then fails on: this film used to decode only one level down (978x921).
    assert reduced.shape == (245, 231)
    # The same window applies to the decoded values: an 8x8 average of the full film matches.
    eighth = full[:1952, :1840].reshape(244, 8, 230, 8).mean(axis=(1, 3))
    assert float(np.abs(eighth - reduced[:244, :230]).mean()) < 4.0


def test_every_sample_film_as_dicom_keeps_its_polarity_and_a_retag_is_caught() -> None:
    for path in sorted(shared("cxr", "samples").iterdir()):
        grey = read_image(path.read_bytes(), target_size=256).pixels
        assert read_image(film_dicom(grey, modality="CR")).kind == "cxr", path.name
        as_sent = film_dicom(255 - grey, modality="CR", photometric="MONOCHROME1")
        shown = read_image(as_sent).pixels  # auto-windowed (no VOI in the file): same polarity
        assert np.corrcoef(shown.ravel(), grey.ravel())[0, 1] > 0.98, path.name
        retagged = film_dicom(grey, modality="CR", photometric="MONOCHROME1")
        with pytest.raises(IntakeError) as refused:
            read_image(retagged)
        assert refused.value.code == "photometric_mismatch", path.name


def _claimed_chest(name: str) -> bytes:
    """A real non-chest film re-tagged as a chest (body part and descriptions)."""
    ds = pydicom.dcmread(BytesIO(shared("dicom", name).read_bytes()))
    ds.BodyPartExamined = "CHEST"
    ds.StudyDescription = ds.SeriesDescription = "CHEST PA"
    out = BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize("name", ["RG3_J2KI.dcm", "RG3_J2KR.dcm", "CR-ModalitySequenceLUT.dcm"])
def test_non_chest_films_tagged_as_chests_are_refused_by_their_pixels(name: str) -> None:
    with pytest.raises(IntakeError) as refused:
        read_image(_claimed_chest(name), target_size=224)
    assert refused.value.code == "wrong_body_part"
    assert "shaped like a limb or a dental film" in refused.value.message


def test_jpeg_lossless_film_with_a_modality_lut_sequence_decodes() -> None:
    # The dental film is refused as a chest, so its decode path is checked step by step.
    ds = parse(shared("dicom", "CR-ModalitySequenceLUT.dcm").read_bytes())
    check_header(ds, IntakeLimits())
    assert ds.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    grey = to_uint8(stored_pixels(ds, None), ds)
    assert grey.shape == (1576, 1976) and grey.dtype == np.uint8
    top, teeth = grey[:500], grey[700:1300, 300:1700]
    assert float(top.mean()) < 10  # the unexposed padding above the film shows black
    assert float(np.percentile(teeth, 99)) > 200  # fillings and enamel bright (MONOCHROME1 inverted)
