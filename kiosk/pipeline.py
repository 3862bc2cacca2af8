"""The one place that composes intake → quality → preprocess → engine → decide.

The CLI, the web app, the DICOM listener and the benchmark all screen through
:class:`Pipeline` (via :mod:`kiosk.visit`), made once at start-up by
:meth:`Pipeline.from_config` (bundles verified, engines opened and warmed up). An image is
decoded and judged once, then read by every loaded task whose image kind and population fit the
image and the patient (kiosk/tasks.py): ``screen`` gives one :class:`ImageOutcome` per task, each
holding a result record (kiosk/result.py). A refused image is one result with ``verdict`` null
and ``error`` set, never an exception out of ``screen``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engines.base import Engine, open_engine
from engines.bundle import Bundle
from kiosk import decide, messages
from kiosk.bundles import describe_model, load_bundles, refused_entry
from kiosk.config import Config
from kiosk.domain import Image, ImageKind, QualityReport
from kiosk.errors import BundleError, IntakeError, KioskError
from kiosk.framing import laterality_from_name, network_box, working_copy
from kiosk.intake import IntakeLimits, read_image
from kiosk.intake.dicom import age_in_years
from kiosk.pixels.features import features_of
from kiosk.preprocess import prepare_batch
from kiosk.quality import assess
from kiosk.result import PatientRule, Result, SiteCalibration, source_of
from kiosk.sandbox import SandboxedIntake
from kiosk.tasks import Task, describe

log = logging.getLogger(__name__)

#: The name of the operating point a clinic calibrated on its own labelled images.
SITE_POINT = decide.SITE_POINT
#: Decode at least this many pixels on the shorter side: quality measures work at ~256 px.
QUALITY_SIDE = 256
#: What each kind of image is, in a sentence.
KIND_WORDS = {"fundus": "a fundus photograph", "cxr": "a chest film"}

Intake = Callable[..., Image]
#: Bundles chosen by the caller (kiosk.lifecycle: the active one per task) and why others failed.
Chosen = tuple[dict[str, Bundle], dict[Path, BundleError]]


@dataclass
class ImageOutcome:
    """What one task said about one image: the result record, the image, the heat-map PNG."""

    result: Result
    image: Image | None = None
    heatmap_png: bytes | None = None


@dataclass
class Model:
    """A verified bundle, the engine that runs it, and the task it describes."""

    bundle: Bundle
    engine: Engine

    @property
    def task(self) -> Task:
        """The task as the bundle's manifest describes it (registry defaults filled in)."""
        return describe(self.bundle.manifest)


@dataclass
class _Staged:
    """An image between quality and inference, for one task, with its partial result."""

    outcome: ImageOutcome
    task: str
    report: QualityReport
    age_years: float | None
    timings: dict[str, float] = field(default_factory=dict)


class Shadow(Protocol):
    """Candidate models that read a recorded screening's images unseen (kiosk.lifecycle.shadow)."""

    def submit(self, screening_id: int, outcomes: list[list[ImageOutcome]],
               age_years: float | None) -> None: ...
    def close(self) -> None: ...


