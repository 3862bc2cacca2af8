"""The benchmark's real images: chest films as DICOM (uncompressed and JPEG 2000), fundus JPEGs.

Chest films come from ../shared/data: the real JPEG 2000 CR (``RG1_J2KI.dcm``) as it is, and the
other full-size films (DICOM or PNG/JPEG exports) re-wrapped here as CR DICOM twice, once
uncompressed (Explicit VR Little Endian) and once JPEG 2000 lossless, as an X-ray unit would
send them. The derived files are written under bench/results/inputs (ignored by git; never
copied into the repository). Fundus photographs are the full-size EyePACS JPEGs, used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

#: Full-size chest films (at least ~900 px): (name, path under ../shared/data)
CHEST_SOURCES = [
    ("rg1-cr", "dicom/RG1_J2KI.dcm"),
    ("siim-cr", "dicom/SIIM-CXR-no-pneumothorax.dcm"),
    ("jsrt-nodule", "cxr/samples/jsrt-JPCLN001-nodule.png"),
    ("covid-pneumonia", "cxr/samples/covid19-pneumonia-58-prior.jpg"),
    ("padchest", "cxr/samples/padchest-16747_3_1-unlabelled.jpg"),
]
CATEGORIES = ("chest-jpeg2000", "chest-uncompressed", "fundus-jpeg")


@dataclass(frozen=True)
class BenchImage:
    """One input file of the benchmark."""

    category: str
    path: Path
    task: str


def fundus_images() -> list[BenchImage]:
    """The full-size EyePACS photographs."""
    folder = DATA / "fundus" / "eyepacs-fullres"
    return [BenchImage("fundus-jpeg", p, "fundus-dr") for p in sorted(folder.glob("*.jpeg"))]


def chest_task(models: Path = ROOT / "models") -> str:
    """The task the (adult) films are screened with: the adults' model where it is shipped."""
    return "cxr-adult" if any(models.glob("cxr-adult-*/manifest.json")) else "cxr-pneumonia"


def chest_images(out: Path, task: str | None = None) -> list[BenchImage]:
    """Each chest film as uncompressed and JPEG 2000 DICOM (made once under ``out``)."""
    task = task or chest_task()
    out.mkdir(parents=True, exist_ok=True)
    images: list[BenchImage] = []
    for name, relative in CHEST_SOURCES:
        source = DATA / relative
        if not source.exists():
            continue
        native, j2k = out / f"{name}-uncompressed.dcm", out / f"{name}-j2k.dcm"
        if not (native.exists() and j2k.exists()):
            _write_pair(source, native, j2k)
        images += [BenchImage("chest-uncompressed", native, task),
                   BenchImage("chest-jpeg2000", j2k, task)]
    return images


def _write_pair(source: Path, native: Path, j2k: Path) -> None:
    """Write the film uncompressed and as JPEG 2000 (an original J2K file is kept as it is)."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    if source.suffix == ".dcm":
        ds = pydicom.dcmread(source)
        if ds.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"):
            j2k.write_bytes(source.read_bytes())
        else:
            twin = pydicom.dcmread(source)
            twin.compress(JPEG2000Lossless, ds.pixel_array)
            twin.save_as(j2k, enforce_file_format=True)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.save_as(native, enforce_file_format=True)
        return
    pixels = _grey(source)
    _chest_dataset(pixels).save_as(native, enforce_file_format=True)
    film = _chest_dataset(pixels)
    film.compress(JPEG2000Lossless, pixels)
    film.save_as(j2k, enforce_file_format=True)


def _grey(path: Path) -> np.ndarray:
    """An exported film as 8-bit grey."""
    from PIL import Image

    with Image.open(path) as opened:
        return np.asarray(opened.convert("L"))


def _chest_dataset(pixels: np.ndarray) -> Any:
    """A minimal CR chest DICOM dataset (MONOCHROME2, 8 bits) holding ``pixels``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1")  # CR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.PatientID, ds.PatientName = "BENCH", "Bench^Film"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return ds


def all_images(out: Path) -> list[BenchImage]:
    """Every benchmark input, chest films first."""
    return chest_images(out) + fundus_images()
