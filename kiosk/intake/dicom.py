"""DICOM intake: CR/DX/SC chest films and OP fundus photographs into an 8-bit ``Image``.

Pixel meaning is made explicit the way a viewer does it: stored values (BitsStored) → Modality
LUT or rescale → VOI LUT or window → 0-255, then MONOCHROME1 inverted so that bright means dense.
"""

from __future__ import annotations

import re
import warnings
import zlib
from datetime import date, datetime
from io import BytesIO
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    get_decoder,
    pixel_array,
)
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from kiosk.domain import Image, ImageKind
from kiosk.errors import IntakeError
from kiosk.intake import DEFAULT_LIMITS, IntakeLimits, check_dimensions
from kiosk.intake.codestreams import (
    decode_reduced,
    first_frame,
    frame_size,
    is_jpeg2000,
    native_reduced,
)
from kiosk.intake.detect import as_kind, check_chest_content, detect_kind
from kiosk.intake.photo import BOMB_MIN_PIXELS, MAX_EXPANSION, stretch_to_uint8

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
#: JPEG 2000 pixels that a reduced-level decode gives as they are (the codestream's own colour
#: transform, MCT, is undone by the decoder): grey, or colour stored as RGB / ICT / RCT.
J2K_REDUCIBLE = (*MONOCHROME, "RGB", "YBR_ICT", "YBR_RCT")
FILM_MODALITIES = ("CR", "DX", "RG")
PHOTO_MODALITIES = ("OP", "XC")
#: Modalities that are surely neither a chest film nor a fundus photograph.
OTHER_MODALITIES = ("CT", "MR", "US", "NM", "PT", "MG", "PX", "IO", "XA", "RF", "OPT", "OCT",
                    "SR", "PR", "KO", "SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "ECG", "DOC")
CHEST_WORDS = {"CHEST", "THORAX", "THORACIC", "THX", "LUNG", "LUNGS", "TORAX", "PECHO",
               "POUMON", "CXR", "THORAKS", "BRUST"}
OTHER_BODY_WORDS = {
    "EXTREMITY", "TIBIA", "FIBULA", "LEG", "KNEE", "ANKLE", "FOOT", "HAND", "WRIST", "ARM",
    "FOREARM", "ELBOW", "SHOULDER", "HIP", "PELVIS", "ABDOMEN", "SKULL", "HEAD", "BRAIN",
    "TEETH", "TOOTH", "DENTAL", "JAW", "MANDIBLE", "SPINE", "CSPINE", "LSPINE", "BREAST",
    "NECK", "SINUS", "FEMUR", "HUMERUS", "FINGER", "TOE", "HEEL", "CLAVICLE", "ORBIT", "FACE",
}
DESCRIPTION_TAGS = ("StudyDescription", "SeriesDescription", "ProtocolName",
                    "RequestedProcedureDescription", "PerformedProcedureStepDescription")


def read_dicom(data: bytes, *, source: str = "", kind_hint: ImageKind | None = None,
               target_size: int | None = None,
               limits: IntakeLimits = DEFAULT_LIMITS) -> Image:
    """Decode a DICOM image (with or without a Part 10 header) into an Image."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guard_deflated(data, limits)
        ds = parse(data, caught)
        check_header(ds, limits)
        kind = kind_from_header(ds) or kind_hint
        stored = stored_pixels(ds, target_size)
        pixels = to_uint8(stored, ds)
    kind = kind or detect_kind(pixels)
    pixels = as_kind(pixels, kind)
    if kind == "cxr":
        check_chest_content(pixels)
    notes = sorted({f"DICOM: {w.message}" for w in caught})[:5]
    return Image(pixels=pixels, source=source, kind=kind, original_size=(ds.Rows, ds.Columns),
                 laterality=laterality(ds), meta=describe(ds), warnings=notes)


def guard_deflated(data: bytes, limits: IntakeLimits) -> None:
    """Refuse a deflated dataset that would inflate past any image the limits allow.

    pydicom inflates a Deflated Explicit VR Little Endian file in one piece, so a small file
    could otherwise expand to gigabytes: inflate it here first, bounded, and stop early.
    """
    if DeflatedExplicitVRLittleEndian.encode() not in data[:4096] or data[128:132] != b"DICM":
        return
    stream = BytesIO(data)
    read_preamble(stream, False)
    meta = _read_file_meta_info(stream)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    bound = 6 * limits.max_pixels + 2**24  # 16-bit RGB at the pixel limit, plus header
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, total = data[stream.tell():], 0
    while pending and total <= bound:  # in 1 MiB pieces, kept by nobody: memory stays flat
        total += len(inflater.decompress(pending, 2**20))
        pending = inflater.unconsumed_tail
    if total > bound:
        raise IntakeError("The deflated DICOM file would expand beyond any image the kiosk "
                          "accepts: refused as a possible decompression bomb.",
                          code="decompression_bomb")


def parse(data: bytes, caught: list[warnings.WarningMessage] | None = None) -> Dataset:
    """The dataset, with a transfer syntax set for files that have no Part 10 header."""
    ds = pydicom.dcmread(BytesIO(data), force=True)
    cut_off = any("end of file" in str(w.message).lower() for w in caught or [])
    if "PixelData" not in ds and ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds):
        raise IntakeError("Floating-point pixel data (a parametric map) is not an image the "
                          "kiosk screens.", code="unsupported_pixel_data")
    if "PixelData" not in ds and ("Rows" in ds or cut_off):
        raise IntakeError("The DICOM file is truncated: it ends before its pixel data. Send it "
                          "again.", code="truncated")
    if "PixelData" not in ds:
        raise IntakeError("This DICOM file holds no image (it may be a report or a worklist "
                          "entry).", code="not_an_image")
    if not isinstance(getattr(ds, "file_meta", None), FileMetaDataset):
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def check_header(ds: Dataset, limits: IntakeLimits) -> None:
    """Refuse dimensions, bit depths and photometric interpretations the kiosk cannot read."""
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if ds.get(keyword) in (None, ""):
            raise IntakeError(f"The DICOM file lacks {keyword}: its image cannot be read.",
                              code="corrupt")
    check_dimensions(int(ds.Rows), int(ds.Columns), limits)
    _check_transfer_syntax(ds)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric not in MONOCHROME + COLOUR:
        raise IntakeError(
            f"Photometric interpretation {photometric} is not supported (only MONOCHROME1/2, "
            "RGB, YBR and palette colour).", code="unsupported_photometric")
    allocated = int(ds.BitsAllocated)
    stored = int(ds.get("BitsStored") or allocated)
    if allocated not in (8, 16) or not 1 <= stored <= allocated:
        raise IntakeError(f"Bit depth {stored}/{allocated} is not supported.",
                          code="unsupported_bit_depth")
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples != (1 if photometric in (*MONOCHROME, "PALETTE COLOR") else 3):
        raise IntakeError(f"{samples} samples per pixel do not match {photometric}.",
                          code="unsupported_photometric")
    _check_native_length(ds, samples, allocated)


def _check_transfer_syntax(ds: Dataset) -> None:
    """Refuse pixel data no installed decoder can read (video, JPEG XL, private syntaxes)."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        available = get_decoder(syntax).is_available
    except (NotImplementedError, ValueError):
        available = False
    if not available:
        raise IntakeError(f"The image is stored as {syntax.name or syntax}, which this kiosk "
                          "cannot decode: export it uncompressed, JPEG or JPEG 2000.",
                          code="unsupported_transfer_syntax")


def _check_native_length(ds: Dataset, samples: int, allocated: int) -> None:
    """Uncompressed pixel data shorter than its dimensions promise is a truncated file."""
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        _check_frame_size(ds)
        _check_expansion(ds, samples, allocated)
        return
    expected = int(ds.Rows) * int(ds.Columns) * samples * allocated // 8
    if len(ds.PixelData) < expected:
        raise IntakeError("The DICOM file is truncated: its pixel data is shorter than its "
                          "dimensions. Send it again.", code="truncated")


def _check_frame_size(ds: Dataset) -> None:
    """A codestream declaring another size than the header is refused before it is decoded."""
    declared = frame_size(first_frame(ds))
    if declared is not None and declared != (int(ds.Rows), int(ds.Columns)):
        raise IntakeError(
            f"The compressed image is {declared[1]}x{declared[0]} pixels but the header says "
            f"{ds.Columns}x{ds.Rows}: the file is damaged or crafted.", code="bad_dimensions")


def _check_expansion(ds: Dataset, samples: int, allocated: int) -> None:
    """Compressed pixel data that would expand a thousandfold or more is a decompression bomb.

    Lossless films compress 2-5 times and lossy ones rarely past 50; a few kilobytes that
    decode to tens of megapixels are a crafted file (the same rule as for PNG).
    """
    pixels = int(ds.Rows) * int(ds.Columns)
    decoded = pixels * samples * allocated // 8
    if pixels >= BOMB_MIN_PIXELS and decoded > MAX_EXPANSION * len(ds.PixelData):
        raise IntakeError(
            f"This film's {len(ds.PixelData) / 1024:.0f} kB of compressed pixels would expand to "
            f"{decoded / 2**20:.0f} MB: refused as a possible decompression bomb.",
            code="decompression_bomb")


def _words(text: object) -> set[str]:
    """Upper-case words of a header value."""
    return set(re.findall(r"[A-Z]+", str(text or "").upper()))


def kind_from_header(ds: Dataset) -> ImageKind | None:
    """'cxr' or 'fundus' from Modality and body part; IntakeError for other body parts."""
    modality = str(ds.get("Modality") or "").upper()
    if modality in OTHER_MODALITIES:
        raise IntakeError(f"Modality {modality} is not a chest film or a fundus photograph.",
                          code="unsupported_modality")
    if modality in PHOTO_MODALITIES:
        return "fundus"
    body = str(ds.get("BodyPartExamined") or "").strip().upper()
    described = set().union(*(_words(ds.get(tag)) for tag in DESCRIPTION_TAGS))
    if body and not _words(body) & CHEST_WORDS:
        raise _wrong_body_part(body)
    if not body and described & OTHER_BODY_WORDS and not described & CHEST_WORDS:
        raise _wrong_body_part(", ".join(sorted(described & OTHER_BODY_WORDS)))
    if modality in FILM_MODALITIES or (body or described & CHEST_WORDS):
        return "cxr"
    return None


def _wrong_body_part(part: str) -> IntakeError:
    """The refusal for a film of another body part."""
    return IntakeError(f"This film shows {part.lower()}, not a chest: it cannot be screened "
                       "for chest disease.", code="wrong_body_part")


def stored_pixels(ds: Dataset, target_size: int | None) -> np.ndarray:
    """The first frame's stored values, at reduced resolution for JPEG 2000 and uncompressed
    grey films when ``target_size`` allows."""
    reduced = None
    if target_size and is_jpeg2000(ds) and str(ds.PhotometricInterpretation) in J2K_REDUCIBLE:
        reduced = decode_reduced(ds, target_size)
    elif target_size and str(ds.PhotometricInterpretation) in MONOCHROME:
        reduced = native_reduced(ds, target_size)
    if reduced is not None:
        return reduced
    frames = int(ds.get("NumberOfFrames") or 1)
    return pixel_array(ds, index=0) if frames > 1 else ds.pixel_array


def to_uint8(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """0-255 pixels: windowed grey in MONOCHROME2 sense, or RGB."""
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric == "PALETTE COLOR":
        stored = apply_color_lut(stored, ds)
    if stored.ndim == 3:
        return _colour_to_uint8(stored)
    grey = window(stored, ds)
    return 255 - grey if photometric == "MONOCHROME1" else grey


def _colour_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB of any depth as uint8 (pydicom has already converted YBR to RGB)."""
    if rgb.dtype == np.uint8:
        return rgb
    bits = max(8, int(rgb.max()).bit_length())
    return (rgb.astype(np.uint32) >> (bits - 8)).astype(np.uint8)


def window(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality LUT/rescale, then the file's VOI LUT or window (or an automatic one), to 0-255.

    The transforms run once per possible stored value (at most 65,536 of them) into a table,
    and the table is looked up per pixel: a 60-megapixel film costs its 8-bit output, not
    several float copies of itself.
    """
    low, high = int(stored.min()), int(stored.max())
    values = np.asarray(apply_modality_lut(np.arange(low, high + 1, dtype=stored.dtype), ds))
    step = max(1, max(stored.shape) // 512)
    index = stored[::step, ::step].astype(np.intp) - low  # a sample of the pixels, as indices
    table = None
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        table = _voi_table(values, ds)
        if _is_blank(table[index]):  # a window far outside the data: use the data's own range
            table = None
    if table is None:
        table = stretch_to_uint8(values, sample=values[index])
    return _look_up(table, stored, low)


def _voi_table(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """The file's VOI LUT or window applied to modality values, scaled to 0-255."""
    windowed = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
    low, high = _voi_output_range(ds)
    scaled = np.clip((windowed - low) * (255.0 / max(high - low, 1e-6)) + 0.5, 0, 255)
    return scaled.astype(np.uint8)


def _look_up(table: np.ndarray, stored: np.ndarray, low: int) -> np.ndarray:
    """``table[stored - low]`` without a full-size temporary when ``low`` is not negative."""
    if low >= 0:
        full = np.zeros(low + len(table), dtype=np.uint8)
        full[low:] = table
        return full[stored]
    return table[stored.astype(np.int32) - low]


def _voi_output_range(ds: Dataset) -> tuple[float, float]:
    """The range of values the file's VOI transform can produce."""
    if "VOILUTSequence" in ds:
        lut = _lut_values(ds.VOILUTSequence[0])
        return float(lut.min()), float(lut.max())
    low, high = apply_voi_lut(np.array([-1e12, 1e12]), ds)
    return float(low), float(high)


def _lut_values(item: Dataset) -> np.ndarray:
    """A LUT's entries, whether stored as a list (US) or as raw words (OW)."""
    data = item.LUTData
    if isinstance(data, bytes):
        dtype = "<u1" if int(item.LUTDescriptor[2]) <= 8 else "<u2"
        return np.frombuffer(data, dtype=dtype).astype(np.float64)
    return np.asarray(data, dtype=np.float64).ravel()


def _is_blank(grey: np.ndarray) -> bool:
    """Almost every pixel at one extreme: the window shows nothing."""
    return bool(max((grey <= 1).mean(), (grey >= 254).mean()) > 0.98)


def laterality(ds: Dataset) -> Literal["L", "R"] | None:
    """'L' or 'R' from ImageLaterality or Laterality, if stated."""
    value = str(ds.get("ImageLaterality") or ds.get("Laterality") or "").strip().upper()
    return "L" if value == "L" else "R" if value == "R" else None


def describe(ds: Dataset) -> dict[str, str]:
    """The header values the rest of the kiosk needs, as strings."""
    fields = {"modality": "Modality", "body_part": "BodyPartExamined",
              "photometric": "PhotometricInterpretation", "patient_id": "PatientID",
              "study_uid": "StudyInstanceUID", "series_uid": "SeriesInstanceUID",
              "sop_uid": "SOPInstanceUID", "view_position": "ViewPosition",
              "patient_age": "PatientAge", "birth_date": "PatientBirthDate", "patient_sex": "PatientSex",
              "study_date": "StudyDate", "acquisition_date": "AcquisitionDate",
              "accession_number": "AccessionNumber", "sop_class_uid": "SOPClassUID",
              "manufacturer": "Manufacturer", "device_model": "ManufacturerModelName"}
    meta = {key: str(ds.get(tag)).strip() for key, tag in fields.items() if ds.get(tag)}
    meta["transfer_syntax"] = str(ds.file_meta.TransferSyntaxUID)
    meta["format"] = "dicom"
    return meta


_AGE_UNITS = {"D": 365.25, "W": 365.25 / 7, "M": 12.0, "Y": 1.0}


def age_in_years(meta: dict[str, str]) -> float | None:
    """The patient's age at the examination, from PatientAge ("068Y", "018M") or from the birth
    date and the study (or acquisition) date; None when the header does not say or makes no sense."""
    match = re.fullmatch(r"(\d{1,3})([DWMY])", meta.get("patient_age", "").strip().upper())
    if match:
        return int(match.group(1)) / _AGE_UNITS[match.group(2)]
    born = _dicom_date(meta.get("birth_date", ""))
    seen = _dicom_date(meta.get("study_date", "") or meta.get("acquisition_date", ""))
    if born is None or seen is None or seen < born:
        return None
    return (seen - born).days / 365.25


def _dicom_date(text: str) -> date | None:
    """A DA value (YYYYMMDD) as a date, or None."""
    try:
        return datetime.strptime(text.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None
