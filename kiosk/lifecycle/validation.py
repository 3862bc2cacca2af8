"""Site validation before go-live (issue 16.2): how good is the model on this clinic's images?

The clinic gives a labelled set: a folder of images with a CSV (``file``, ``label``, optional
``patient`` and ``eye``), or the sign-offs its clinicians already made (each decided screening
labels its results with the clinician's verdict, or the referral's outcome where one was
entered). The images are screened through the real pipeline; the report gives the local AUC
(bootstrap 95% CI, by patient), sensitivity and specificity (Wilson 95% CIs) at the operating
point in force, and proposes a threshold for a target sensitivity under three guardrails:

- at least ``min_positives`` positives and ``min_negatives`` negatives, else no proposal;
- the LOWER bound of the sensitivity interval at the proposed threshold reaches the target
  (a point estimate of 0.90 on 40 positives could be 0.77 in truth);
- nothing changes until an admin applies the run, which shows both points beforehand.

Applying makes the threshold the task's named operating point "site" (kiosk/decide.py
``with_point``), audited; undoing it goes back to the bundle's point in one audited step. A site
threshold belongs to the bundle it was measured on (its sha256): a new version is not
calibrated until it is validated again.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kiosk import decide, stats
from kiosk.decide import NON_REFERABLE, REFERABLE, SITE_POINT
from kiosk.errors import KioskError
from kiosk.lifecycle.surveillance import truth
from kiosk.pipeline import Pipeline
from kiosk.result import Result
from kiosk.store import Store
from kiosk.store import audit as audit_log
from kiosk.store import lifecycle as kept
from kiosk.store.lifecycle import SiteValidation

#: Guardrails' defaults: below these counts no threshold is proposed.
MIN_POSITIVES = 40
MIN_NEGATIVES = 100
#: The sensitivity a screening programme asks of the test (the shipped cards' target).
TARGET_SENSITIVITY = 0.90
#: Words a labels CSV may use for a positive and a negative case.
POSITIVE_WORDS = {"1", "true", "yes", "positive", "referable"}
NEGATIVE_WORDS = {"0", "false", "no", "negative", "non_referable", "non-referable"}


class ValidationError(KioskError):
    """A labelled set or a validation step the kiosk cannot accept, with the reason."""

    code = "validation_error"
    http_status = 422


@dataclass(frozen=True)
class Case:
    """One labelled image as the model scored it."""

    score: float
    positive: bool
    patient: str


@dataclass
class Scored:
    """A labelled set screened: the cases with a score, and why the others were left out."""

    cases: list[Case] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)

    def exclude(self, why: str) -> None:
        """Count one image left out (refused by intake, ungradable, another model version)."""
        self.excluded[why] = self.excluded.get(why, 0) + 1


@dataclass(frozen=True)
class LabelRow:
    """One line of a labels CSV."""

    file: str
    positive: bool
    patient: str
    eye: str | None


def read_labels(csv_path: Path) -> list[LabelRow]:
    """The rows of a labels CSV (``file``, ``label``; optional ``patient``, ``eye``)."""
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValidationError(f"{csv_path.name} has no column {', '.join(sorted(missing))} "
                                  "(it needs file and label; patient and eye are optional)")
        return [_label_row(line, number) for number, line in enumerate(reader, start=2)]


def _label_row(line: dict[str, str], number: int) -> LabelRow:
    """One CSV line, its label read as positive or negative."""
    word = (line.get("label") or "").strip().lower()
    if word not in POSITIVE_WORDS | NEGATIVE_WORDS:
        raise ValidationError(f"line {number}: label {word!r} is neither positive "
                              f"({', '.join(sorted(POSITIVE_WORDS))}) nor negative "
                              f"({', '.join(sorted(NEGATIVE_WORDS))})")
    file = line["file"].strip()
    return LabelRow(file, word in POSITIVE_WORDS, (line.get("patient") or "").strip() or file,
                    (line.get("eye") or "").strip().upper()[:1] or None)


def screen_folder(pipeline: Pipeline, task: str, folder: Path, rows: Sequence[LabelRow]) -> Scored:
    """Screen every labelled image with the task's model, in batches, through the pipeline."""
    scored, root = Scored(), folder.resolve()
    size = max(1, pipeline.config.batch_size)
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        items = [(_read_inside(root, row.file), row.file) for row in chunk]
        for row, outcomes in zip(chunk, pipeline.screen_many(items, task=task, heatmap=False),
                                 strict=True):
            _score(scored, [o.result for o in outcomes], task, row.positive, row.patient)
    return scored


def _read_inside(root: Path, name: str) -> bytes:
    """A labelled file's bytes; a name that leaves the folder or is missing is refused."""
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ValidationError(f"{name!r} is outside the labelled folder")
    if not path.is_file():
        raise ValidationError(f"{name!r} is listed in the labels but not in the folder")
    return path.read_bytes()


