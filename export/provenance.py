"""What the cards and manifests say about data, training, limits and shifted data, per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.data import Dataset
from export.nets import ScreeningNet
from export.recipes import Recipe
from kiosk.domain import Image
from kiosk.preprocess import prepare
from kiosk.stats import sigmoid

FUNDUS_GRADES = {
    "10_left": 0,
    "10_right": 0,
    "13_left": 0,
    "13_right": 0,
    "15_left": 1,
    "15_right": 2,
    "16_left": 4,
    "16_right": 4,
    "17_left": 0,
    "17_right": 1,
}


def training_data_for(task: str, data: Dataset) -> dict[str, Any]:
    """The manifest's ``training_data``."""
    common = {
        "patients": len(np.unique(data.patients)),
        "images": len(data.images),
        "split": "by patient: train 70% / calibration 15% / test 15% of patients",
    }
    if task == "cxr-adult":
        return {
            **common,
            "split": "by patient: train 60% / calibration 20% / test 20% of patients",
            "name": "NIH ChestX-ray14 adult frontal films (512 px subset)",
            "licence": "NIH: unrestricted use, cite Wang et al. 2017",
            "source": "NIH Clinical Center ChestX-ray8/14 (../shared/data/cxr/nih-adult-512); films of "
            "patients recorded as under 18 excluded",
            "positive": "NIH labels include Pneumonia (negatives: 'No Finding')",
            "prevalence": round(float(data.targets[:, 0].mean()), 4),
        }
    if task == "fundus-dr":
        return {
            **common,
            "name": "EyePACS (Kaggle 2015) 256 px",
            "licence": "research, non-commercial",
            "source": "EyePACS / Kaggle Diabetic Retinopathy Detection 2015 "
            "(../shared/data/fundus/eyepacs-256)",
            "positive": "ICDR level >= 2",
            "prevalence": round(float(data.targets[:, 1].mean()), 4),
        }
    return {
        **common,
        "name": "Kermany 2018 paediatric chest X-rays (224 px copy)",
        "licence": "CC BY 4.0",
        "source": "Kermany, Zhang, Goldbaum 2018, doi:10.17632/rscbjbr9sj.2 "
        "(../shared/data/cxr/kermany-224/train)",
        "positive": "PNEUMONIA folder (bacterial or viral)",
        "prevalence": round(float(data.targets[:, 0].mean()), 4),
    }


def limitations_for(task: str) -> list[str]:
    """Known limits, in plain words."""
    if task == "cxr-adult":
        return [
            "Labels were mined from radiology reports by software (NIH ChestX-ray14); Pneumonia is its "
            "noisiest label, and the positives often carry other findings too: the model flags 'pneumonia "
            "or other abnormality', not pneumonia specifically.",
            "Many positives are portable AP films of inpatients (lines, tubes); see the shortcut probe: "
            "part of what the score measures may be the film type rather than the disease.",
            "One hospital (NIH Clinical Center, USA), 738 films of about 500 patients: small, with wide "
            "confidence intervals; other hospitals, detectors and populations are untested.",
            "Adults only (18 and over); children must be read with the paediatric model or by a clinician.",
            "Not for clinical decisions.",
        ]
    if task == "fundus-dr":
        return [
            "Trained on 256 px downscaled EyePACS photographs (aspect squashed): small lesions such as "
            "microaneurysms are barely visible at this size, so mild and early moderate disease "
            "is missed often.",
            "EyePACS grades are single-reader and noisy; the reported AUC includes that noise.",
            "One population (US screening programme, mostly one camera family); other cameras, "
            "ethnicities and image sizes are untested.",
            "Does not grade diabetic macular oedema separately, nor other eye disease.",
            "Both eyes of a patient are scored independently; the kiosk combines them.",
        ]
    return [
        "Trained on paediatric films (age 1-5) from one hospital in Guangzhou; adult films are out of "
        "distribution and its scores on them must not be trusted (see 'Behaviour on shifted data').",
        "The training images are a 224 px re-encoded copy with squashed aspect ratio.",
        "Normal vs pneumonia only: other findings (effusion, nodules, pneumothorax, TB) are not detected "
        "and may be scored as pneumonia or as normal.",
        "The validation split carved from the training set is known to be easier than the "
        "official test split "
        "(published AUC 0.968 there); expect lower figures on independent data.",
        "The official Kermany test split is kept back and was not visible when this bundle was built: "
        "the issue's target there (AUC >= 0.97, sensitivity >= 0.90, specificity >= 0.80) is not "
        "measured; the in-house test split is from the same hospital, films and processing as the "
        "training films.",
    ]


