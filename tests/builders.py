"""Build image fixtures at test time: DICOM films and OP photographs, PNG/JPEG files, hostile bytes.

Nothing here reads ../shared/data: callers pass real pixels or bytes in (e.g. an EyePACS JPEG to
wrap in an OP DICOM), or use the synthetic phantoms, so these builders work in a fresh clone too.
Other areas' tests may import them (``from builders import chest_phantom, film_dicom``).
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

import numpy as np
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    generate_uid,
)

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray Image Storage - For Presentation
OP_STORAGE = UID("1.2.840.10008.5.1.4.1.1.77.1.5.1")  # Ophthalmic Photography 8 Bit
SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")


# --- phantoms ---------------------------------------------------------------------------------

def chest_phantom(size: int = 256, *, bits: int = 8, seed: int = 0) -> np.ndarray:
    """A frontal chest film in MONOCHROME2 sense: dark lungs, bright spine, abdomen and ribs.

    Values span 0..2**bits-1 (uint8 for 8 bits, uint16 above).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    film = np.full((size, size), 0.08)  # air around the body
    film[((x / 0.95) ** 2 + ((y - 0.3) / 1.1) ** 2 <= 1) & (y > -0.75)] = 0.55  # trunk
    film[(np.abs(x) < 0.2) & (y <= -0.75)] = 0.5  # neck
    for side in (-1, 1):
        lung = ((x - side * 0.42) / 0.3) ** 2 + ((y + 0.05) / 0.6) ** 2 <= 1
        film[lung] = 0.22
    film[(np.abs(x) < 0.13) & (y > -0.75)] = 0.8  # mediastinum and spine
    film[y > 0.6] = np.maximum(film[y > 0.6], 0.8)  # abdomen below the diaphragm
    ribs = 0.06 * (np.sin(y * 22 + np.abs(x) * 4) > 0.6) * ((np.abs(x) > 0.15) & (y < 0.5))
    mottle = rng.normal(0, 1, (size // 8 + 1, size // 8 + 1))
    mottle = np.kron(mottle, np.ones((8, 8)))[:size, :size]
    film = film + ribs + 0.03 * mottle + rng.normal(0, 0.02, film.shape)
    film = np.clip(film, 0, 1) * (2**bits - 1)
    return film.round().astype(np.uint8 if bits <= 8 else np.uint16)


def limb_phantom(size: int = 256, *, seed: int = 0) -> np.ndarray:
    """A lower leg on a narrow strip of exposed film between collimator shadows (not a chest)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    film = np.full((size, size), 0.05)  # air
    film[np.abs(x + 0.05) < 0.25 + 0.05 * y] = 0.45  # soft tissue, wider towards the ankle
    shaft = np.abs(x + 0.05) < 0.07 + 0.06 * np.clip(y, 0, 1) ** 2
    film[shaft] = 0.9  # the tibia, flaring at its lower end
    film[(x + 0.05) ** 2 / 0.04 + (y - 0.85) ** 2 / 0.02 <= 1] = 0.95  # the ankle joint
    film += rng.normal(0, 0.02, film.shape)
    film[np.abs(x) >= 0.5] = 1.0  # collimator shadow, unexposed
    return (np.clip(film, 0, 1) * 255).astype(np.uint8)


def fundus_phantom(size: int = 256, *, seed: int = 0) -> np.ndarray:
    """An RGB fundus photograph: an orange disc with branching dark vessels on black."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    disc = x**2 + y**2 <= 0.9**2
    rgb = np.zeros((size, size, 3), np.float64)
    shade = 1.0 - 0.35 * (x**2 + y**2)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200 * shade, 95 * shade, 40 * shade
    for angle in np.linspace(0, 2 * np.pi, 9)[:-1]:  # vessels radiating from the optic disc
        dist = np.abs((x + 0.35) * np.sin(angle) - y * np.cos(angle))
        vessel = (dist < 0.015 + 0.01 * rng.random()) & ((x + 0.35) * np.cos(angle) + y * np.sin(angle) > 0)
        rgb[vessel] *= 0.55
    rgb[((x + 0.35) ** 2 + y**2) < 0.12**2] = (250, 220, 160)  # optic disc
    rgb += rng.normal(0, 2, rgb.shape)
    rgb[~disc] = rng.uniform(0, 6, (int((~disc).sum()), 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


# --- DICOM -------------------------------------------------------------------------------------

def _base_dataset(sop_class: UID, modality: str) -> Dataset:
    """The identifying attributes every instance needs."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = "TEST-0001"
    ds.PatientName = "Test^Phantom"
    return ds


def _to_bytes(ds: Dataset, transfer_syntax: UID, *, part10: bool = True) -> bytes:
    """The dataset written as a Part 10 file, or as bare dataset bytes (ACR-NEMA style)."""
    if part10:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = transfer_syntax
        ds.file_meta = meta
        out = BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = transfer_syntax == ImplicitVRLittleEndian
    from pydicom.filewriter import write_dataset

    write_dataset(buffer, ds)
    return buffer.getvalue()


def film_dicom(
    pixels: np.ndarray,
    *,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    voi_lut: np.ndarray | None = None,
    body_part: str | None = "CHEST",
    descriptions: dict[str, str] | None = None,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    part10: bool = True,
) -> bytes:
    """A CR/DX film around grey stored values (uint8 or uint16), optionally compressed.

    ``transfer_syntax`` may be any syntax pydicom can encode (explicit/implicit little endian,
    RLE, JPEG 2000 lossless, JPEG-LS); ``part10=False`` writes no file header at all.
    """
    sop = {"CR": CR_STORAGE, "DX": DX_STORAGE}.get(modality, SC_STORAGE)
    ds = _base_dataset(sop, modality)
    if body_part:
        ds.BodyPartExamined = body_part
    for keyword, value in (descriptions or {}).items():
        setattr(ds, keyword, value)
    ds.ViewPosition = "PA"
    allocated = 8 if pixels.dtype == np.uint8 else 16
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = (f"{rescale[0]:g}", f"{rescale[1]:g}")
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = (f"{window[0]:g}", f"{window[1]:g}")
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), 0, 16]
        item.LUTData = np.asarray(voi_lut, dtype="<u2").tobytes()
        ds.VOILUTSequence = [item]
    if transfer_syntax.is_compressed:
        ds.compress(transfer_syntax, pixels, generate_instance_uid=False)
    else:
        ds.PixelData = pixels.tobytes()
    return _to_bytes(ds, transfer_syntax, part10=part10)


def _op_dataset(rows: int, columns: int, photometric: str, laterality: str) -> Dataset:
    """The header of an 8-bit colour OP (ophthalmic photography) instance, pixels to be added."""
    ds = _base_dataset(OP_STORAGE, "OP")
    ds.ImageLaterality = laterality
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    return ds


def op_j2k_dicom(rgb: np.ndarray, *, laterality: str = "L") -> bytes:
    """An OP instance around RGB pixels compressed as JPEG 2000 lossless (as many cameras send)."""
    ds = _op_dataset(rgb.shape[0], rgb.shape[1], "RGB", laterality)
    ds.PixelData = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    ds.compress(JPEG2000Lossless, rgb, photometric_interpretation="RGB")
    return _to_bytes(ds, JPEG2000Lossless)


def op_dicom(jpeg: bytes, *, laterality: str = "L") -> bytes:
    """An OP (ophthalmic photography) instance wrapping a real fundus JPEG as JPEG baseline."""
    with PILImage.open(BytesIO(jpeg)) as photo:
        width, height = photo.size
        if photo.mode != "RGB":
            raise ValueError("the fundus photograph must be a colour JPEG")
    ds = _op_dataset(height, width, "YBR_FULL_422", laterality)
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return _to_bytes(ds, JPEGBaseline8Bit)


def dicom_without_pixels() -> bytes:
    """A valid DICOM file with no image in it (as a structured report would be)."""
    ds = _base_dataset(UID("1.2.840.10008.5.1.4.1.1.88.11"), "OT")
    return _to_bytes(ds, ExplicitVRLittleEndian)


def dicom_declaring(rows: int, columns: int, **attributes: object) -> bytes:
    """A small DICOM whose header declares any dimensions or attributes (for hostile cases)."""
    ds = _base_dataset(DX_STORAGE, "DX")
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = bytes(min(rows * columns, 4096))
    return _to_bytes(ds, ExplicitVRLittleEndian)


# --- photographs -------------------------------------------------------------------------------

def png_bytes(pixels: np.ndarray, *, mode: str | None = None) -> bytes:
    """A PNG of grey/RGB pixels; uint16 grey gives a 16-bit PNG; ``mode`` 'P', 'LA', 'RGBA' too."""
    image = PILImage.fromarray(pixels)  # uint16 grey becomes mode I;16, a 16-bit PNG
    if mode == "P":
        image = image.convert("RGB").quantize(colors=64)
    elif mode is not None:
        image = image.convert(mode)
    out = BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes(pixels: np.ndarray, *, orientation: int | None = None, quality: int = 90) -> bytes:
    """A JPEG of grey/RGB pixels, with an EXIF orientation tag when given (1-8)."""
    image = PILImage.fromarray(pixels)
    out = BytesIO()
    exif = PILImage.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(out, format="JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores so that EXIF ``orientation`` (3, 6 or 8) shows ``upright``."""
    turns = {1: 0, 3: 2, 6: 1, 8: 3}[orientation]  # 6: the viewer turns 90 degrees clockwise
    return np.ascontiguousarray(np.rot90(upright, turns))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares an enormous image of zeros (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(min(height, 64))) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body)
            + _png_chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header is patched to declare other dimensions."""
    data = bytearray(jpeg_bytes(np.zeros((16, 16), np.uint8)))
    at = data.index(b"\xff\xc0") + 5  # SOF0: length(2) precision(1) height(2) width(2)
    data[at : at + 4] = struct.pack(">HH", height, width)
    return bytes(data)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` share of a file, as a cut-off transfer leaves it."""
    return data[: max(1, int(len(data) * keep))]
