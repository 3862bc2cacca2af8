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
from typing import Any, Protocol

import pydicom
from pydicom.errors import InvalidDicomError

from kiosk.errors import IntakeError

LOG = logging.getLogger(__name__)


class Screener(Protocol):
    """What the worker needs of ``kiosk.pipeline.Pipeline``."""

    def screen(self, data: bytes, *, source: str = "", task: str | None = None,
               laterality: str | None = None) -> Any:
        """Screen one image; returns an ``ImageOutcome``."""
        ...


class Recorder(Protocol):
    """What the worker needs of ``kiosk.store.Store``."""

    def save_image(self, data: bytes, suffix: str) -> str: ...
    def upsert_patient(self, identifier: str, name: str, birth_date: str | None, sex: str | None,
                       *, actor: str) -> Any: ...
    def record_screening(self, patient_id: int, results: list[dict], *, actor: str,
                         image_shas: list[str], heatmap_shas: list[str | None]) -> Any: ...
    def audit(self, actor: str, action: str, *, patient_id: int | None = None,
              detail: str = "") -> None: ...


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


def _refusal(result: dict) -> IntakeError | None:
    """The intake refusal recorded in a result, if any."""
    error = result.get("error")
    if not error:
        return None
    if isinstance(error, dict):
        return IntakeError(str(error.get("message", "refused")), code=str(error.get("code", "refused")))
    return IntakeError(str(error), code="refused")


def _already_recorded(store: Recorder, image_sha: str) -> bool:
    """Whether a recorded screening already holds the image with this sha256."""
    find = getattr(store, "screening_for_image", None)
    if find is not None:
        return find(image_sha) is not None
    database = getattr(store, "db", None)
    if database is None:
        return False
    # the store's results table keeps each result's image sha256 (kiosk/store/records.py)
    with database.read() as conn:
        row = conn.execute("SELECT 1 FROM results WHERE image_sha = ? LIMIT 1", (image_sha,)).fetchone()
    return row is not None


def screen_spooled_film(path: Path, pipeline: Screener, store: Recorder) -> None:
    """Screen one spooled film and record it; raise ``IntakeError`` when it is refused."""
    data = path.read_bytes()
    film = read_header(data)
    if _already_recorded(store, hashlib.sha256(data).hexdigest()):
        # the same bytes again: a resend by the modality, or a crash after the screening was
        # recorded but before the spool file was removed; screening it twice would report twice
        store.audit(film.actor, "dicom_duplicate", detail=f"{film.sop_uid}: already screened")
        LOG.info("pushed film %s from %s was already screened; not again", film.sop_uid, film.actor)
        return
    source = f"dicom://{film.calling_ae or 'unknown'}/{film.sop_uid}"
    outcome = pipeline.screen(data, source=source)
    refusal = _refusal(outcome.result)
    if refusal is not None:
        store.audit(film.actor, "dicom_refused",
                    detail=f"{film.sop_uid}: {refusal.message} [{refusal.code}]")
        raise refusal
    image_sha = store.save_image(data, ".dcm")
    heatmap = outcome.heatmap_png
    heatmap_sha = store.save_image(heatmap, ".png") if heatmap else None
    patient = store.upsert_patient(film.patient_id, film.patient_name, film.birth_date, film.sex,
                                   actor=film.actor)
    store.record_screening(patient.id, [outcome.result], actor=film.actor,
                           image_shas=[image_sha], heatmap_shas=[heatmap_sha])
    LOG.info("pushed film %s from %s screened: %s", film.sop_uid, film.actor,
             outcome.result.get("verdict"))
