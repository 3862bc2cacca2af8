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

import logging
from pathlib import Path

from kiosk import visit
from kiosk.errors import IntakeError
from kiosk.intake.header import PushedFilm, read_header
from kiosk.pipeline import Pipeline
from kiosk.result import Result
from kiosk.store import ReceivedFilm, Store

LOG = logging.getLogger(__name__)
#: The header reading lives in kiosk/intake/header.py; these names stay importable from here.
__all__ = ["PushedFilm", "read_header", "screen_spooled_film"]


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
    seen = visit.seen_before(store, data, film)  # also films kept before schema 3, by file
    earlier = seen.screening
    if earlier is not None:
        # the same film again: a resend by this or another modality, or a crash after the
        # screening was recorded but before the spool file was removed; twice would report twice
        store.audit(film.actor, "dicom_duplicate",
                    detail=f"{film.sop_uid}: already screened (screening {earlier})")
        LOG.info("pushed film %s from %s was already screened; not again", film.sop_uid, film.actor)
        return
    source = f"dicom://{film.calling_ae or 'unknown'}/{film.sop_uid}"
    screened = visit.screen(pipeline, [visit.Offered(data, source)])
    if seen.conflicts:
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
