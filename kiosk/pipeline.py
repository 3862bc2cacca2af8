"""The one place that composes intake → quality → preprocess → engine → decide.

The CLI, the web app, the DICOM listener and the benchmark all screen through
:class:`Pipeline`, made once at start-up by :meth:`Pipeline.from_config` (bundles verified,
engines opened and warmed up). Each image gives an :class:`ImageOutcome` holding the result JSON
of docs/interfaces.md; a refused image is a result with ``verdict`` null and ``error`` set,
never an exception out of ``screen``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine, open_engine
from engines.bundle import Bundle, load_newest
from kiosk import decide
from kiosk.config import Config
from kiosk.domain import TASK_KIND, Image, ImageKind, QualityReport
from kiosk.errors import BundleError, IntakeError, KioskError

log = logging.getLogger(__name__)

#: Decode at least this many pixels on the shorter side: quality measures work at ~256 px.
QUALITY_SIDE = 256
#: Words in a file name that say which eye a photograph shows.
LATERALITY_WORDS = {"left": "L", "os": "L", "right": "R", "od": "R"}

Intake = Callable[..., Image]


@dataclass
class ImageOutcome:
    """One screened (or refused) image: the result JSON, the decoded image, the heat-map PNG."""

    result: dict[str, Any]
    image: Image | None = None
    heatmap_png: bytes | None = None


@dataclass
class Model:
    """A verified bundle and the engine that runs it."""

    bundle: Bundle
    engine: Engine


@dataclass
class _Staged:
    """An image between quality and inference, with its partial result."""

    outcome: ImageOutcome
    task: str
    report: QualityReport
    timings: dict[str, float] = field(default_factory=dict)


def kind_of_task(task: str) -> ImageKind | None:
    """The image kind a task reads: known tasks, else the prefix (``cxr-…``, ``fundus-…``)."""
    if task in TASK_KIND:
        return TASK_KIND[task]
    prefix = task.split("-", 1)[0]
    return prefix if prefix in ("fundus", "cxr") else None  # type: ignore[return-value]


def laterality_from_name(source: str) -> str | None:
    """'L' or 'R' when a file name says left/right (or OS/OD) as a separate word."""
    stem = re.split(r"[\\/]", source)[-1].rsplit(".", 1)[0].lower()
    found = {LATERALITY_WORDS[w] for w in re.split(r"[^a-z]+", stem) if w in LATERALITY_WORDS}
    return found.pop() if len(found) == 1 else None


def working_copy(image: Image, target: int) -> Image:
    """The image shrunk (area-averaged) to twice ``target`` on its shorter side when far larger.

    A JPEG or JPEG 2000 is already decoded near that size; an uncompressed film or PNG arrives
    at full size. Shrinking it here makes quality, preprocessing and the heat-map cost the same
    whatever the encoding, and judges the same film alike however it was sent.
    """
    import cv2

    shorter = min(image.size)
    if shorter <= 2 * target:
        return image
    factor = 2 * target / shorter
    rows, columns = image.size
    size = (max(1, round(columns * factor)), max(1, round(rows * factor)))
    pixels = cv2.resize(image.pixels, size, interpolation=cv2.INTER_AREA)
    return replace(image, pixels=pixels)


def _ms(start: float) -> float:
    """Milliseconds since ``start`` (a perf_counter value), rounded for the JSON."""
    return round((time.perf_counter() - start) * 1000.0, 2)


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
            intake or _in_process_intake())
        self._limits = _limits(config)
        self._prevalence = {task: _default_prevalence(config, model.bundle)
                            for task, model in models.items()}

    @classmethod
    def from_config(cls, config: Config) -> Pipeline:
        """Verify and load every bundle in KIOSK_MODELS_DIR, open and warm up their engines."""
        bundles, refused = _load_bundles(config)
        models = {task: Model(bundle, open_engine(bundle, config)) for task, bundle in bundles.items()}
        from kiosk.sandbox import SandboxedIntake

        return cls(config, models, intake=SandboxedIntake.from_config(config), refused=refused)

    def close(self) -> None:
        """Stop the decode workers (if any) and release the engines."""
        if self._sandbox is not None:
            self._sandbox.close()
        for model in self.models.values():
            model.engine.close()

    def tasks(self) -> list[str]:
        """The loaded tasks, e.g. ["cxr-pneumonia", "fundus-dr"]."""
        return sorted(self.models)

    def set_prevalence(self, task: str, prevalence: float) -> None:
        """Use another expected prevalence for PPV/NPV (the admin changed the clinic's figure)."""
        if not 0.0 < prevalence < 1.0:
            raise KioskError(f"prevalence must be between 0 and 1, got {prevalence}",
                             code="bad_setting")
        self._prevalence[task] = prevalence

    def check(self, data: bytes, *, source: str = "", task: str | None = None) -> ImageOutcome:
        """Intake and quality only (no inference): the capture page's instant gate."""
        staged = self._stage(data, source, task, None)
        if isinstance(staged, ImageOutcome):
            return staged
        result = staged.outcome.result
        result["verdict"] = None if staged.report.gradable else decide.UNGRADABLE
        result["timings_ms"].update(preprocess=0.0, infer=0.0)
        result["timings_ms"]["total"] = round(sum(staged.timings.values()), 2)
        return staged.outcome

    def screen(self, data: bytes, *, source: str = "", task: str | None = None,
               laterality: str | None = None, heatmap: bool = True,
               age_years: float | None = None) -> ImageOutcome:
        """Screen one image end to end (``age_years`` checks the model's trained population)."""
        staged = self._stage(data, source, task, laterality)
        if isinstance(staged, ImageOutcome):
            return staged
        self._infer([staged], heatmap)
        self._check_population(staged, age_years)
        return staged.outcome

    def screen_many(self, items: Sequence[tuple[bytes, str]], *, task: str | None = None,
                    heatmap: bool = True) -> list[ImageOutcome]:
        """Screen (bytes, source) pairs, running inference in batches of KIOSK_BATCH_SIZE."""
        staged = [self._stage(data, source, task, None) for data, source in items]
        waiting = [s for s in staged if isinstance(s, _Staged) and s.report.gradable]
        size = max(1, self.config.batch_size)
        for name in sorted({s.task for s in waiting}):
            same = [s for s in waiting if s.task == name]
            for start in range(0, len(same), size):
                self._infer(same[start : start + size], heatmap)
        for s in staged:
            if isinstance(s, _Staged) and not s.report.gradable:
                self._finish_ungradable(s)
            elif isinstance(s, _Staged):
                self._check_population(s, None)
        return [s if isinstance(s, ImageOutcome) else s.outcome for s in staged]

    def describe(self) -> list[dict[str, Any]]:
        """Per bundle: identity, signature, back-end really in use, warm-up latency, intended use."""
        described = [_describe(model) for _, model in sorted(self.models.items())]
        return described + [dict(entry) for entry in self.refused]

    # -- the steps -------------------------------------------------------------------------

    def _stage(self, data: bytes, source: str, task: str | None,
               laterality: str | None) -> _Staged | ImageOutcome:
        """Intake and quality for one image; an ImageOutcome with the error when refused."""
        from kiosk.quality import assess

        timings: dict[str, float] = {}
        start = time.perf_counter()
        try:
            target = self._target_size(task)
            image = working_copy(self._read(data, source=source, limits=self._limits,
                                            kind_hint=kind_of_task(task) if task else None,
                                            target_size=target), target)
            timings["decode"] = _ms(start)
            name = self._task_for(image, task)
            begun = time.perf_counter()
            report = assess(image)
            timings["quality"] = _ms(begun)
        except KioskError as exc:
            return _error_outcome(source, task, exc, _ms(start))
        side = laterality or image.laterality or laterality_from_name(source)
        result = self._blank_result(source, name, image, report, side, timings)
        return _Staged(ImageOutcome(result, image), name, report, timings)

    def _task_for(self, image: Image, task: str | None) -> str:
        """The task for a decoded image: the DICOM modality or detected kind rules over --task."""
        if image.kind is None:
            raise IntakeError("Cannot tell whether this is a fundus photograph or a chest film: "
                              f"choose the task ({', '.join(self.tasks())}).", code="unknown_task")
        if task is not None and kind_of_task(task) == image.kind:
            if task not in self.models:
                raise KioskError(f"No model is loaded for {task!r} (loaded: "
                                 f"{', '.join(self.tasks())}).", code="no_model")
            return task
        matches = [name for name in self.tasks() if kind_of_task(name) == image.kind]
        if not matches:
            what = "fundus photographs" if image.kind == "fundus" else "chest films"
            raise KioskError(f"This is one of the {what}, and no model for them is loaded "
                             f"(loaded: {', '.join(self.tasks())}).", code="no_model")
        if task is not None:
            image.warnings.append(f"The image is a {image.kind} image, not what {task!r} reads: "
                                  f"screened as {matches[0]}.")
        return matches[0]

    def _check_population(self, staged: _Staged, age_years: float | None) -> None:
        """Flag a result whose patient lies outside the ages its model was trained on.

        The age is the one given (from the patient record) or else the DICOM header's; such a
        result keeps the model's findings but needs a clinician to read it (``reader_required``),
        and a screening with one is referred for examination rather than cleared.
        """
        meta = staged.outcome.image.meta if staged.outcome.image is not None else {}
        if age_years is None and meta.get("format") == "dicom":
            from kiosk.intake.dicom import age_in_years

            age_years = age_in_years(meta)
        population = self.models[staged.task].bundle.manifest.get("population")
        warning = decide.population_warning(population, age_years)
        if warning is not None and staged.outcome.result.get("verdict") is not None:
            staged.outcome.result["warnings"].append(warning)
            staged.outcome.result["reader_required"] = warning

    def _target_size(self, task: str | None) -> int:
        """The smallest side intake may decode to for this task (or any loaded task)."""
        sizes = [int(m.bundle.input_spec["size"]) for name, m in self.models.items()
                 if task is None or name == task]
        return max([QUALITY_SIDE, *sizes])

    def _blank_result(self, source: str, task: str, image: Image, report: QualityReport,
                      laterality: str | None, timings: dict[str, float]) -> dict[str, Any]:
        """The result JSON before inference (verdict still null)."""
        model = self.models[task]
        bundle = model.bundle
        return {
            "input": source, "task": task, "verdict": None, "score": None, "findings": [],
            "quality": report.to_dict(),
            "model": {"id": bundle.task, "version": bundle.version, "sha256": bundle.sha256},
            "backend": model.engine.name, "laterality": laterality, "priority": 0,
            "timings_ms": timings, "warnings": list(image.warnings), "error": None,
        }

    def _infer(self, batch: list[_Staged], heatmap: bool) -> None:
        """Preprocess, run and decide a batch of gradable images of one task."""
        from kiosk.preprocess import prepare_batch

        gradable = [s for s in batch if s.report.gradable]
        for s in batch:
            if not s.report.gradable:
                self._finish_ungradable(s)
        if not gradable:
            return
        model = self.models[gradable[0].task]
        start = time.perf_counter()
        images = [s.outcome.image for s in gradable if s.outcome.image is not None]
        tensor = prepare_batch(images, model.bundle.input_spec)
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
        manifest = model.bundle.manifest
        logits = outputs[model.bundle.output_names[0]][index]
        probs = decide.probabilities(logits[None, :], manifest)[0]
        findings = decide.findings_for(probs, manifest, self._prevalence[staged.task])
        result = staged.outcome.result
        result.update(findings=findings, score=decide.score(findings),
                      verdict=decide.verdict(findings, gradable=True),
                      priority=decide.priority(findings, manifest))
        cam_name = manifest["outputs"].get("cam")
        image = staged.outcome.image
        if heatmap and cam_name and cam_name in outputs and image is not None:
            label = decide.cam_label(findings)
            channel = model.bundle.labels.index(label) if label else 0
            box = _network_box(image, model.bundle.input_spec)
            staged.outcome.heatmap_png = decide.heatmap_png(image.pixels,
                                                            outputs[cam_name][index, channel], box)
        result["timings_ms"]["total"] = round(sum(staged.timings.values()), 2)

    def _finish_ungradable(self, staged: _Staged) -> None:
        """An ungradable image: no inference, the quality reasons say what to do."""
        result = staged.outcome.result
        result["verdict"] = decide.UNGRADABLE
        result["timings_ms"].update(preprocess=0.0, infer=0.0)
        result["timings_ms"]["total"] = round(sum(staged.timings.values()), 2)


def _in_process_intake() -> Intake:
    """``kiosk.intake.read_image`` itself (tools and tests that need no decode sandbox)."""
    from kiosk.intake import read_image

    return read_image


def _limits(config: Config) -> Any:
    """The intake limits of the configuration."""
    from kiosk.intake import IntakeLimits

    return IntakeLimits.from_config(config)


def _error_outcome(source: str, task: str | None, exc: KioskError, total_ms: float) -> ImageOutcome:
    """The result of an image that was refused before inference."""
    result: dict[str, Any] = {"input": source, "task": task, "verdict": None, "score": None, "findings": [],
              "quality": None, "model": None, "backend": None, "laterality": None, "priority": 0,
              "timings_ms": {"decode": total_ms, "quality": 0.0, "preprocess": 0.0, "infer": 0.0,
                             "total": total_ms},
              "warnings": [], "error": exc.to_dict()}
    return ImageOutcome(result)


def _network_box(image: Image, spec: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """The part of the image the network saw: the fundus crop square, else the whole image."""
    steps = [s for s in spec.get("steps", []) if s.get("op") == "fundus_crop"]
    if not steps:
        return None
    from kiosk.quality.fov import find_field_of_view

    pixels = image.pixels
    fov = find_field_of_view(pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, 2))
    if fov is None:
        return None
    half = fov.radius * (1.0 + float(steps[0].get("margin", 0.0)))
    x0, y0 = round(fov.cx - half), round(fov.cy - half)
    side = max(2, round(2 * half))
    return x0, y0, x0 + side, y0 + side


def _default_prevalence(config: Config, bundle: Bundle) -> float:
    """The clinic's prevalence setting for the task, else the bundle's validation share."""
    value = getattr(config, "prevalence_" + bundle.task.replace("-", "_"), None)
    if isinstance(value, float):
        return value
    point = bundle.manifest["findings"][0].get("operating_point", {})
    positive, negative = int(point.get("n_positive", 1)), int(point.get("n_negative", 9))
    log.warning("no KIOSK_PREVALENCE setting for %s: using its validation share", bundle.task)
    return positive / max(1, positive + negative)


def _load_bundles(config: Config) -> tuple[dict[str, Bundle], list[dict[str, Any]]]:
    """The newest verified bundle per task, and describe() entries for the refused ones."""
    bundles, refusals = load_newest(config.models_dir, config.trusted_keys)
    refused = [_refused_entry(path, exc) for path, exc in refusals.items()]
    if not bundles:
        reasons = "; ".join(exc.message for exc in refusals.values()) or "none found"
        raise BundleError(f"no verified model bundle in {config.models_dir} ({reasons})",
                          code="no_model")
    return bundles, refused


def _refused_entry(path: Path, exc: BundleError) -> dict[str, Any]:
    """How describe() lists a bundle that failed verification (same keys as a loaded one)."""
    return {"id": path.name.removesuffix(".tar"), "version": None, "name": None, "sha256": None,
            "path": str(path), "signature": {"status": "refused", "key_id": None},
            "error": exc.to_dict(), "backend": None, "variant": None, "warmup_ms": None,
            "skipped": []}


def _describe(model: Model) -> dict[str, Any]:
    """What the kiosk says about one loaded bundle."""
    manifest = model.bundle.manifest
    return {
        "id": model.bundle.task, "version": model.bundle.version, "name": manifest.get("name"),
        "sha256": model.bundle.sha256, "path": str(model.bundle.path),
        "signature": {"status": "verified", "key_id": model.bundle.key_id},
        "labels": model.bundle.labels, "metrics": manifest.get("metrics", {}),
        "intended_use": manifest.get("intended_use"), "limitations": manifest.get("limitations", []),
        **model.engine.describe(),
    }
