"""Screening a film the X-ray unit pushed: the same pipeline as every other image, then the store.

Runs in the spool worker (never in the DICOM handler). A film intake refuses (not a chest, a
header that contradicts its pixels, ...) raises an ``IntakeError`` carrying the reason, so the
worker moves it to ``spool/refused/`` and the refusal is written to the audit log; it is never
screened as something it is not.

A film is known by its SOP Instance UID and the sha256 of its pixels (the Pixel Data as sent,
native or encapsulated, with the attributes that say how to read it: rows, columns, bits,
photometric interpretation, ...), never by the spooled bytes, which carry the sender's AE
title: the same film sent again, from the same or another modality, is recorded once. The same
UID with other pixels is screened as a new film, with a warning on its results and a
``dicom_uid_conflict`` audit entry; it is never dropped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError

from kiosk import names, visit
from kiosk.errors import IntakeError
from kiosk.names import PersonName
from kiosk.pipeline import Pipeline
from kiosk.result import Result
from kiosk.store import ReceivedFilm, Store

LOG = logging.getLogger(__name__)


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


def _refusal(result: Result) -> IntakeError | None:
    """The intake refusal recorded in a result, if any."""
    error = result.get("error")
    if not error:
        return None
    return IntakeError(str(error.get("message", "refused")), code=str(error.get("code", "refused")))


def screen_spooled_film(path: Path, pipeline: Pipeline, store: Store) -> None:
    """Screen one spooled film and record it; raise ``IntakeError`` when it is refused."""
    data = path.read_bytes()
    film = read_header(data)
    known = film.sop_uid != "unknown"
    seen = visit.film_seen(store, film.sop_uid, film.pixel_sha256) if known else None
    earlier = seen.screening if seen is not None else None
    if earlier is None:  # films screened before the store knew received films (schema 3)
        earlier = visit.already_screened(store, hashlib.sha256(data).hexdigest())
    if earlier is not None:
        # the same film again: a resend by this or another modality, or a crash after the
        # screening was recorded but before the spool file was removed; twice would report twice
        store.audit(film.actor, "dicom_duplicate",
                    detail=f"{film.sop_uid}: already screened (screening {earlier})")
        LOG.info("pushed film %s from %s was already screened; not again", film.sop_uid, film.actor)
        return
    source = f"dicom://{film.calling_ae or 'unknown'}/{film.sop_uid}"
    screened = visit.screen(pipeline, [visit.Offered(data, source)])
    if seen is not None and seen.conflicts:
        _warn_uid_conflict(store, film, screened, seen.conflicts)
    refusal = _refusal(screened.outcomes[0][0].result)
    if refusal is not None:
        store.audit(film.actor, "dicom_refused",
                    detail=f"{film.sop_uid}: {refusal.message} [{refusal.code}]")
        raise refusal
    patient = store.upsert_patient(film.patient_id, film.patient_name, film.birth_date, film.sex,
                                   actor=film.actor)
    received = [ReceivedFilm(film.sop_uid, film.pixel_sha256, film.calling_ae)] if known else []
    screening = visit.record(store, patient.id, screened, actor=film.actor, films=received)
    LOG.info("pushed film %s from %s screened: %s", film.sop_uid, film.actor, screening.verdict)


def _warn_uid_conflict(store: Store, film: PushedFilm, screened: visit.Screened,
                       conflicts: list[int]) -> None:
    """A UID seen before with other pixels: say so on every result and in the audit log."""
    warning = visit.uid_conflict_warning(film.sop_uid, conflicts)
    for result in screened.results:
        result["warnings"].append(warning)
    store.audit(film.actor, "dicom_uid_conflict",
                detail=f"{film.sop_uid}: pixels differ from screening "
                       f"{', '.join(map(str, conflicts))}; screened as a new film")
    LOG.warning("pushed film %s from %s reuses a UID with other pixels", film.sop_uid, film.actor)
