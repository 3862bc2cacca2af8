"""Screening a film the X-ray unit pushed: the same pipeline as every other image, then the store.

Runs in the spool worker (never in the DICOM handler). A film intake refuses (not a chest, a
header that contradicts its pixels, ...) raises an ``IntakeError`` carrying the reason, so the
worker moves it to ``spool/refused/`` and the refusal is written to the audit log; it is never
screened as something it is not.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from kiosk import visit
from kiosk.errors import IntakeError
from kiosk.pipeline import Pipeline
from kiosk.result import Result
from kiosk.store import Store

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushedFilm:
    """Who sent a film and whom it shows, from its header."""

    calling_ae: str
    sop_uid: str
    patient_id: str
    patient_name: str
    birth_date: str | None
    sex: str | None

    @property
    def actor(self) -> str:
        """The audit actor: the sending modality."""
        return f"dicom:{self.calling_ae or 'unknown'}"


def read_header(data: bytes) -> PushedFilm:
    """The sender and patient of a spooled film (pixels are not decoded here)."""
    try:
        # pydicom parses lazily, so reading the elements is where malformed bytes surface too
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        return _film(ds)
    except (InvalidDicomError, ValueError, EOFError, OSError, struct.error, NotImplementedError,
            KeyError, TypeError, AttributeError, IndexError, OverflowError) as exc:
        raise IntakeError(f"The pushed file is not readable DICOM: {exc}", code="not_an_image") from exc


def _film(ds: pydicom.Dataset) -> PushedFilm:
    """The header fields of a parsed dataset."""
    meta = getattr(ds, "file_meta", None)
    sop_uid = str(ds.get("SOPInstanceUID", "")) or "unknown"
    birth = str(ds.get("PatientBirthDate", "") or "")
    sex = str(ds.get("PatientSex", "") or "").upper()[:1]
    return PushedFilm(
        calling_ae=str(meta.get("SourceApplicationEntityTitle", "") if meta else "").strip(),
        sop_uid=sop_uid,
        patient_id=str(ds.get("PatientID", "") or "").strip() or f"unidentified-{sop_uid}",
        patient_name=str(ds.get("PatientName", "") or "").replace("^", " ").strip() or "Unknown",
        birth_date=f"{birth[:4]}-{birth[4:6]}-{birth[6:8]}" if len(birth) == 8 and birth.isdigit() else None,
        sex=sex if sex in ("M", "F", "O") else None,
    )


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
    if visit.already_screened(store, hashlib.sha256(data).hexdigest()) is not None:
        # the same bytes again: a resend by the modality, or a crash after the screening was
        # recorded but before the spool file was removed; screening it twice would report twice
        store.audit(film.actor, "dicom_duplicate", detail=f"{film.sop_uid}: already screened")
        LOG.info("pushed film %s from %s was already screened; not again", film.sop_uid, film.actor)
        return
    source = f"dicom://{film.calling_ae or 'unknown'}/{film.sop_uid}"
    screened = visit.screen(pipeline, [visit.Offered(data, source)])
    refusal = _refusal(screened.outcomes[0][0].result)
    if refusal is not None:
        store.audit(film.actor, "dicom_refused",
                    detail=f"{film.sop_uid}: {refusal.message} [{refusal.code}]")
        raise refusal
    patient = store.upsert_patient(film.patient_id, film.patient_name, film.birth_date, film.sex,
                                   actor=film.actor)
    screening = visit.record(store, patient.id, screened, actor=film.actor)
    LOG.info("pushed film %s from %s screened: %s", film.sop_uid, film.actor, screening.verdict)
