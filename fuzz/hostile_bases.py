"""Small valid files the hostile cases are cut from: synthetic ones, and seeds from real files."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)


def _film(bits: int = 8, photometric: str = "MONOCHROME2", side: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:side, 0:side]
    disc = ((x - side / 2) ** 2 + (y - side / 2) ** 2 < (side / 3) ** 2) * 0.6
    values = (np.clip(y / side * 0.4 + disc, 0, 1) * (2**bits - 1)).astype(
        np.uint16 if bits > 8 else np.uint8
    )
    return values if photometric == "MONOCHROME2" else (2**bits - 1 - values).astype(values.dtype)


def dicom_dataset(bits: int = 8, photometric: str = "MONOCHROME2", colour: bool = False) -> Dataset:
    """A small, valid CR chest (or OP fundus when ``colour``) dataset, explicit VR little endian."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.1" if colour else "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["hostile", str(bits), photometric, str(colour)])
    ds.StudyInstanceUID = ds.SeriesInstanceUID = ds.SOPInstanceUID
    ds.Modality = "OP" if colour else "CR"
    ds.BodyPartExamined = "EYE" if colour else "CHEST"
    ds.PatientID, ds.PatientName = "HOSTILE-1", "Test^Hostile"
    if colour:
        film = _film()
        pixels = np.stack([film, film // 2, film // 4], axis=-1)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    else:
        pixels = _film(bits, photometric)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if bits > 8:
        ds.WindowCenter, ds.WindowWidth = 2 ** (bits - 1), 2**bits
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def dicom_bytes(ds: Dataset, syntax: str = ExplicitVRLittleEndian, *, part10: bool = True) -> bytes:
    """``ds`` written in ``syntax`` (compressing when the syntax needs it)."""
    import copy

    ds = copy.deepcopy(ds)
    if syntax in (RLELossless, JPEG2000Lossless):
        ds.compress(syntax)
    elif syntax == JPEGBaseline8Bit:
        array = np.frombuffer(ds.PixelData, np.uint8).reshape(ds.Rows, ds.Columns, -1).squeeze()
        ds.PixelData = encapsulate([jpeg_bytes(PILImage.fromarray(array))])
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
        if ds.SamplesPerPixel == 3:
            ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    if part10:
        ds.save_as(buffer, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.save_as(buffer, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


def png_bytes(image: PILImage.Image, **params: object) -> bytes:
    """``image`` as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def jpeg_bytes(image: PILImage.Image, **params: object) -> bytes:
    """``image`` as JPEG (quality 90 unless given)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **({"quality": 90} | params))
    return buffer.getvalue()


def _fundus_photo(side: int = 96) -> PILImage.Image:
    y, x = np.mgrid[0:side, 0:side]
    disc = (x - side / 2) ** 2 + (y - side / 2) ** 2 < (side * 0.45) ** 2
    rgb = np.zeros((side, side, 3), np.uint8)
    rgb[disc] = (200, 90, 40)
    return PILImage.fromarray(rgb)


def bases() -> list[tuple[str, bytes]]:
    """Small valid files: the synthetic ones, plus seeds derived from the real files if present."""
    mono1 = dicom_dataset(12, "MONOCHROME1")
    grey, colour = dicom_dataset(), dicom_dataset(colour=True)
    photo = _fundus_photo()
    found = [
        ("cr-explicit", dicom_bytes(grey)),
        ("cr12-mono1", dicom_bytes(mono1)),
        ("cr-rle", dicom_bytes(grey, RLELossless)),
        ("cr-j2k", dicom_bytes(mono1, JPEG2000Lossless)),
        ("cr-jpeg", dicom_bytes(grey, JPEGBaseline8Bit)),
        ("op-rgb", dicom_bytes(colour)),
        ("cr-acrnema", dicom_bytes(grey, ImplicitVRLittleEndian, part10=False)),
        ("png", png_bytes(photo)),
        ("png-grey16", png_bytes(PILImage.fromarray(_film(16)))),
        ("jpeg", jpeg_bytes(photo)),
        ("jpeg-progressive", jpeg_bytes(photo, progressive=True)),
    ]
    try:
        import seeds

        found += [(f"real-{name}", data) for name, data in [*seeds.dicom_seeds(), *seeds.photo_seeds()]]
    except (SystemExit, ImportError, OSError):
        pass  # no real data here: the synthetic bases alone still give > 1,000 cases
    return found