def _score(scored: Scored, results: Iterable[Result], task: str, positive: bool,
           patient: str, sha256: str | None = None) -> None:
    """Add the task's graded result of one image as a case (or count why it is left out)."""
    mine = [r for r in results if r.get("task") == task]
    if not mine or mine[0].get("error"):
        scored.exclude("refused")
        return
    result = mine[0]
    model = result.get("model")
    if sha256 is not None and (model is None or model["sha256"] != sha256):
        scored.exclude("another model version")
    elif result.get("verdict") not in (REFERABLE, NON_REFERABLE) or result.get("score") is None:
        scored.exclude("ungradable")
    else:
        scored.cases.append(Case(float(result["score"] or 0.0), positive, patient))


def from_sign_offs(store: Store, task: str, sha256: str) -> Scored:
    """The clinic's decided screenings as a labelled set for the loaded version of a task.

    Each graded result of the task made by this bundle (its sha256: another version's scores
    are not this model's) is a case labelled with the referral outcome, else the clinician's
    verdict; a screening judged ungradable labels nothing.
    """
    scored = Scored()
    with store.db.read() as conn:
        decided = kept.decided_screenings(conn)
    for row in decided:
        verdict = row["verdict"] if row["decision"] is not None else None
        label = truth(verdict, row["outcome"])
        results = [r for r in kept.results_of(row) if r.get("task") == task]
        for result in results:
            if label is None:
                scored.exclude("no verdict to learn from")
            else:
                _score(scored, [result], task, label, f"patient-{row['patient_id']}", sha256)
    return scored


def current_threshold(pipeline: Pipeline, task: str) -> float:
    """The threshold in force on the task's score (its referable findings share it)."""
    point = pipeline.operating_point(task)
    referable = [decide.at_point(spec, point) for spec in pipeline.manifest(task)["findings"]
                 if spec.get("referable", True)]
    thresholds = {float(spec["threshold"]) for spec in referable}
    if len(thresholds) != 1:
        raise ValidationError(f"{task}'s referable findings have {len(thresholds)} thresholds "
                              "at this point: one score threshold cannot be validated")
    return thresholds.pop()


def report(pipeline: Pipeline, task: str, scored: Scored, *,
           target: float = TARGET_SENSITIVITY, min_positives: int = MIN_POSITIVES,
           min_negatives: int = MIN_NEGATIVES) -> dict[str, Any]:
    """Local AUC, sensitivity and specificity at the point in force, and a proposed threshold.

    JSON-safe figures only (no file name, no patient): this is what is kept and shown.
    """
    labels = np.array([c.positive for c in scored.cases], dtype=bool)
    scores = np.array([c.score for c in scored.cases], dtype=np.float64)
    patients = np.array([c.patient for c in scored.cases])
    bundle = pipeline.models[task].bundle
    threshold = current_threshold(pipeline, task)
    both = bool(labels.any() and (~labels).any())
    return {
        "task": task, "model": {"id": bundle.task, "version": bundle.version,
                                "sha256": bundle.sha256},
        "n": len(scored.cases), "n_positive": int(labels.sum()),
        "n_negative": int((~labels).sum()), "excluded": dict(scored.excluded),
        "auc": round(stats.auc(labels, scores), 4) if both else None,
        "auc_ci": ([round(v, 4) for v in stats.auc_ci(labels, scores, patients=patients)]
                   if both else None),
        "current": {**_figures(labels, scores, threshold),
                    "operating_point": pipeline.operating_point(task)},
        "proposal": propose(labels, scores, target, min_positives, min_negatives),
    }


