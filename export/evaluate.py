"""Calibrate on the calibration split, choose the operating point, measure on the test split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from export.screening import screening_threshold
from kiosk import stats as m

#: Histogram of calibrated validation scores kept in the manifest for drift checks.
DRIFT_BINS = np.round(np.linspace(0.0, 1.0, 21), 2)


@dataclass
class Evaluation:
    """Everything measured for one model's shipped output."""

    temperature: float
    threshold: float
    target_sensitivity: float
    calibration_auc: float
    test_auc: float
    test_auc_ci: tuple[float, float]
    test_point: m.OperatingPoint
    calibration_point: m.OperatingPoint
    ece_before: float
    ece_after: float
    n_test: int
    test_labels: np.ndarray
    test_probabilities: np.ndarray
    test_raw_probabilities: np.ndarray
    score_counts: list[int]
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self, split: str) -> dict[str, Any]:
        """The manifest's ``metrics`` object."""
        per_patient = {"per_patient": self.extra["per_patient"]} if "per_patient" in self.extra else {}
        return per_patient | {
            "auc": round(self.test_auc, 4),
            "auc_ci": [round(v, 4) for v in self.test_auc_ci],
            "ece": round(self.ece_after, 4),
            "ece_uncalibrated": round(self.ece_before, 4),
            "split": split,
            "n": self.n_test,
            "n_positive": self.test_point.n_positive,
            "n_negative": self.test_point.n_negative,
            "calibration_split_auc": round(self.calibration_auc, 4),
        }


def evaluate(
    cal_labels: np.ndarray,
    cal_logits: np.ndarray,
    test_labels: np.ndarray,
    test_logits: np.ndarray,
    test_patients: np.ndarray,
    target_sensitivity: float = 0.90,
    seed: int = 0,
) -> Evaluation:
    """Fit temperature and threshold on calibration data only; report on the test data."""
    temperature = m.fit_temperature(cal_labels, cal_logits)
    cal_p = m.sigmoid(cal_logits / temperature)
    threshold = screening_threshold(cal_labels, cal_p, target_sensitivity)
    test_p = m.sigmoid(test_logits / temperature)
    counts, _ = np.histogram(cal_p, bins=DRIFT_BINS)
    extra = {}
    if len(np.unique(test_patients)) < len(test_patients):
        extra["per_patient"] = per_patient(test_labels, test_p, test_patients, threshold, seed)
    return Evaluation(
        temperature=temperature,
        threshold=threshold,
        target_sensitivity=target_sensitivity,
        calibration_auc=m.auc(cal_labels, cal_logits),
        test_auc=m.auc(test_labels, test_logits),
        test_auc_ci=m.auc_ci(test_labels, test_logits, patients=test_patients, seed=seed),
        test_point=m.measure(test_labels, test_p, threshold),
        calibration_point=m.measure(cal_labels, cal_p, threshold),
        ece_before=m.ece(test_labels, m.sigmoid(test_logits)),
        ece_after=m.ece(test_labels, test_p),
        n_test=len(test_labels),
        test_labels=np.asarray(test_labels),
        test_probabilities=test_p,
        test_raw_probabilities=m.sigmoid(test_logits),
        score_counts=[int(c) for c in counts],
        extra=extra,
    )


def per_patient(
    labels: np.ndarray, probabilities: np.ndarray, patients: np.ndarray, threshold: float, seed: int
) -> dict[str, Any]:
    """The screening decision as the kiosk makes it for a patient with several images (both
    eyes): refer if any image is positive. The patient's score is its highest image score."""
    ids, inverse = np.unique(patients, return_inverse=True)
    worst = np.zeros(len(ids))
    any_positive = np.zeros(len(ids), dtype=bool)
    np.maximum.at(worst, inverse, probabilities)
    np.logical_or.at(any_positive, inverse, np.asarray(labels).astype(bool))
    point = m.measure(any_positive, worst, threshold)
    return {
        "auc": round(m.auc(any_positive, worst), 4),
        "auc_ci": [round(v, 4) for v in m.auc_ci(any_positive, worst, seed=seed)],
        "n": len(ids),
        "n_positive": int(any_positive.sum()),
        "operating_point": point.to_dict("refer if any image is positive"),
    }
