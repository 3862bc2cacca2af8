"""The shadow report (issue 16.4): does a candidate bundle read this clinic's cases as well as
the active one, and as well as the clinicians?

Per candidate bundle (task, version, sha256) with shadow results:

- **against the active model**, image by image (each shadow result beside the active result it
  shadowed): agreement of the verdicts where both graded the image (Wilson 95% CI), the mean
  difference of the scores (candidate - active, normal 95% CI) and their Pearson correlation;
- **against the clinicians**: on screenings a clinician signed, the clinician's verdict is the
  reference (referable = has it, non-referable = has not; ungradable is left out). Each model's
  call is its task's screening decision (``decide.combine`` over the same images), giving both
  models' sensitivity, specificity and agreement with the clinician (Wilson 95% CIs) and the
  AUC of their screening scores (bootstrap 95% CI, ``kiosk.stats.auc_ci``).

Only counts and proportions: no patient data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engines.bundle import Bundle
from kiosk.decide import NON_REFERABLE, REFERABLE, combine
from kiosk.lifecycle.models import Lineup
from kiosk.result import Result
from kiosk.stats import auc, auc_ci, wilson
from kiosk.store import Store
from kiosk.store import shadow as kept
from kiosk.store.shadow import ShadowPair

#: Verdicts that are a screening decision (an ungradable image is neither).
DECIDED = (REFERABLE, NON_REFERABLE)


def report(store: Store, lineup: Lineup) -> list[dict[str, Any]]:
    """One JSON-safe dict per candidate bundle: in shadow now, or with shadow results kept."""
    with store.db.read() as conn:
        kept_bundles = {(row["task"], row["model_sha256"]): row for row in kept.shadowed_bundles(conn)}
        wanted = sorted({*kept_bundles, *((b.task, b.sha256) for b in lineup.candidates.values())})
        pairs = {key: kept.shadow_pairs(conn, *key) for key in wanted}
    return [_entry(task, sha, pairs[(task, sha)], lineup, kept_bundles.get((task, sha)))
            for task, sha in wanted]


def _entry(task: str, sha: str, pairs: list[ShadowPair], lineup: Lineup,
           row: dict[str, Any] | None) -> dict[str, Any]:
    """The report of one candidate bundle."""
    candidate = lineup.candidates.get(task)
    version = row["model_version"] if row else candidate.version if candidate else "?"
    active = lineup.active.get(task)
    return {
        "task": task,
        "candidate": {"version": version, "sha256": sha,
                      "in_shadow": candidate is not None and candidate.sha256 == sha,
                      "role": _role(lineup, task, sha)},
        "active": _name(active),
        "compared_with": sorted({_version_of(p.active) for p in pairs}),
        "n": len(pairs),
        "versus_active": versus_active(pairs),
        "versus_clinicians": versus_clinicians(pairs),
    }


def _role(lineup: Lineup, task: str, sha: str) -> str:
    """The bundle's role today (``gone`` when it is no longer installed)."""
    bundle = next((b for b in lineup.installed.get(task, []) if b.sha256 == sha), None)
    return lineup.role(bundle) if bundle is not None else "gone"


def _name(bundle: Bundle | None) -> dict[str, str] | None:
    """Version and sha256 of a bundle."""
    return None if bundle is None else {"version": bundle.version, "sha256": bundle.sha256}


def _version_of(result: Result) -> str:
    """``version (sha256 prefix)`` of the model that made a result."""
    model = result.get("model")
    return "none" if model is None else f"{model['version']} ({model['sha256'][:12]})"


def proportion(successes: int, total: int) -> dict[str, Any] | None:
    """A proportion with its Wilson 95% interval (None with no case)."""
    if total == 0:
        return None
    low, high = wilson(successes, total)
    return {"value": round(successes / total, 4), "ci": [round(low, 4), round(high, 4)],
            "n": total}


