"""Named operating points, one decision per patient, and shortcut probes (calibration split decides).

Everything here is chosen on the calibration split and only measured on the test split.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiosk import stats as m

#: How a patient's images (both eyes) are combined into one score; the kiosk knows these.
RULES = ("max", "mean")


def youden_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 on these data."""
    best, best_j = 0.5, -1.0
    for t in np.unique(probabilities):
        point = m.measure(labels, probabilities, float(t))
        j = point.sensitivity + point.specificity - 1
        if j > best_j:
            best, best_j = float(t), j
    return best


def screening_threshold(labels: np.ndarray, probabilities: np.ndarray, target: float) -> float:
    """The highest threshold reaching ``target`` sensitivity, never above the balanced one.

    A screening point exists to be at least as sensitive as the balanced one. For a model that
    separates its calibration split almost perfectly (cxr-pneumonia 1.1: AUC 0.9996, 74%
    positives) the highest threshold keeping 90% of the positives sits among positives scored
    0.9995: it shipped as 1.0 after rounding, and in the kiosk (INT8, its own intake) found 64%
    of the test split's pneumonia. The balanced point lies in the gap between the classes.
    """
    return min(m.threshold_for_sensitivity(labels, probabilities, target),
               youden_threshold(labels, probabilities))


def point_entry(
    target: str,
    threshold: float,
    cal: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """A manifest ``operating_points`` entry: threshold, test figures, calibration-split figures."""
    on_test = m.measure(test[0], test[1], threshold).to_dict(target)
    on_cal = m.measure(cal[0], cal[1], threshold).to_dict(target)
    return {"threshold": round(threshold, 4), **on_test, "calibration_split": on_cal}


def named_points(
    cal: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], screening_sensitivity: float
) -> dict[str, dict[str, Any]]:
    """The 'screening' point (sensitivity target on the calibration split) and the 'balanced' one
    (Youden's J on the calibration split), measured on the test split."""
    screening = screening_threshold(cal[0], cal[1], screening_sensitivity)
    balanced = youden_threshold(cal[0], cal[1])
    return {
        "screening": point_entry(
            f"sensitivity >= {screening_sensitivity:.2f} on the calibration split", screening, cal, test
        ),
        "balanced": point_entry(
            "largest sensitivity + specificity on the calibration split", balanced, cal, test
        ),
    }


def by_patient(
    labels: np.ndarray, probabilities: np.ndarray, patients: np.ndarray, rule: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patient ids, referable if any image is, combined score) under ``rule``."""
    ids, inverse = np.unique(patients, return_inverse=True)
    positive = np.zeros(len(ids), dtype=bool)
    np.logical_or.at(positive, inverse, np.asarray(labels).astype(bool))
    if rule == "max":
        score = np.zeros(len(ids))
        np.maximum.at(score, inverse, probabilities)
    elif rule == "mean":
        score = np.bincount(inverse, weights=probabilities) / np.bincount(inverse)
    else:
        raise ValueError(f"unknown patient rule {rule!r}")
    return ids, positive, score


def patient_decision(
    cal: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    screening_sensitivity: float,
    seed: int,
) -> dict[str, Any]:
    """The manifest's ``patient`` object: the rule with the best calibration-split per-patient
    AUC, its own named thresholds (set on calibration patients), measured on test patients."""
    cal_auc = {r: m.auc(*by_patient(*cal, r)[1:]) for r in RULES}
    rule = max(RULES, key=lambda r: (cal_auc[r], r == "max"))
    _, cal_y, cal_s = by_patient(*cal, rule)
    _, test_y, test_s = by_patient(*test, rule)
    return {
        "rule": rule,
        "chosen_on": "calibration split",
        "calibration_split_auc_by_rule": {r: round(v, 4) for r, v in cal_auc.items()},
        "operating_points": named_points((cal_y, cal_s), (test_y, test_s), screening_sensitivity),
        "metrics": {
            "auc": round(m.auc(test_y, test_s), 4),
            "auc_ci": [round(v, 4) for v in m.auc_ci(test_y, test_s, seed=seed)],
            "n_patients": len(test_y),
            "n_positive": int(test_y.sum()),
            "split": "test split",
        },
    }


def auc_with_ci(labels: np.ndarray, scores: np.ndarray, seed: int) -> dict[str, Any]:
    """AUC, its bootstrap 95% CI and the counts, or the reason there is none."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if min(n_pos, n_neg) < 5:
        return {"auc": None, "n_positive": n_pos, "n_negative": n_neg, "note": "too few to measure"}
    return {
        "auc": round(m.auc(labels, scores), 4),
        "auc_ci": [round(v, 4) for v in m.auc_ci(labels, scores, seed=seed, rounds=1000)],
        "n_positive": n_pos,
        "n_negative": n_neg,
    }


def shortcut_probe(
    labels: np.ndarray, scores: np.ndarray, attributes: dict[str, np.ndarray], seed: int
) -> dict[str, Any]:
    """How well the score predicts each attribute (e.g. AP vs PA) against how well it predicts the
    label, and the label AUC within each value of each attribute.

    A score that separates AP from PA better than abnormal from normal, or whose label AUC
    collapses within AP films or within PA films, has learnt the shortcut rather than the disease.
    """
    out: dict[str, Any] = {"label": auc_with_ci(labels, scores, seed)}
    for name, values in attributes.items():
        values = np.asarray(values)
        kinds = [v for v in np.unique(values) if v != ""]
        entry: dict[str, Any] = {}
        if len(kinds) == 2:
            entry["score_predicts"] = {
                f"{kinds[1]} vs {kinds[0]}": auc_with_ci(values == kinds[1], scores, seed)
            }
        entry["label_auc_within"] = {
            str(k): auc_with_ci(labels[values == k], scores[values == k], seed) for k in kinds
        }
        entry["prevalence_within"] = {str(k): round(float(labels[values == k].mean()), 3) for k in kinds}
        out[name] = entry
    return out


def screening_sections(
    screening_sensitivity: float,
    temperature: float,
    cal: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    seed: int,
    per_patient: bool,
) -> dict[str, Any]:
    """Named operating points (and, where a patient has several images, the patient rule) from
    (labels, logits, patients) of the calibration and test splits."""
    cal_p = m.sigmoid(cal[1] / temperature)
    test_p = m.sigmoid(test[1] / temperature)
    out: dict[str, Any] = {
        "operating_points": named_points((cal[0], cal_p), (test[0], test_p), screening_sensitivity),
        "default_operating_point": "screening",
    }
    if per_patient:
        out["patient"] = patient_decision(
            (cal[0], cal_p, cal[2]), (test[0], test_p, test[2]), screening_sensitivity, seed
        )
    return out
