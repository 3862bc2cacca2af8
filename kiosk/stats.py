"""Screening metrics in numpy: AUC with bootstrap CI, Wilson intervals, operating points, ECE."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = np.asarray(scores)[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    rounds: int = 2000,
    seed: int = 0,
    patients: np.ndarray | None = None,
) -> tuple[float, float]:
    """95% bootstrap interval of the AUC, resampling patients when given (eyes are correlated)."""
    rng = np.random.default_rng(seed)
    labels, scores = np.asarray(labels), np.asarray(scores)
    groups = np.arange(len(labels)) if patients is None else np.unique(patients, return_inverse=True)[1]
    members = [np.flatnonzero(groups == g) for g in range(groups.max() + 1)]
    values = []
    for _ in range(rounds):
        pick = rng.integers(0, len(members), len(members))
        index = np.concatenate([members[g] for g in pick])
        value = auc(labels[index], scores[index])
        if not np.isnan(value):
            values.append(value)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def wilson(successes: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold with its sensitivity and specificity (and their Wilson intervals)."""

    threshold: float
    sensitivity: float
    sensitivity_ci: tuple[float, float]
    specificity: float
    specificity_ci: tuple[float, float]
    n_positive: int
    n_negative: int

    def to_dict(self, target: str) -> dict[str, object]:
        """The manifest's ``operating_point`` object."""
        return {
            "target": target,
            "sensitivity": round(self.sensitivity, 4),
            "sensitivity_ci": [round(v, 4) for v in self.sensitivity_ci],
            "specificity": round(self.specificity, 4),
            "specificity_ci": [round(v, 4) for v in self.specificity_ci],
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
        }


def measure(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> OperatingPoint:
    """Sensitivity and specificity of ``probability >= threshold``."""
    labels = np.asarray(labels).astype(bool)
    positive = np.asarray(probabilities) >= threshold
    tp, fn = int((positive & labels).sum()), int((~positive & labels).sum())
    tn, fp = int((~positive & ~labels).sum()), int((positive & ~labels).sum())
    return OperatingPoint(
        threshold,
        tp / max(tp + fn, 1),
        wilson(tp, tp + fn),
        tn / max(tn + fp, 1),
        wilson(tn, tn + fp),
        tp + fn,
        tn + fp,
    )


def threshold_for_sensitivity(labels: np.ndarray, probabilities: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity on these data reaches ``target``."""
    positives = np.sort(np.asarray(probabilities)[np.asarray(labels).astype(bool)])
    if len(positives) == 0:
        return 0.5
    # At most floor((1 - target) * n) positives may fall below the threshold.
    allowed = int(np.floor((1.0 - target) * len(positives) + 1e-9))
    return float(positives[allowed])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, numerically safe."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """The temperature T minimising the log-loss of sigmoid(logits / T) (golden-section search)."""
    labels = np.asarray(labels, dtype=np.float64)

    def loss(log_t: float) -> float:
        p = np.clip(sigmoid(logits / np.exp(log_t)), 1e-7, 1 - 1e-7)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

    low, high = np.log(0.05), np.log(1000.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if loss(a) < loss(b):
            high = b
        else:
            low = a
    return float(np.exp((low + high) / 2))


def fit_platt(labels: np.ndarray, logits: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """(a, b) of sigmoid(a * logit + b) minimising the log-loss (Newton's method, tiny ridge)."""
    y = np.asarray(labels, dtype=np.float64)
    x = np.stack([np.asarray(logits, dtype=np.float64), np.ones(len(y))], axis=1)
    w = np.array([1.0 / max(float(np.std(x[:, 0])), 1e-6), 0.0])
    for _ in range(iterations):
        p = sigmoid(x @ w)
        gradient = x.T @ (p - y) + 1e-6 * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def ece(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    labels, probabilities = np.asarray(labels, dtype=float), np.asarray(probabilities, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(labels[inside].mean() - probabilities[inside].mean())
    return float(total)


def reliability(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 10
) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per non-empty bin, for the calibration plot."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append(
                (float(probabilities[inside].mean()), float(labels[inside].mean()), int(inside.sum()))
            )
    return rows


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    tp = np.concatenate([[0], np.cumsum(labels[order])])
    fp = np.concatenate([[0], np.cumsum(~labels[order])])
    return fp / max(fp[-1], 1), tp / max(tp[-1], 1)


def positives_needed(target: float, z: float = 1.959964) -> int:
    """The fewest positives whose sensitivity's Wilson lower bound can reach ``target`` at all
    (every one found): below it, no threshold can be shown to meet the target."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"a target sensitivity lies between 0 and 1, got {target}")
    n = 1
    while wilson(n, n, z)[0] < target:
        n += 1
    return n


def threshold_for_sensitivity_bound(labels: np.ndarray, probabilities: np.ndarray,
                                    target: float) -> float | None:
    """The highest threshold whose sensitivity's Wilson 95% LOWER bound reaches ``target``.

    Stricter than :func:`threshold_for_sensitivity` (the point estimate): on a small set the
    threshold falls until the interval, not just the estimate, clears the target. None when even
    a threshold that finds every positive cannot (too few positives).
    """
    positives = np.sort(np.asarray(probabilities)[np.asarray(labels).astype(bool)])[::-1]
    total = len(positives)
    for found in range(1, total + 1):
        if wilson(found, total)[0] >= target:
            return float(positives[found - 1])
    return None