def describe_training(recipe: Recipe, nets: list[ScreeningNet], histories: list[dict[str, Any]]) -> str:
    """A paragraph on the network(s) and the run(s)."""
    params = sum(p.numel() for p in nets[0].parameters())
    runs = " ".join(_describe_run(recipe, m, h, len(histories)) for m, h in enumerate(histories))
    ensemble = ""
    if recipe.members > 1 or recipe.views > 1:
        ensemble = (
            f" {recipe.members} networks were trained independently (seeds {recipe.seed}.."
            f"{recipe.seed + recipe.members - 1}; the patient split is the same for all); the shipped "
            f"graph averages the chosen ones over up to {recipe.views} mirrored views of the image, "
            "each heat-map mirrored back before the average, so the `cam` output still explains the "
            "score exactly."
        )
    augmentation = "flips, rotation, zoom, shift, brightness/contrast" + (
        ", random sharpen/blur (unsharp mask, amount -0.8..0.6)" if recipe.sharpness else ""
    )
    return (
        f"ResNet-style CNN trained from scratch ({params / 1e6:.2f} M parameters each; widths "
        f"{recipe.widths}, blocks {recipe.blocks}; last layer a 1x1 convolution whose spatial mean is the "
        f"logit). Batch {recipe.batch}, AdamW (lr {recipe.lr}, weight decay {recipe.weight_decay}), "
        f"warm-up + cosine schedule, bf16 autocast on CPU; augmentation: {augmentation}. {runs}"
        " Weights: exponential moving average; each network's checkpoint chosen by calibration-split AUC."
        + ensemble
        + (
            " Trained on four ordinal targets (ICDR >= 1, >= 2, >= 3, >= 4); the bundle ships >= 2."
            if recipe.outputs > 1
            else ""
        )
    )


def _describe_run(recipe: Recipe, member: int, history: dict[str, Any], members: int) -> str:
    """One sentence on one network's run: epochs, budget, warm restarts, best epoch."""
    epochs = history["history"]
    best = max(epochs, key=lambda e: e["val_auc"])
    minutes = sum(e["seconds"] for e in epochs) / 60
    stages = history.get("stages", [])
    first_cycle = stages[0]["after_epoch"] if stages else len(epochs)
    who = f"Network {member + 1} of {members}" if members > 1 else "The network"
    budget = ""
    if history.get("budget_s"):
        budget = (
            f", the schedule compressed into a wall-clock budget of {history['budget_s'] / 60:.0f} min "
            "(the learning rate followed whichever of steps or time was further along)"
        )
    threads = history.get("threads")
    cores = f" on {threads} thread(s)" if isinstance(threads, int) else ""
    restarts = "".join(
        f"; then a warm-restart cosine cycle of up to {st['epochs']} more epochs (peak lr {st['lr']}"
        + (f", budget {st['budget_s'] / 60:.0f} min" if st.get("budget_s") else "")
        + ")"
        for st in stages
    )
    return (
        f"{who}: {first_cycle} of at most {recipe.epochs} epochs{budget}{restarts}; {len(epochs)} epochs in "
        f"all, {minutes:.0f} min{cores}; best calibration-split AUC {best['val_auc']:.3f} at epoch "
        f"{best['epoch']}."
    )


