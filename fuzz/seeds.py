"""Seed corpora for the fuzzers, derived at run time from the real files in ../shared/data.

Nothing here is committed: the real images may not be redistributed. Each seed keeps a real
file's header (modality, photometric, LUTs, private tags) or real photograph bytes, with the
pixels cut down to a few dozen rows so one execution takes about a millisecond.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("KIOSK_SHARED_DATA", ROOT.parent / "shared" / "data"))
#: Side of the pixel matrix kept in DICOM seeds (intake refuses sides under 32).
SEED_SIDE = 48


def shared_data() -> Path:
    """The real data folder; SystemExit with a reason when it is absent."""
    if not (SHARED_DATA / "dicom").is_dir():
        raise SystemExit(f"real data not available at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


def dicom_seeds() -> list[tuple[str, bytes]]:
    """Small DICOM files keeping each real file's header, in several transfer syntaxes."""
    with warnings.catch_warnings():  # real headers carry odd values (e.g. a malformed UID)
        warnings.simplefilter("ignore")
        return list(_dicom_seeds())


def _dicom_seeds() -> Iterator[tuple[str, bytes]]:
    for path in sorted((shared_data() / "dicom").glob("*.dcm")):
        original = pydicom.dcmread(path, force=True)
        if "TransferSyntaxUID" not in original.file_meta:  # ACR-NEMA: no Part 10 header
            original.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
            acr_nema = True
        else:
            acr_nema = False
        small = _shrink(original)
        yield f"{path.stem}-explicit.dcm", _write(small, ExplicitVRLittleEndian)
        yield f"{path.stem}-rle.dcm", _compress(small, RLELossless)
        yield f"{path.stem}-j2k.dcm", _compress(small, JPEG2000Lossless)
        yield f"{path.stem}-jpegls.dcm", _compress(small, JPEGLSLossless)
        if small.BitsAllocated == 8 and small.SamplesPerPixel == 1:
            yield f"{path.stem}-jpeg.dcm", _jpeg_baseline(small)
        if acr_nema:
            yield f"{path.stem}-acrnema.dcm", _write(small, ImplicitVRLittleEndian, part10=False)


#: Transfer syntaxes the listener harness can pick with an input's first byte (same order there).
LISTENER_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                     "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"]


def listener_seeds() -> list[tuple[str, bytes]]:
    """C-STORE datasets as a sender encodes them (no file meta), led by a transfer syntax byte."""
    found = []
    for name, data in dicom_seeds():
        if data[128:132] != b"DICM":
            continue
        meta_length = int.from_bytes(data[140:144], "little")  # (0002,0000) group length value
        syntax = pydicom.dcmread(io.BytesIO(data), force=True).file_meta.TransferSyntaxUID
        if syntax in LISTENER_SYNTAXES:
            found.append((name, bytes([LISTENER_SYNTAXES.index(syntax)]) + data[144 + meta_length:]))
    return found


def photo_seeds() -> Iterator[tuple[str, bytes]]:
    """Real small JPEGs as they are, and real PNGs cut down, plus a PNG with text chunks."""
    data = shared_data()
    for folder, count in (("fundus/eyepacs-256/images", 3), ("cxr/kermany-224/train/NORMAL", 2)):
        for path in sorted((data / folder).glob("*.jp*g"), key=lambda p: p.stat().st_size)[:count]:
            yield path.name, path.read_bytes()
    drive = sorted((data / "fundus" / "drive" / "training" / "images").glob("*.png"))[:1]
    nih = sorted((data / "cxr" / "samples").glob("nih-*.png"))[:1]
    for path in drive + nih:
        with PILImage.open(path) as image:
            image.thumbnail((64, 64))
            yield f"{path.stem}-64.png", _png(image)
            yield f"{path.stem}-64-text.png", _png(image, text={"Comment": "x" * 40, "Author": "kiosk"})
            yield f"{path.stem}-64-progressive.jpg", _jpeg(image.convert("RGB"), progressive=True)


def write_corpus(seeds: Iterable[tuple[str, bytes]], folder: Path) -> int:
    """Write seeds as files into ``folder``; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, data in seeds:
        (folder / name).write_bytes(data)
        count += 1
    return count


def _shrink(ds: Dataset) -> Dataset:
    """The dataset with its pixels decoded and sub-sampled to about SEED_SIDE rows."""
    pixels = ds.pixel_array
    step = max(1, min(pixels.shape[0], pixels.shape[1]) // SEED_SIDE)
    small = np.ascontiguousarray(pixels[::step, ::step][:SEED_SIDE, :SEED_SIDE])
    out = Dataset()
    out.update({e.tag: e for e in ds if e.tag.group != 0x7FE0 and e.tag != 0x00280008})
    out.Rows, out.Columns = int(small.shape[0]), int(small.shape[1])
    if out.get("BitsAllocated") == 16:
        small = small.astype(np.uint16 if out.get("PixelRepresentation", 0) == 0 else np.int16)
    out.PixelData = small.tobytes()
    out.file_meta = FileMetaDataset()
    out.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.1")
    out.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", pydicom.uid.generate_uid())
    if "PhotometricInterpretation" in out and out.PhotometricInterpretation.startswith("YBR"):
        out.PhotometricInterpretation = "RGB"  # the decoded array is RGB
    return out


def _write(ds: Dataset, syntax: str, *, part10: bool = True) -> bytes:
    ds = _copy(ds)
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    if part10:
        ds.save_as(buffer, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.save_as(buffer, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


def _compress(ds: Dataset, syntax: str) -> bytes:
    ds = _copy(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(syntax)
    return _write(ds, syntax)


def _jpeg_baseline(ds: Dataset) -> bytes:
    ds = _copy(ds)
    pixels = np.frombuffer(ds.PixelData, np.uint8).reshape(ds.Rows, ds.Columns)
    ds.PixelData = encapsulate([_jpeg(PILImage.fromarray(pixels))])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return _write(ds, JPEGBaseline8Bit)


def _copy(ds: Dataset) -> Dataset:
    return copy.deepcopy(ds)


def _png(image: PILImage.Image, text: dict[str, str] | None = None) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _jpeg(image: PILImage.Image, *, progressive: bool = False) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, progressive=progressive)
    return buffer.getvalue()


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/kiosk-seeds")  # noqa: S108
    print(write_corpus(dicom_seeds(), target / "dicom"), "DICOM seeds")
    print(write_corpus(photo_seeds(), target / "photo"), "photo seeds")
