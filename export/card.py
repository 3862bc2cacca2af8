"""The model card (MODEL_CARD.md) of a bundle, with its ROC and calibration plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export import metrics as m
from export.evaluate import Evaluation
from export.plots import plot


def write_plots(folder: Path, evaluation: Evaluation) -> None:
    """roc.png and calibration.png of the test split."""
    labels, probabilities = evaluation.test_labels, evaluation.test_probabilities
    fpr, tpr = m.roc_curve(labels, probabilities)
    point = evaluation.test_point
    roc = plot(
        f"ROC, test split (AUC {evaluation.test_auc:.3f})",
        "1 - specificity",
        "sensitivity",
        [(fpr.tolist(), tpr.tolist(), (20, 70, 160), "model")],
        [(1 - point.specificity, point.sensitivity, f"threshold {point.threshold:.2f}")],
    )
    (folder / "roc.png").write_bytes(roc)
    after = m.reliability(labels, probabilities)
    before = m.reliability(labels, evaluation.test_raw_probabilities)
    calibration = plot(
        f"Calibration, test split (ECE {evaluation.ece_after:.3f})",
        "predicted probability",
        "observed rate",
        [
            ([r[0] for r in before], [r[1] for r in before], (200, 120, 20), "before temperature"),
            ([r[0] for r in after], [r[1] for r in after], (20, 70, 160), "after temperature"),
        ],
    )
    (folder / "calibration.png").write_bytes(calibration)


def _ci(values: list[float] | tuple[float, float]) -> str:
    """'0.81-0.86' for a confidence interval."""
    return f"{values[0]:.3f}-{values[1]:.3f}"


def write_card(folder: Path, manifest: dict[str, Any], evaluation: Evaluation, notes: dict[str, Any]) -> None:
    """MODEL_CARD.md from the manifest, the evaluation and free-text notes (shift, training)."""
    finding = manifest["findings"][0]
    point = finding["operating_point"]
    metrics = manifest["metrics"]
    data = manifest["training_data"]
    variants = "\n".join(
        f"| {name} | `{v['file']}` | {v.get('latency_ms_cpu', '-')} | {v.get('auc', '-')} |"
        for name, v in manifest["variants"].items()
    )
    lines = [
        f"# {manifest['name']} {manifest['version']}",
        "",
        f"**Intended use.** {manifest['intended_use']}",
        "",
        f"Task `{manifest['task']}`: {finding['display']}, from one image. Output: a calibrated "
        f"probability of `{finding['label']}` and a class-activation heat-map (`cam`).",
        "",
        "## Data and provenance",
        "",
        f"- {data['name']}: {data['images']} images of {data['patients']} patients; "
        f"licence: {data['licence']}. Source: {data.get('source', '')}",
        f"- Split **by patient** (seed {notes['seed']}): {notes['split_counts']}. "
        "Temperature, threshold and the choice of checkpoint were fixed on the calibration split; "
        "every figure below is from the test split, which was used for nothing else.",
        f"- Preprocessing (`input.steps`, applied by `kiosk/preprocess.py` both here and at the "
        f"kiosk): {', '.join(s['op'] for s in manifest['input']['steps'])}; "
        f"{manifest['input']['size']} px, {manifest['input']['channels']} channel(s).",
        "",
        "## Model and training",
        "",
        notes["training"],
        "",
        *_ensemble_lines(notes.get("ensemble")),
        "## Performance (test split, by patient)",
        "",
        f"- AUC **{metrics['auc']:.3f}** (95% CI {_ci(metrics['auc_ci'])}, patient bootstrap), "
        f"n = {metrics['n']} ({metrics['n_positive']} positive). Calibration split AUC "
        f"{metrics['calibration_split_auc']:.3f}.",
        f"- Operating point ({point['target']} on the calibration split): threshold "
        f"{finding['threshold']:.3f} on the calibrated probability → sensitivity "
        f"**{point['sensitivity']:.3f}** ({_ci(point['sensitivity_ci'])}), specificity "
        f"**{point['specificity']:.3f}** ({_ci(point['specificity_ci'])}) (Wilson 95% CIs).",
        *_patient_lines(metrics.get("per_patient")),
        f"- Calibration: temperature {manifest['calibration']['temperature']:.3f}; expected "
        f"calibration error {metrics['ece_uncalibrated']:.3f} before, **{metrics['ece']:.3f}** after.",
        "",
        "![ROC](roc.png) ![Calibration](calibration.png)",
        "",
        "| variant | file | CPU latency ms (1 image, 2 threads) | test AUC |",
        "| --- | --- | --- | --- |",
        variants,
        "",
        notes.get("int8", ""),
        "",
        "## Behaviour on shifted data",
        "",
        notes["shift"],
        "",
        "## Limitations",
        "",
        *[f"- {item}" for item in manifest["limitations"]],
        "",
        f"Reproduce: `{notes['command']}` (fixed seed; needs `../shared/data`).",
        "",
    ]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")


def _patient_lines(found: dict[str, Any] | None) -> list[str]:
    """The per-patient figures (both eyes: refer if either is positive), when there are any."""
    if not found:
        return []
    point = found["operating_point"]
    return [
        f"- Per patient, as the kiosk decides (refer if any of the patient's images is positive, "
        f"score = the highest): AUC {found['auc']:.3f} (95% CI {_ci(found['auc_ci'])}), n = "
        f"{found['n']} patients ({found['n_positive']} with a referable eye); sensitivity "
        f"{point['sensitivity']:.3f} ({_ci(point['sensitivity_ci'])}), specificity "
        f"{point['specificity']:.3f} ({_ci(point['specificity_ci'])}) at the same threshold."
    ]


def _ensemble_lines(ensemble: dict[str, Any] | None) -> list[str]:
    """Which combination of networks and views was shipped, and why (calibration split only)."""
    if not ensemble:
        return []
    rows = [f"| {name} | {value:.4f} |" for name, value in ensemble["graphs"].items()]
    return [
        f"Shipped: **{ensemble['shipped']}**, the best calibration-split AUC among the combinations "
        "whose bundle stays under 20 MB (the test split is kept for the shipped graph alone):",
        "",
        "| graph | calibration-split AUC |",
        "| --- | --- |",
        *rows,
        "",
    ]