def _probability(model: Path, pixels: np.ndarray, manifest: dict[str, Any]) -> float:
    """Calibrated probability of the ONNX model for one image, through the kiosk's preprocessing."""
    from export.onnx_export import onnx_outputs

    tensor = prepare(Image(pixels), manifest["input"])[None]
    logit = float(onnx_outputs(model, tensor)["logits"][0, 0])
    return float(sigmoid(np.array(logit / manifest["calibration"]["temperature"])))


def shift_probe(
    task: str, model: Path, manifest: dict[str, Any], data_dir: Path, splits: dict[str, str]
) -> str:
    """Markdown: the model's scores on images from outside its training distribution.

    ``splits`` maps patient id → train/calibration/test in the model's own data (for overlap).
    """
    from kiosk.intake import read_image

    threshold = manifest["findings"][0]["threshold"]
    rows: list[str] = []
    positives: list[str] = []
    scores: dict[str, float] = {}
    if task == "fundus-dr":
        return fundus_shift(model, manifest, data_dir, splits)
    for path in sorted((data_dir / "cxr" / "samples").iterdir()) + sorted((data_dir / "dicom").glob("*.dcm")):
        try:
            image = read_image(path.read_bytes(), source=path.name, kind_hint="cxr")
        except Exception as exc:  # intake refuses some of these on purpose (wrong body part, ...)
            rows.append(
                f"| {path.name} | refused by intake: {getattr(exc, 'code', type(exc).__name__)} | - |"
            )
            continue
        p = _probability(model, image.pixels, manifest)
        scores[path.name] = p
        if p >= threshold:
            positives.append(path.name)
        rows.append(
            f"| {path.name} | {p:.3f} ({'positive' if p >= threshold else 'negative'}) | {image.kind} |"
        )
    head = (
        "Adult chest films from other populations (`cxr/samples`) and the chest DICOMs, through the kiosk's "
        "intake and preprocessing. The labels in the file names are the truth where known. "
        f"Called positive at the shipped threshold: {len(positives)} of "
        f"{sum('refused' not in r for r in rows)} films read ({', '.join(positives) or 'none'}). "
        + (_adult_summary if task == "cxr-adult" else _chest_summary)(scores, threshold)
    )
    table = "\n".join([head, "", "| file | probability | intake kind |", "| --- | --- | --- |", *rows])
    if task == "cxr-pneumonia":
        from export.generalise import generalisation_section

        table = generalisation_section(model, manifest, data_dir, splits) + "\n\n" + table
    return table


def without_step(manifest: dict[str, Any], op: str) -> dict[str, Any]:
    """The manifest with one preprocessing step removed from ``input.steps``."""
    spec = dict(manifest["input"])
    spec["steps"] = [step for step in spec["steps"] if step["op"] != op]
    return {**manifest, "input": spec}


