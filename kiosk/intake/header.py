"""A DICOM film's identity from its header alone (no pixels decoded): who sent it, whom it
shows, and the sha256 of its pixels.

A film is known by its SOP Instance UID and the sha256 of its pixels (the Pixel Data as sent,
native or encapsulated, with the attributes that say how to read it), never by the file's
bytes, which carry the sender's AE title. The DICOM listener's pushed films, ``kiosk screen
--keep`` and the web app's uploads all use it (``kiosk.visit.known_films``), so the same film is
screened once whoever sends it.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass

import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError

from kiosk import names
from kiosk.errors import IntakeError
from kiosk.names import PersonName


@dataclass(frozen=True)
class PushedFilm:
    """Who sent a film and whom it shows, from its header."""

    calling_ae: str
    sop_uid: str
    patient_id: str
    patient_name: PersonName
    birth_date: str | None
    sex: str | None
    pixel_sha256: str = ""

    @property
    def actor(self) -> str:
        """The audit actor: the sending modality."""
        return f"dicom:{self.calling_ae or 'unknown'}"


def read_header(data: bytes) -> PushedFilm:
    """The sender, patient and pixel hash of a spooled film (pixels are not decoded here)."""
    try:
        # pydicom parses lazily, so reading the elements is where malformed bytes surface too
        ds = pydicom.dcmread(io.BytesIO(data))
        return _film(ds)
    except (InvalidDicomError, ValueError, EOFError, OSError, struct.error, NotImplementedError,
            KeyError, TypeError, AttributeError, IndexError, OverflowError,
            BytesLengthException) as exc:
        raise IntakeError(f"The pushed file is not readable DICOM: {exc}", code="not_an_image") from exc


def _film(ds: pydicom.Dataset) -> PushedFilm:
    """The header fields of a parsed dataset."""
    meta = getattr(ds, "file_meta", None)
    sop_uid = str(ds.get("SOPInstanceUID", "")) or "unknown"
    birth = str(ds.get("PatientBirthDate", "") or "")
    sex = str(ds.get("PatientSex", "") or "").upper()[:1]
    name = names.from_dicom(str(ds.get("PatientName", "") or ""))
    return PushedFilm(
        calling_ae=str(meta.get("SourceApplicationEntityTitle", "") if meta else "").strip(),
        sop_uid=sop_uid,
        patient_id=str(ds.get("PatientID", "") or "").strip() or f"unidentified-{sop_uid}",
        patient_name=name if name.display else names.from_text("Unknown"),
        birth_date=f"{birth[:4]}-{birth[4:6]}-{birth[6:8]}" if len(birth) == 8 and birth.isdigit() else None,
        sex=sex if sex in ("M", "F", "O") else None,
        pixel_sha256=pixel_sha256(ds),
    )


#: The Image Pixel attributes that say how to read the Pixel Data: a film retagged (say
#: MONOCHROME2 to MONOCHROME1) over the same bytes is another image.
PIXEL_DESCRIPTION = ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
                     "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                     "PlanarConfiguration", "NumberOfFrames")


def pixel_sha256(ds: pydicom.Dataset) -> str:
    """The sha256 of a film's pixels: how to read them, then the Pixel Data as sent."""
    digest = hashlib.sha256()
    for keyword in PIXEL_DESCRIPTION:
        digest.update(f"{keyword}={ds.get(keyword, '')};".encode())
    pixels = ds.get("PixelData")
    digest.update(pixels if isinstance(pixels, bytes) else b"")
    return digest.hexdigest()