def versus_active(pairs: list[ShadowPair]) -> dict[str, Any]:
    """Image by image: verdict agreement, score difference and correlation."""
    graded = [(p.active["verdict"], p.shadow["verdict"]) for p in pairs
              if p.active.get("verdict") in DECIDED and p.shadow.get("verdict") in DECIDED]
    scored = np.array([(a, s) for p in pairs
                       if (a := p.active.get("score")) is not None
                       and (s := p.shadow.get("score")) is not None], dtype=float).reshape(-1, 2)
    return {
        "agreement": proportion(sum(a == s for a, s in graded), len(graded)),
        "referable": {"active": sum(a == REFERABLE for a, _ in graded),
                      "candidate": sum(s == REFERABLE for _, s in graded), "n": len(graded)},
        "score": _score_comparison(scored),
    }


def _score_comparison(scored: np.ndarray) -> dict[str, Any]:
    """Mean difference (candidate - active) with a normal 95% CI, and Pearson's r."""
    n = len(scored)
    if n == 0:
        return {"n": 0, "mean_difference": None, "ci": None, "correlation": None}
    difference = scored[:, 1] - scored[:, 0]
    mean = float(difference.mean())
    half = 1.959964 * float(difference.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    spread = scored.std(axis=0)
    correlation = (float(np.corrcoef(scored[:, 0], scored[:, 1])[0, 1])
                   if n > 2 and spread.min() > 0 else None)
    return {"n": n, "mean_difference": round(mean, 4),
            "ci": [round(mean - half, 4), round(mean + half, 4)] if math.isfinite(half) else None,
            "correlation": None if correlation is None else round(correlation, 4)}


def versus_clinicians(pairs: list[ShadowPair]) -> dict[str, Any]:
    """Both models' calls on signed screenings against the clinician's verdict."""
    by_screening: dict[int, list[ShadowPair]] = {}
    for pair in pairs:
        if pair.signed_verdict in DECIDED:
            by_screening.setdefault(pair.screening_id, []).append(pair)
    truth = [group[0].signed_verdict == REFERABLE for group in by_screening.values()]
    sides = {}
    for side in ("active", "candidate"):
        results = [[p.active if side == "active" else p.shadow for p in group]
                   for group in by_screening.values()]
        sides[side] = _against(truth, [str(combine(r)["verdict"]) for r in results],
                               [_screening_score(r) for r in results])
    return {"n_signed": len(by_screening), **sides}


def _screening_score(results: list[Result]) -> float | None:
    """The highest score among a screening's results of the task (None if none scored)."""
    scores = [float(score) for r in results if (score := r.get("score")) is not None]
    return max(scores) if scores else None


def _against(truth: list[bool], calls: list[str], scores: list[float | None]) -> dict[str, Any]:
    """Sensitivity, specificity, agreement and AUC of one model's calls against the reference."""
    decided = [(has, call) for has, call in zip(truth, calls, strict=True) if call in DECIDED]
    tp = sum(has and call == REFERABLE for has, call in decided)
    fn = sum(has and call == NON_REFERABLE for has, call in decided)
    tn = sum(not has and call == NON_REFERABLE for has, call in decided)
    fp = sum(not has and call == REFERABLE for has, call in decided)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "sensitivity": proportion(tp, tp + fn), "specificity": proportion(tn, tn + fp),
            "agreement": proportion(tp + tn, len(decided)),
            "auc": _auc(truth, scores)}


def _auc(truth: list[bool], scores: list[float | None]) -> dict[str, Any] | None:
    """AUC of the screening scores with its bootstrap 95% CI (None without both classes)."""
    known = [(has, score) for has, score in zip(truth, scores, strict=True) if score is not None]
    labels = np.array([has for has, _ in known], dtype=bool)
    if labels.sum() == 0 or (~labels).sum() == 0:
        return None
    values = np.array([score for _, score in known], dtype=float)
    low, high = auc_ci(labels, values)
    return {"value": round(auc(labels, values), 4), "ci": [round(low, 4), round(high, 4)],
            "n": len(known)}