def _figures(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Sensitivity and specificity (Wilson CIs) of ``score >= threshold`` on the labelled set."""
    point = stats.measure(labels, scores, threshold)
    return {"threshold": round(threshold, 6),
            **point.to_dict(f"measured on {len(labels)} labelled images at this site")}


def propose(labels: np.ndarray, scores: np.ndarray, target: float, min_positives: int,
            min_negatives: int) -> dict[str, Any]:
    """A threshold whose sensitivity's lower 95% bound reaches ``target``, or why there is none."""
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    reasons = []
    if n_pos < min_positives:
        reasons.append(f"only {n_pos} positive images: at least {min_positives} are needed")
    if n_neg < min_negatives:
        reasons.append(f"only {n_neg} negative images: at least {min_negatives} are needed")
    needed = stats.positives_needed(target)
    if n_pos < needed:
        reasons.append(f"with {n_pos} positives, even finding every one leaves the lower 95% "
                       f"bound of sensitivity below {target:.2f}: {needed} are needed")
    found = None if reasons else stats.threshold_for_sensitivity_bound(labels, scores, target)
    answer: dict[str, Any] = {"target_sensitivity": target, "min_positives": min_positives,
                              "min_negatives": min_negatives, "positives_needed": needed,
                              "status": "refused",
                              "reasons": reasons, "proposed": None}
    if found is not None:
        # What the usual rule (the point estimate reaches the target) would pick, to show why.
        usual = stats.threshold_for_sensitivity(labels, scores, target)
        answer.update(status="proposed", proposed=_figures(labels, scores, found),
                      point_estimate=_figures(labels, scores, usual))
    return answer


def keep(store: Store, figures: dict[str, Any], *, source: str, actor: str) -> SiteValidation:
    """Keep a validation report (audited) so that an admin can look at it and apply it."""
    with store.db.write() as conn:
        run_id = kept.insert_validation(conn, figures, source=source, actor=actor)
        audit_log.append(conn, actor, "site_validation.run", detail=_run_words(run_id, figures))
        return kept.get_validation(conn, run_id)


def apply(store: Store, run_id: int, *, actor: str, pipeline: Pipeline | None = None
          ) -> SiteValidation:
    """Make a run's proposed threshold the task's site operating point (audited)."""
    with store.db.write() as conn:
        run = kept.get_validation(conn, run_id)
        if run.report["proposal"]["status"] != "proposed":
            raise ValidationError(f"validation {run_id} proposes no threshold: "
                                  + "; ".join(run.report["proposal"]["reasons"]))
        _same_bundle(run, pipeline)
        applied = kept.mark_applied(conn, run_id, actor)
        audit_log.append(conn, actor, "site_validation.apply", detail=_apply_words(applied))
    if pipeline is not None:
        pipeline.set_site_point(applied.task, site_point(applied))
    return applied


def undo(store: Store, task: str, *, actor: str, pipeline: Pipeline | None = None
         ) -> SiteValidation:
    """Go back to the bundle's operating point for a task, in one audited step."""
    with store.db.write() as conn:
        withdrawn = kept.mark_withdrawn(conn, task, actor)
        if withdrawn is None:
            raise ValidationError(f"{task} has no site threshold in force")
        audit_log.append(conn, actor, "site_validation.undo",
                         detail=f"{task}: site threshold of validation {withdrawn.id} withdrawn; "
                         "the bundle's operating point is used again")
    if pipeline is not None:
        pipeline.set_site_point(task, None)
    return withdrawn


def site_point(run: SiteValidation) -> dict[str, Any]:
    """The operating point a run gives the pipeline: its figures, when and on how many."""
    return {**run.report["proposal"]["proposed"], "calibrated": (run.applied or "")[:10],
            "validation": run.id}


def put_in_force(store: Store, pipeline: Pipeline) -> None:
    """Give the pipeline each task's site threshold, where one is in force for its bundle."""
    with store.db.read() as conn:
        runs = {task: kept.in_force(conn, task) for task in pipeline.tasks()}
    for task, run in runs.items():
        if run is not None and run.model_sha256 == pipeline.models[task].bundle.sha256:
            pipeline.set_site_point(task, site_point(run))


def _same_bundle(run: SiteValidation, pipeline: Pipeline | None) -> None:
    """Refuse a run measured on another version of the model than the one loaded."""
    if pipeline is None or run.task not in pipeline.tasks():
        return
    loaded = pipeline.models[run.task].bundle
    if loaded.sha256 != run.model_sha256:
        raise ValidationError(f"validation {run.id} measured {run.task} {run.model_version}; "
                              f"the kiosk runs {loaded.version}: validate it again")


def _run_words(run_id: int, figures: dict[str, Any]) -> str:
    """The audit line of a validation run (figures only)."""
    proposal = figures["proposal"]
    outcome = (f"proposes {proposal['proposed']['threshold']}" if proposal["proposed"]
               else "proposes nothing: " + "; ".join(proposal["reasons"]))
    return (f"validation {run_id}: {figures['task']} {figures['model']['version']} on "
            f"{figures['n_positive']} positive + {figures['n_negative']} negative images; "
            f"AUC {figures['auc']}; {outcome}")


def _apply_words(run: SiteValidation) -> str:
    """The audit line of an applied threshold: old and new, and what each is expected to do."""
    old, new = run.report["current"], run.report["proposal"]["proposed"]
    return (f"{run.task} {run.model_version}: threshold {old['threshold']} "
            f"({old['operating_point'] or 'bundle'}; sensitivity {old['sensitivity']}, "
            f"specificity {old['specificity']}) -> {new['threshold']} ({SITE_POINT}; sensitivity "
            f"{new['sensitivity']}, specificity {new['specificity']}), validation {run.id}, "
            f"n = {new['n_positive']} + {new['n_negative']}")
