"""``kiosk screen --keep``: record what the command line screens, as a pushed film is recorded.

Each screened file becomes one screening in the store (images, heat-maps, results with their
input features, outbox items), so that drift alarms (``kiosk drift``) and the admin pages see
it. The patient is the one named with ``--patient`` (and ``--name``); else, for a DICOM file,
the patient its header names, as the DICOM listener does (hardware/pushed.py); else an
unidentified patient per image ("unidentified-<sha256 of the file>", named "Unknown"). A refused
file is not kept, and a file already kept (same bytes, or a film with the same SOP Instance UID
and pixels) is not kept twice.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence

from kiosk import names, visit
from kiosk.intake.header import PushedFilm
from kiosk.pipeline import ImageOutcome
from kiosk.result import Result
from kiosk.store import ReceivedFilm, Store

#: The audit actor of screenings kept from the command line.
ACTOR = "cli:kiosk-screen"


def keep(store: Store, data: bytes, name: str, answers: Sequence[tuple[Result, bytes | None]],
         args: argparse.Namespace) -> int | None:
    """Record one screened file; the screening's id (None when refused or already kept)."""
    if answers[0][0]["error"]:
        return None
    film = visit.dicom_header(data)
    earlier = visit.seen_before(store, data, film).screening
    if earlier is not None:
        print(f"{name}: already kept as screening {earlier}; not recorded again", file=sys.stderr)
        return None
    patient = _patient(store, data, film, args)
    outcomes = [ImageOutcome(result, None, png) for result, png in answers]
    for outcome in outcomes:
        outcome.result["image"] = 0
    received = ([ReceivedFilm(film.sop_uid, film.pixel_sha256, "")]
                if film is not None and film.sop_uid != "unknown" else [])
    screened = visit.Screened([visit.Offered(data, name)], [outcomes])
    return visit.record(store, patient, screened, actor=ACTOR, films=received).id


def _patient(store: Store, data: bytes, film: PushedFilm | None, args: argparse.Namespace) -> int:
    """The store id of the patient the file is kept under (see the module's docstring)."""
    if args.patient:
        found = store.upsert_patient(args.patient, names.from_text(args.name or "Unknown"),
                                     None, None, actor=ACTOR)
    elif film is not None:
        found = store.upsert_patient(film.patient_id, film.patient_name, film.birth_date,
                                     film.sex, actor=ACTOR)
    else:
        identifier = f"unidentified-{hashlib.sha256(data).hexdigest()[:16]}"
        found = store.upsert_patient(identifier, names.from_text("Unknown"), None, None,
                                     actor=ACTOR)
    return found.id
