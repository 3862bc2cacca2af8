"""Screening a visit and keeping it: the one home of the application's steps.

The web capture page, the DICOM listener's pushed films and ``kiosk screen`` all go through
here: ``check`` (the instant quality gate, no inference), ``screen`` (every image through every
task that fits it and the patient), ``record`` (images, heat-maps and results kept in one
screening) and ``seen_before`` / ``known_films`` (an image seen before is not screened twice,
whoever sends it again).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from kiosk import messages
from kiosk.config import Config
from kiosk.domain import ImageKind
from kiosk.errors import IntakeError, KioskError
from kiosk.intake import sniff_format
from kiosk.intake.header import PushedFilm, read_header
from kiosk.lifecycle import models as lineup
from kiosk.lifecycle import validation
from kiosk.pipeline import ImageOutcome, Pipeline, Shadow
from kiosk.result import Result
from kiosk.store import ReceivedFilm, Screening, Store


@dataclass(frozen=True)
class Offered:
    """One image offered for screening: its bytes, file name, and what it should be.

    ``kind`` is what the slot it was offered in expects (an eye photograph, a chest film);
    ``task`` names one task to run alone (the command line's ``--task``).
    """

    data: bytes
    name: str
    laterality: str | None = None
    kind: ImageKind | None = None
    task: str | None = None


@dataclass(frozen=True)
class Screened:
    """A visit screened: per offered image, one outcome per task that read it.

    ``shadow`` (the candidate bundles of the pipeline that screened it) reads the visit once it
    is recorded, at the patient's ``age``.
    """

    offered: list[Offered]
    outcomes: list[list[ImageOutcome]]
    shadow: Shadow | None = None
    age: float | None = None

    @property
    def results(self) -> list[Result]:
        """Every result of the visit, image by image, each knowing its image's index."""
        return [outcome.result for per_image in self.outcomes for outcome in per_image]

    def needs_retake(self) -> list[int]:
        """Indexes of the offered images refused by intake or judged ungradable."""
        return [index for index, per_image in enumerate(self.outcomes)
                if not gradable(per_image[0].result)]


class NothingOffered(KioskError):
    """A visit was sent for screening without any image."""

    code = "no_image"
    http_status = 400


class EmptyImage(KioskError):
    """An offered image has no bytes (an empty file in a slot)."""

    code = "empty_image"
    http_status = 400


class IncompleteVisit(KioskError):
    """A diabetic retinopathy screening lacks an eye and no reason was given for it."""

    code = "incomplete_visit"
    http_status = 422


#: What a missing eye is called in the reason kept with the visit.
EYE_NAMES = {"R": "Right eye", "L": "Left eye"}


class Keeper(Protocol):
    """What recording a visit needs of the store (``kiosk.store.Store``)."""

    def save_image(self, data: bytes, suffix: str) -> str: ...
    def record_screening(self, patient_id: int, results: list[Result], *, actor: str,
                         image_shas: list[str], heatmap_shas: list[str | None],
                         films: list[ReceivedFilm] | None = None,
                         form_token: str | None = None) -> Screening: ...


def gradable(result: Result) -> bool:
    """Whether an image got past intake and the quality gate."""
    quality = result.get("quality")
    return not result.get("error") and quality is not None and quality["gradable"]


def check(pipeline: Pipeline, offered: Sequence[Offered]) -> list[Result]:
    """The instant gate (intake and quality, no inference), one result per offered image."""
    require(offered)
    return [pipeline.check(item.data, source=item.name, task=item.task, kind=item.kind).result
            for item in offered]


def screen(pipeline: Pipeline, offered: Sequence[Offered], *, age: float | None = None,
           heatmap: bool = True) -> Screened:
    """Screen every offered image with every task that fits it and the patient's age.

    One decode per image: the pipeline stops at the quality step for an ungradable image, so
    its gate answer comes from the same pass that screens the gradable ones. The caller records
    nothing while any retake is needed.
    """
    require(offered)
    outcomes = [pipeline.screen(item.data, source=item.name, task=item.task, kind=item.kind,
                                laterality=item.laterality, age_years=age, heatmap=heatmap)
                for item in offered]
    for index, per_image in enumerate(outcomes):
        for outcome in per_image:
            outcome.result["image"] = index
    return Screened(list(offered), outcomes, pipeline.shadow, age)


def screen_files(pipeline: Pipeline, files: Sequence[tuple[bytes, str]], *, task: str | None = None,
                 age: float | None = None, heatmap: bool = True) -> list[list[ImageOutcome]]:
    """Screen independent files (``kiosk screen``), inference batched per task."""
    return pipeline.screen_many(files, task=task, heatmap=heatmap, age_years=age)


def record(store: Keeper, patient_id: int, screened: Screened, *, actor: str,
           films: list[ReceivedFilm] | None = None, form_token: str | None = None) -> Screening:
    """Keep the images and heat-maps, and record one screening of the visit (with the received
    films it was made of and the capture form's token, so that they are known in the same
    transaction)."""
    image_shas = [store.save_image(item.data, suffix_of(item.data, item.name))
                  for item in screened.offered]
    shas: list[str] = []
    heatmaps: list[str | None] = []
    for index, per_image in enumerate(screened.outcomes):
        for outcome in per_image:
            shas.append(image_shas[index])
            png = outcome.heatmap_png
            heatmaps.append(store.save_image(png, ".png") if png else None)
    screening = store.record_screening(patient_id, screened.results, actor=actor,
                                       image_shas=shas, heatmap_shas=heatmaps, films=films,
                                       form_token=form_token)
    if screened.shadow is not None:  # after the record: the nurse never waits for a candidate
        screened.shadow.submit(screening.id, screened.outcomes, screened.age)
    return screening


def already_screened(store: Store, image_sha: str) -> int | None:
    """The screening that already holds this image (by sha256), if any."""
    return store.screening_for_image(image_sha)


@dataclass(frozen=True)
class FilmSeen:
    """What the kiosk already knows of a film's SOP Instance UID.

    ``screening`` is the screening of the very same film (same UID, same pixels): it is not
    screened again, whoever sends it. ``conflicts`` are screenings of other pixels under the same
    UID: the film is screened as a new one, with a warning on its results (never dropped).
    """

    screening: int | None
    conflicts: list[int]


def film_seen(store: Store, sop_uid: str, pixel_sha256: str) -> FilmSeen:
    """Whether a film with this SOP Instance UID was screened, with these pixels or others."""
    known = store.received_films(sop_uid)
    same = [f.screening_id for f in known if f.pixel_sha256 == pixel_sha256]
    return FilmSeen(same[0] if same else None,
                    [f.screening_id for f in known if f.pixel_sha256 != pixel_sha256
                     and f.screening_id is not None])


def seen_before(store: Store, data: bytes, film: PushedFilm | None) -> FilmSeen:
    """The one rule for an image sent again, whoever sends it (web, API, the DICOM listener,
    ``kiosk screen --keep``): a DICOM film with a UID by its UID and pixels (``film_seen``);
    then, and for photographs and films without a UID, by the file's sha256 (which also finds
    films kept before the store knew received films). ``film``: the header already read, or
    None for a photograph."""
    seen = (film_seen(store, film.sop_uid, film.pixel_sha256)
            if film is not None and film.sop_uid != "unknown" else FilmSeen(None, []))
    if seen.screening is None:
        earlier = already_screened(store, hashlib.sha256(data).hexdigest())
        if earlier is not None:
            return FilmSeen(earlier, seen.conflicts)
    return seen


def dicom_header(data: bytes) -> PushedFilm | None:
    """A DICOM file's header identity; None for a photograph or a file intake will refuse."""
    try:
        return read_header(data) if sniff_format(data) == "dicom" else None
    except IntakeError:
        return None


@dataclass
class Films:
    """What the store knows of a visit's images (``known_films``): DICOM films by their SOP
    Instance UIDs and pixels, photographs by their files."""

    received: list[ReceivedFilm] = field(default_factory=list)  # to record with the screening
    earlier: dict[int, int] = field(default_factory=dict)  # image -> its earlier screening
    conflicts: dict[int, tuple[str, list[int]]] = field(default_factory=dict)  # other pixels

    def warn_conflicts(self, screened: Screened) -> None:
        """A UID screened before with other pixels: say so on that film's results."""
        for index, (uid, earlier) in self.conflicts.items():
            for outcome in screened.outcomes[index]:
                outcome.result["warnings"].append(uid_conflict_warning(uid, earlier))


def known_films(store: Store, offered: Sequence[Offered], sender: str = "") -> Films:
    """What the store knows of each offered image (``seen_before``): an image screened before is
    never screened twice; a UID with other pixels is screened with a warning. An image that is
    unreadable is left to intake, which says what is wrong with it."""
    films = Films()
    for index, item in enumerate(offered):
        film = dicom_header(item.data)
        seen = seen_before(store, item.data, film)
        if film is not None and film.sop_uid != "unknown":
            films.received.append(ReceivedFilm(film.sop_uid, film.pixel_sha256, sender))
        if seen.screening is not None:
            films.earlier[index] = seen.screening
        elif film is not None and seen.conflicts:
            films.conflicts[index] = (film.sop_uid, seen.conflicts)
    return films


def uid_conflict_warning(sop_uid: str, conflicts: list[int]) -> str:
    """The warning a film carries when its UID was screened before with other pixels."""
    return messages.say("uid_reused", uid=sop_uid, earlier=", ".join(str(c) for c in conflicts))


def require(offered: Sequence[Offered]) -> None:
    """NothingOffered when no image came; EmptyImage when one of them is empty."""
    if not offered:
        raise NothingOffered("Choose a photograph or an X-ray first.")
    for item in offered:
        if not item.data:
            raise EmptyImage(f"The file {item.name!r} is empty: choose the photograph again.",
                             params={"name": item.name})


def missing_eyes(offered: Sequence[Offered]) -> list[str]:
    """The eyes ("R", "L") an eye screening lacks; none when no eye photograph was offered."""
    eyes = {item.laterality for item in offered if item.kind == "fundus" and item.laterality}
    return [eye for eye in ("R", "L") if eye not in eyes] if eyes else []


def require_complete(offered: Sequence[Offered], reasons: Mapping[str, str]) -> None:
    """A DR screening needs both eyes, or a recorded reason for the missing one."""
    unexplained = [eye for eye in missing_eyes(offered) if not reasons.get(eye, "").strip()]
    if unexplained:
        names = " and ".join(EYE_NAMES[eye].lower() for eye in unexplained)
        raise IncompleteVisit(f"Photograph the {names} too, or say why it cannot be photographed.",
                              params={"eyes": "".join(unexplained)})


def note_missing(screened: Screened, reasons: Mapping[str, str]) -> None:
    """Keep the reason for a missing eye with every eye result, so every report says so."""
    notes = [messages.say("eye_not_photographed", eye=EYE_NAMES[eye], reason=reasons[eye].strip())
             for eye in missing_eyes(screened.offered) if reasons.get(eye, "").strip()]
    for result in screened.results:
        if notes and result.get("kind") == "fundus":
            result["warnings"].extend(notes)


def suffix_of(data: bytes, name: str) -> str:
    """The suffix to keep an image under, from its first bytes (as intake reads them) or name."""
    try:
        return {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg"}[sniff_format(data)]
    except IntakeError:
        pass
    lowered = name.lower()
    for suffix in (".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if lowered.endswith(suffix):
            return suffix
    return ".bin"


def age_years(birth_date: str | None, today: date | None = None) -> float | None:
    """The patient's age in years from an ISO birth date (None when unknown or malformed)."""
    try:
        born = date.fromisoformat(birth_date) if birth_date else None
    except ValueError:
        return None
    if born is None:
        return None
    return ((today or date.today()) - born).days / 365.25


def setting_name(what: str, task: str) -> str:
    """The store's name of a clinic setting of one task: ``prevalence:fundus-dr``."""
    return f"{what}:{task}"


def apply_settings(store: Store, pipeline: Pipeline) -> None:
    """Give the pipeline what the admin set for each loaded task: prevalence, operating point,
    and a threshold calibrated at this site (kiosk/lifecycle/validation.py)."""
    for task in pipeline.tasks():
        legacy = "prevalence_" + task.replace("-", "_")  # the name stores used before 2026-12
        prevalence = store.get_setting(setting_name("prevalence", task)) or store.get_setting(legacy)
        if prevalence is not None:
            pipeline.set_prevalence(task, float(prevalence))
        point = store.get_setting(setting_name("operating_point", task))
        if point is not None and point in pipeline.operating_points(task):
            pipeline.set_operating_point(task, point)
    validation.put_in_force(store, pipeline)  # a site-calibrated threshold outranks the bundle's


class LazyPipeline:
    """The screening pipeline, loaded on first use with the clinic's settings applied.

    The one loader: the web app and the DICOM listener's worker share it, so a pushed film is
    screened at the prevalence and operating point the admin chose, as an upload is. It loads
    the active bundle of each task with the candidates in shadow (kiosk.lifecycle.models), and
    loads again when an admin promotes or rolls back (from the web app or ``kiosk models``).
    """

    def __init__(self, config: Config, store: Store, pipeline: Pipeline | None = None) -> None:
        self.config, self.store = config, store
        self._pipeline = pipeline
        self._lock = threading.Lock()
        self._stamp: str | None = None  # the lineup loaded; None: a pipeline given, kept as is
        self._retired: list[lineup.Retired] = []  # replaced; a request may still screen with one
        if pipeline is not None:
            apply_settings(store, pipeline)

    def __call__(self) -> Pipeline:
        """The pipeline, loading it (bundles verified, engines warmed) the first time and
        after the lineup of active bundles changed."""
        with self._lock:
            if self._pipeline is not None and self._stamp is not None \
                    and self._stamp != lineup.stamp(self.store):
                self._retired = [r for r in self._retired if not r.closed]
                self._retired.append(lineup.Retired(self._pipeline))
                self._pipeline = None
            if self._pipeline is None:
                current = lineup.survey(self.config, self.store)
                pipeline = lineup.open_pipeline(self.config, self.store, current,
                                                lambda loaded: apply_settings(self.store, loaded))
                apply_settings(self.store, pipeline)
                self._pipeline, self._stamp = pipeline, current.stamp
            return self._pipeline

    @property
    def loaded(self) -> bool:
        """Whether the pipeline exists (health reports without forcing a load)."""
        return self._pipeline is not None

    def close(self) -> None:
        """Release the pipeline if it was loaded, and those it replaced."""
        for retired in self._retired:
            retired.close()
        if self._pipeline is not None:
            self._pipeline.close()