class Pipeline:
    """Screens image bytes with the loaded bundles; safe to share between threads."""

    def __init__(self, config: Config, models: dict[str, Model], *, intake: Any = None,
                 refused: Sequence[dict[str, Any]] = ()) -> None:
        if not models:
            raise BundleError("no model bundle is loaded", code="no_model")
        self.config = config
        self.models = models
        self.refused = list(refused)
        self._sandbox = intake if intake is not None and hasattr(intake, "close") else None
        self._read: Intake = intake.read_image if hasattr(intake, "read_image") else (
            intake or read_image)
        self._limits = IntakeLimits.from_config(config)
        self._tasks = {name: model.task for name, model in models.items()}
        self._prevalence = {name: config.prevalence_for(name) or task.prevalence
                            for name, task in self._tasks.items()}
        self._points: dict[str, str | None] = {name: decide.default_point(m.bundle.manifest)
                                               for name, m in models.items()}
        #: Operating points calibrated at this site (kiosk.lifecycle.validation), by task.
        self._site: dict[str, dict[str, Any]] = {}
        #: Candidate bundles in shadow (set by kiosk.lifecycle.models.open_pipeline), if any.
        self.shadow: Shadow | None = None

    @classmethod
    def from_config(cls, config: Config, chosen: Chosen | None = None) -> Pipeline:
        """Open and warm up the engines of the ``chosen`` bundles (by default, the newest
        verified bundle per task in KIOSK_MODELS_DIR)."""
        bundles, refusals = chosen if chosen is not None else load_bundles(config)
        models = {task: Model(bundle, open_engine(bundle, config)) for task, bundle in bundles.items()}
        return cls(config, models, intake=SandboxedIntake.from_config(config),
                   refused=[refused_entry(path, exc) for path, exc in refusals.items()])

    def close(self) -> None:
        """Finish the shadow readings, stop the decode workers (if any), release the engines."""
        if self.shadow is not None:
            self.shadow.close()
        if self._sandbox is not None:
            self._sandbox.close()
        for model in self.models.values():
            model.engine.close()

    def tasks(self) -> list[str]:
        """The loaded tasks, e.g. ["cxr-adult", "cxr-pneumonia", "fundus-dr"]."""
        return sorted(self.models)

    def task(self, name: str) -> Task:
        """What the kiosk knows of a loaded task (KeyError when it is not loaded)."""
        return self._tasks[name]

    def prevalence(self, task: str) -> float:
        """The prevalence in force for a task's PPV/NPV."""
        return self._prevalence[task]

    def set_prevalence(self, task: str, prevalence: float) -> None:
        """Use another expected prevalence for PPV/NPV (the admin changed the clinic's figure)."""
        if not 0.0 < prevalence < 1.0:
            raise KioskError(f"prevalence must be between 0 and 1, got {prevalence}",
                             code="bad_setting")
        self._prevalence[task] = prevalence

    def operating_point(self, task: str) -> str | None:
        """The named operating point in force for a task (None: the bundle names none)."""
        return self._points[task]

    def operating_points(self, task: str) -> list[str]:
        """The bundle's named operating points, and "site" when one was calibrated here."""
        return decide.point_names(self.manifest(task))

    def set_site_point(self, task: str, point: dict[str, Any] | None) -> None:
        """Offer a threshold calibrated at this site as the named point "site" and use it, or
        withdraw it (None: the bundle's default point is used again)."""
        if point is None:
            self._site.pop(task, None)
            if self._points[task] == SITE_POINT:
                self._points[task] = decide.default_point(self.models[task].bundle.manifest)
            return
        self._site[task] = dict(point)
        self._points[task] = SITE_POINT

    def manifest(self, task: str) -> dict[str, Any]:
        """The task's manifest, with the site's operating point added when there is one."""
        manifest = self.models[task].bundle.manifest
        site = self._site.get(task)
        return manifest if site is None else decide.with_point(manifest, SITE_POINT, site)

    def set_operating_point(self, task: str, name: str) -> None:
        """Use another of the bundle's named operating points (the admin chose it)."""
        names = self.operating_points(task)
        if name not in names:
            raise KioskError(f"{task} has no operating point {name!r} (it has: "
                             f"{', '.join(names) or 'none'})", code="bad_setting")
        self._points[task] = name

    def check(self, data: bytes, *, source: str = "", task: str | None = None,
              kind: ImageKind | None = None) -> ImageOutcome:
        """Intake and quality only (no inference): the capture page's instant gate."""
        staged = self._stage(data, source, task, kind, None, None)
        if isinstance(staged, ImageOutcome):
            return staged
        first = staged[0]
        result = first.outcome.result
        result["verdict"] = None if first.report.gradable else decide.UNGRADABLE
        result["timings_ms"].update(preprocess=0.0, infer=0.0)
        result["timings_ms"]["total"] = round(sum(first.timings.values()), 2)
        return first.outcome

    def screen(self, data: bytes, *, source: str = "", task: str | None = None,
               kind: ImageKind | None = None, laterality: str | None = None, heatmap: bool = True,
               age_years: float | None = None) -> list[ImageOutcome]:
        """Screen one image with every task that fits it: one outcome per task.

        ``task`` runs that task alone; ``kind`` says what the image should be (the slot it was
        offered in). ``age_years`` (from the patient record; else the DICOM header's) chooses
        between tasks trained for different populations and flags a result outside its model's
        population.
        """
        staged = self._stage(data, source, task, kind, laterality, age_years)
        if isinstance(staged, ImageOutcome):
            return [staged]
        for one in staged:
            self._infer([one], heatmap)
        return [self._finish(one) for one in staged]

    def screen_many(self, items: Sequence[tuple[bytes, str]], *, task: str | None = None,
                    heatmap: bool = True, age_years: float | None = None) -> list[list[ImageOutcome]]:
        """Screen (bytes, source) pairs, running inference in batches of KIOSK_BATCH_SIZE."""
        staged = [self._stage(data, source, task, None, None, age_years) for data, source in items]
        waiting = [s for group in staged if not isinstance(group, ImageOutcome) for s in group]
        size = max(1, self.config.batch_size)
        for name in sorted({s.task for s in waiting}):
            same = [s for s in waiting if s.task == name]
            for start in range(0, len(same), size):
                self._infer(same[start : start + size], heatmap)
        return [[group] if isinstance(group, ImageOutcome) else [self._finish(s) for s in group]
                for group in staged]

    def read_again(self, outcomes: Sequence[ImageOutcome], *,
                   age_years: float | None = None) -> list[ImageOutcome | None]:
        """This pipeline's models reading images another pipeline decoded and judged gradable
        (a candidate in shadow): no decode, no quality step, no heat-map. One outcome per given
        outcome, None where its image was not gradable or its task is not loaded here."""
        staged = [self._restage(outcome, age_years) for outcome in outcomes]
        waiting = [s for s in staged if s is not None]
        size = max(1, self.config.batch_size)
        for name in sorted({s.task for s in waiting}):
            same = [s for s in waiting if s.task == name]
            for start in range(0, len(same), size):
                self._infer(same[start : start + size], False)
        return [None if s is None else self._finish(s) for s in staged]

    def _restage(self, outcome: ImageOutcome, age_years: float | None) -> _Staged | None:
        """Another pipeline's gradable image, staged for this pipeline's model of its task."""
        result, image = outcome.result, outcome.image
        task, quality = str(result.get("task")), result.get("quality")
        if image is None or task not in self.models or not (quality and quality["gradable"]):
            return None
        report = QualityReport(gradable=True, measures=dict(quality["measures"]))
        blank = self._blank_result(str(result.get("input", "")), task, image, report,
                                   result.get("laterality"), {})
        return _Staged(ImageOutcome(blank, image), task, report, age_years)

    def describe(self) -> list[dict[str, Any]]:
        """Per bundle: identity, signature, back-end really in use, warm-up latency, intended use."""
        described = [describe_model(model.bundle, model.engine, self._points[name])
                     for name, model in sorted(self.models.items())]
        return described + [dict(entry) for entry in self.refused]

    # -- the steps -------------------------------------------------------------------------

    def _stage(self, data: bytes, source: str, task: str | None, kind: ImageKind | None,
               laterality: str | None, age_years: float | None) -> list[_Staged] | ImageOutcome:
        """Intake and quality for one image, staged for each task that will read it."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        try:
            target = self._target_size(task)
            image = working_copy(self._read(data, source=source, limits=self._limits,
                                            kind_hint=self._kind_of(task) or kind,
                                            target_size=target), target)
            timings["decode"] = _ms(start)
            if age_years is None and image.meta.get("format") == "dicom":
                age_years = age_in_years(image.meta)
            names = self._tasks_for(image, task, kind, age_years)
            begun = time.perf_counter()
            report = assess(image)
            timings["quality"] = _ms(begun)
        except KioskError as exc:
            return _error_outcome(source, task, exc, _ms(start))
        side = laterality or image.laterality or laterality_from_name(source)
        return [_Staged(ImageOutcome(self._blank_result(source, name, image, report, side, timings),
                                     image), name, report, age_years, dict(timings))
                for name in names]

    def _kind_of(self, task: str | None) -> ImageKind | None:
        """The image kind a named task reads (a loaded task's, else its id's prefix)."""
        if task is None:
            return None
        if task in self._tasks:
            return self._tasks[task].kind
        prefix = task.split("-", 1)[0]
        return prefix if prefix in ("fundus", "cxr") else None  # type: ignore[return-value]

    def _tasks_for(self, image: Image, task: str | None, kind: ImageKind | None,
                   age_years: float | None) -> list[str]:
        """The tasks that read this image: its kind's, chosen by the patient's age.

        A task named for the image's kind runs alone. Otherwise every loaded task of the kind
        whose population fits the age runs (and those that name no population); when none fits,
        all of them run and each result needs a clinician; when the age is unknown, all run and
        the result says so. An adult is never cleared by a children's model, nor a child by an
        adults' one.
        """
        if image.kind is None:
            raise IntakeError("Cannot tell whether this is a fundus photograph or a chest film: "
                              f"choose the task ({', '.join(self.tasks())}).", code="unknown_task")
        if task is not None and self._kind_of(task) == image.kind:
            if task not in self.models:
                raise KioskError(f"No model is loaded for {task!r} (loaded: "
                                 f"{', '.join(self.tasks())}).", code="no_model")
            return [task]
        candidates = [name for name in self.tasks() if self._tasks[name].kind == image.kind]
        if not candidates:
            what = "fundus photographs" if image.kind == "fundus" else "chest films"
            raise KioskError(f"This is one of the {what}, and no model for them is loaded "
                             f"(loaded: {', '.join(self.tasks())}).", code="no_model")
        expected = self._kind_of(task) or kind
        if expected is not None and expected != image.kind:
            image.warnings.append(messages.say("other_kind", found=KIND_WORDS[image.kind],
                                               expected=KIND_WORDS[expected],
                                               tasks=", ".join(candidates)))
        return self._by_population(image, candidates, age_years)

    def _by_population(self, image: Image, candidates: list[str], age_years: float | None) -> list[str]:
        """The candidates whose population fits the age (see ``_tasks_for``)."""
        fits = {name: self._tasks[name].fits(age_years) for name in candidates}
        chosen = [name for name in candidates if fits[name] is not False]
        if age_years is not None and not any(fits[name] for name in chosen):
            return candidates  # nobody fits: every result will need a clinician
        described = [name for name in chosen if self._tasks[name].population is not None]
        if age_years is None and len(described) > 1:
            titles = " and ".join(self._tasks[name].title for name in described)
            image.warnings.append(messages.say("age_unknown", titles=titles))
        return chosen

    def _target_size(self, task: str | None) -> int:
        """The smallest side intake may decode to for this task (or any loaded task)."""
        sizes = [int(m.bundle.input_spec["size"]) for name, m in self.models.items()
                 if task is None or name == task]
        return max([QUALITY_SIDE, *sizes])

    def _blank_result(self, source: str, task: str, image: Image, report: QualityReport,
                      laterality: str | None, timings: dict[str, float]) -> Result:
        """The result record before inference (verdict still null)."""
        model, described = self.models[task], self._tasks[task]
        bundle = model.bundle
        result: Result = {
            "input": source, "task": task, "kind": image.kind, "title": described.title,
            "verdict": None, "score": None, "findings": [], "quality": report.to_dict(),  # type: ignore[typeddict-item]
            "model": {"id": bundle.task, "version": bundle.version, "sha256": bundle.sha256,
                      "title": described.title,
                      "population": described.population.to_dict() if described.population else None,
                      "operating_point": self._points[task]},
            "backend": model.engine.name, "laterality": laterality, "priority": 0,
            "timings_ms": dict(timings), "warnings": list(image.warnings), "error": None,
            "referral": {"to": described.referral.to, "urgency": described.referral.urgency,
                         "within": described.referral.within},
            "codes": described.result_codes(laterality),
        }
        film = source_of(image.meta)
        if film is not None:
            result["source"] = film
        result["inputs"] = features_of(image)
        site = self._site.get(task)
        if site is not None and self._points[task] == SITE_POINT and result["model"] is not None:
            result["model"]["site_calibration"] = SiteCalibration(
                date=str(site["calibrated"]), n_positive=int(site["n_positive"]),
                n_negative=int(site["n_negative"]), threshold=float(site["threshold"]))
        return result

    def _infer(self, batch: list[_Staged], heatmap: bool) -> None:
        """Preprocess, run and decide a batch of images of one task (ungradable ones skip)."""
        gradable = [s for s in batch if s.report.gradable and s.outcome.image is not None]
        if not gradable:
            return
        model = self.models[gradable[0].task]
        start = time.perf_counter()
        tensor = prepare_batch([s.outcome.image for s in gradable if s.outcome.image is not None],
                               model.bundle.input_spec)
        preprocess_ms = _ms(start) / len(gradable)
        begun = time.perf_counter()
        try:
            outputs = model.engine.infer(tensor)
        except KioskError as exc:
            for s in gradable:
                s.outcome.result["error"] = exc.to_dict()
            return
        infer_ms = _ms(begun) / len(gradable)
        for index, s in enumerate(gradable):
            s.timings.update(preprocess=round(preprocess_ms, 2), infer=round(infer_ms, 2))
            self._decide(s, model, outputs, index, heatmap)

    def _decide(self, staged: _Staged, model: Model, outputs: dict[str, np.ndarray], index: int,
                heatmap: bool) -> None:
        """Findings, verdict, priority and heat-map for one image of a batch."""
        manifest = self.manifest(staged.task)
        point = self._points[staged.task]
        logits = outputs[model.bundle.output_names[0]][index]
        probs = decide.probabilities(logits[None, :], manifest)[0]
        findings = decide.findings_for(probs, manifest, self._prevalence[staged.task], point)
        result = staged.outcome.result
        result["findings"], result["score"] = findings, decide.score(findings)
        result["verdict"] = decide.verdict(findings, gradable=True)
        result["priority"] = decide.priority(findings, manifest)
        rule = decide.patient_rule(manifest, point)
        if rule is not None:
            result["patient_rule"] = PatientRule(**rule)  # type: ignore[typeddict-item]
        cam_name = manifest["outputs"].get("cam")
        image = staged.outcome.image
        if heatmap and cam_name and cam_name in outputs and image is not None:
            label = decide.cam_label(findings)
            channel = model.bundle.labels.index(label) if label else 0
            box = network_box(image, model.bundle.input_spec)
            staged.outcome.heatmap_png = decide.heatmap_png(image.pixels,
                                                            outputs[cam_name][index, channel], box)

    def _finish(self, staged: _Staged) -> ImageOutcome:
        """Close a result: ungradable when quality failed, the population check, timings."""
        result = staged.outcome.result
        if not staged.report.gradable:
            result["verdict"] = decide.UNGRADABLE
            staged.timings.update(preprocess=0.0, infer=0.0)
        population = self._tasks[staged.task].population
        warning = decide.population_warning(population, staged.age_years)
        if warning is not None and result["verdict"] is not None:
            result["warnings"].append(warning)
            result["reader_required"] = warning
        result["timings_ms"] = {**staged.timings,
                                "total": round(sum(staged.timings.values()), 2)}
        return staged.outcome


def _ms(start: float) -> float:
    """Milliseconds since ``start`` (a perf_counter value), rounded for the JSON."""
    return round((time.perf_counter() - start) * 1000.0, 2)


def _error_outcome(source: str, task: str | None, exc: KioskError, total_ms: float) -> ImageOutcome:
    """The result of an image that was refused before inference."""
    result: Result = {
        "input": source, "task": task, "verdict": None, "score": None, "findings": [],
        "quality": None, "model": None, "backend": None, "laterality": None, "priority": 0,
        "timings_ms": {"decode": total_ms, "quality": 0.0, "preprocess": 0.0, "infer": 0.0,
                       "total": total_ms},
        "warnings": [], "error": exc.to_dict()}
    return ImageOutcome(result)
