"""The model card (MODEL_CARD.md) of a bundle, with its ROC and calibration plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export.evaluate import Evaluation
from export.plots import plot
from kiosk import stats as m


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
        *_task_lines(manifest),
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
        *_named_point_lines(finding.get("operating_points"), manifest.get("default_operating_point")),
        *_patient_rule_lines(manifest.get("patient")),
        *_probe_lines(metrics.get("shortcut_probe")),
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


def _task_lines(manifest: dict[str, Any]) -> list[str]:
    """Who the model is for and where a referable result sends the patient."""
    if "population" not in manifest or "referral" not in manifest:
        return []
    population, referral = manifest["population"], manifest["referral"]
    ages = population.get("age_years", ["?", "?"])
    return [
        f"**Population.** {population.get('description', '')}, age {ages[0]}-{ages[1]}. "
        f"**Referral** when referable: to {referral['to']}, {referral['urgency']}, {referral['within']}. "
        f"Expected prevalence by default {manifest.get('prevalence')} (a clinic may set its own).",
        "",
    ]


def _point_row(name: str, point: dict[str, Any], default: str | None) -> str:
    """One table row of a named operating point: test figures, then the calibration split's."""
    cal = point["calibration_split"]
    return (
        f"| {name}{' (default)' if name == default else ''} | {point['target']} | {point['threshold']:.3f} | "
        f"{point['sensitivity']:.3f} ({_ci(point['sensitivity_ci'])}) | "
        f"{point['specificity']:.3f} ({_ci(point['specificity_ci'])}) | "
        f"{cal['sensitivity']:.3f} / {cal['specificity']:.3f} |"
    )


POINT_HEADER = [
    "| point | chosen on the calibration split by | threshold | test sensitivity (95% CI) "
    "| test specificity (95% CI) | calibration split sens / spec |",
    "| --- | --- | --- | --- | --- | --- |",
]


def _named_point_lines(points: dict[str, Any] | None, default: str | None) -> list[str]:
    """The named operating points the admin chooses between."""
    if not points:
        return []
    rows = [_point_row(name, point, default) for name, point in points.items()]
    return ["", "Named operating points (per image; Wilson 95% CIs):", "", *POINT_HEADER, *rows, ""]


def _patient_rule_lines(patient: dict[str, Any] | None) -> list[str]:
    """One decision per patient: the rule, why, and its figures on the test split's patients."""
    if not patient:
        return []
    found = patient["metrics"]
    by_rule = ", ".join(f"{r} {v:.4f}" for r, v in patient["calibration_split_auc_by_rule"].items())
    rows = [_point_row(name, point, None) for name, point in patient["operating_points"].items()]
    return [
        f"One decision per patient (both eyes): the kiosk combines the calibrated probabilities of a "
        f"patient's eyes with the rule **{patient['rule']}** (chosen on the calibration split, per-patient "
        f"AUC by rule: {by_rule}) and compares the result with the patient-level threshold of the point "
        f"in force. Test split: AUC **{found['auc']:.3f}** (95% CI {_ci(found['auc_ci'])}), "
        f"{found['n_patients']} patients ({found['n_positive']} with a referable eye).",
        "",
        *POINT_HEADER,
        *rows,
        "",
    ]


def _auc_cell(entry: dict[str, Any]) -> str:
    """'0.81 (0.74-0.88), 40+/60-' or why there is no figure."""
    if entry.get("auc") is None:
        return f"- ({entry.get('note', '')}, {entry['n_positive']}+/{entry['n_negative']}-)"
    return f"{entry['auc']:.3f} ({_ci(entry['auc_ci'])}), {entry['n_positive']}+/{entry['n_negative']}-"


def _probe_lines(probe: dict[str, Any] | None) -> list[str]:
    """The shortcut probe: does the score predict the film type better than the finding?"""
    if not probe:
        return []
    rows = [f"| the label (abnormal vs no finding), all films | {_auc_cell(probe['label'])} |"]
    for name, entry in probe.items():
        if name in ("label", "split"):
            continue
        for what, found in entry.get("score_predicts", {}).items():
            rows.append(f"| {name}: {what} (not the label) | {_auc_cell(found)} |")
        for value, found in entry["label_auc_within"].items():
            rows.append(
                f"| the label, within {name} = {value} (prevalence {entry['prevalence_within'][value]}) "
                f"| {_auc_cell(found)} |"
            )
    return [
        "",
        "Shortcut probe (test split): the AUC of the score for predicting each attribute instead of "
        "the label, and the label AUC within each value of the attribute. A model that had only learnt "
        "the film type (AP portable films are far more often positive) would predict AP vs PA better "
        "than the label, and lose its label AUC within AP and within PA films.",
        "",
        "| what the score is asked to predict | AUC (95% CI), positives/negatives |",
        "| --- | --- |",
        *rows,
        "",
    ]