def fundus_shift(model: Path, manifest: dict[str, Any], data_dir: Path, splits: dict[str, str]) -> str:
    """Markdown: full-size camera photographs against their 256 px copies, with the intake step
    that reproduces the data set's chain and (to show the cause) without it."""
    from kiosk.intake import read_image

    threshold = manifest["findings"][0]["threshold"]
    has_step = any(s["op"] == "like_eyepacs_256" for s in manifest["input"]["steps"])
    variants = {"shipped": manifest}
    if has_step:
        variants["without like_eyepacs_256"] = without_step(manifest, "like_eyepacs_256")
    folder = data_dir / "fundus" / "eyepacs-fullres"
    rows: list[str] = []
    diffs: dict[str, list[float]] = {name: [] for name in variants}
    scored: dict[str, list[tuple[float, int]]] = {name: [] for name in variants}  # (p, grade)
    for path in sorted(folder.glob("*.jpeg")):
        full = read_image(path.read_bytes(), source=path.name, kind_hint="fundus").pixels
        copy = data_dir / "fundus" / "eyepacs-256" / "images" / path.name
        small = read_image(copy.read_bytes(), kind_hint="fundus").pixels if copy.is_file() else None
        small_p = _probability(model, small, manifest) if small is not None else None
        grade = FUNDUS_GRADES.get(path.stem, -1)
        cells = []
        for name, variant in variants.items():
            p = _probability(model, full, variant)
            scored[name].append((p, grade))
            if small_p is not None:
                diffs[name].append(abs(p - small_p))
            cells.append(f"{p:.3f} ({'refer' if p >= threshold else 'no'})")
        split = splits.get("eyepacs-" + path.stem.split("_")[0], "not in the 256 px set")
        small_cell = "-" if small_p is None else f"{small_p:.3f}"
        rows.append(f"| {path.name} | ICDR {grade} | {' | '.join(cells)} | {small_cell} | {split} |")
    points = {
        name: float(point["threshold"])
        for name, point in (
            manifest["findings"][0].get("operating_points") or {"default": {"threshold": threshold}}
        ).items()
    }
    lines = [
        f"{name}: mean |full-size - 256 px copy| {np.mean(diffs[name]):.3f} over {len(diffs[name])} eyes; "
        "full-size photographs called right (referable = ICDR >= 2) "
        + ", ".join(
            f"{sum((p >= t) == (g >= 2) for p, g in scored[name])} of {len(scored[name])} "
            f"at the {point} point ({t:.3f})"
            for point, t in points.items()
        )
        for name in variants
    ]
    head = (
        "Full-resolution EyePACS photographs (2592x1944 to 4928x3264) as a camera delivers them, "
        "through the kiosk's own intake and preprocessing, against their 256 px training-set copies "
        "(patients 10, 13, 15 and 16; their split is shown). Cause of the gap: compared pixel by pixel "
        "with their full-size originals, the 256 px copies the model learned from are the field-of-view "
        "disc cropped square, each colour channel histogram-equalised, squashed to 256x256 and re-encoded "
        "as JPEG q90 (mean |difference| 8.5 of 255, against 46 for a crop and resize alone): a camera "
        "photograph has neither their colours nor their contrast. The intake step `like_eyepacs_256` "
        "reproduces that chain for any photograph larger than 320 px (it does nothing to a 256 px copy). "
        + "; ".join(lines)
        + "."
    )
    header = " | ".join(f"probability, {name}" for name in variants)
    table = [
        f"| image | grade | {header} | its 256 px copy | patient's split |",
        "| --- " * (4 + len(variants)) + "|",
    ]
    return "\n".join([head, "", *table, *rows])


def _chest_summary(scores: dict[str, float], threshold: float) -> str:
    """Sentences on the labelled adult films: the pneumonia case and the films without pneumonia."""
    pneumonia = [p for name, p in scores.items() if "pneumonia" in name]
    clear = [p for name, p in scores.items() if "healthy" in name or "no-finding" in name]
    parts = []
    if pneumonia:
        verdict = "found" if max(pneumonia) >= threshold else "missed"
        parts.append(f"The adult pneumonia film (COVID-19) scores {max(pneumonia):.3f}: {verdict}.")
    if clear:
        parts.append(f"Films reported healthy / no finding score {min(clear):.3f}-{max(clear):.3f}.")
    parts.append(
        "Scores on adult films spread over the whole range with no clear relation to their labels: "
        "this is a paediatric model and the kiosk must not use it on adults."
    )
    return " ".join(parts)


def _adult_summary(scores: dict[str, float], threshold: float) -> str:
    """Sentences on the labelled adult films from other populations."""
    words = ("pneumonia", "-tb", "cardiomegaly", "nodule")
    abnormal = {n: p for n, p in scores.items() if any(w in n for w in words)}
    clear = {n: p for n, p in scores.items() if "healthy" in n or "no-finding" in n}
    found = sum(p >= threshold for p in abnormal.values())
    cleared = sum(p < threshold for p in clear.values())
    return (
        f"Films with a finding in their name: {found} of {len(abnormal)} called abnormal; films reported "
        f"healthy / no finding: {cleared} of {len(clear)} cleared. Eight films are far too few to measure "
        "generalisation, but where films from other hospitals, detectors and countries score high "
        "whatever their label, expect many more referrals there than the test-split specificity "
        "suggests: the kept-back external adult set is the real check."
    )
