"""What a transfer-learned bundle says about its task: the task keys, its training, its films."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from export.data import Dataset
from export.evaluate import Evaluation
from export.recipes import Recipe

#: What a bundle's manifest says about its task (the schema agreed for "tasks as data").
TASK_INFO: dict[str, dict[str, Any]] = {
    "fundus-dr": {
        "kind": "fundus",
        "title": "Eye photograph (diabetic retinopathy)",
        "population": {
            "age_years": [18, 120],
            "description": "adults with diabetes (EyePACS screening programme, USA)",
        },
        "prevalence": 0.10,
        "codes": {
            "report": {
                "system": "http://loinc.org",
                "code": "32451-7",
                "display": "Physical findings of Eye",
            },
            "sides": {
                "L": {
                    "system": "http://loinc.org",
                    "code": "71490-7",
                    "display": "Diabetic retinopathy severity in left eye",
                },
                "R": {
                    "system": "http://loinc.org",
                    "code": "71491-5",
                    "display": "Diabetic retinopathy severity in right eye",
                },
            },
        },
        "referral": {"to": "an eye doctor", "urgency": "routine", "within": "within 3 months"},
    },
    # The keys kiosk/tasks.py's DEFAULTS gave the from-scratch 1.0.0, and its population.
    "cxr-pneumonia": {
        "kind": "cxr",
        "title": "Chest X-ray (children)",
        "population": {
            "age_years": [1, 5],
            "description": "children aged 1-5 from one hospital in Guangzhou",
        },
        "prevalence": 0.05,
        "codes": {
            "report": {"system": "http://loinc.org", "code": "24648-8", "display": "XR Chest PA upright"},
            "findings": {
                "pneumonia": {"system": "http://snomed.info/sct", "code": "233604007", "display": "Pneumonia"}
            },
        },
        "referral": {"to": "a doctor", "urgency": "urgent", "within": "today"},
    },
    "cxr-adult": {
        "kind": "cxr",
        "title": "Chest X-ray (adults)",
        "population": {
            "age_years": [18, 120],
            "description": "adults (18 and over) from one US hospital (NIH Clinical Center)",
        },
        "prevalence": 0.10,
        "codes": {
            "report": {"system": "http://loinc.org", "code": "24648-8", "display": "XR Chest PA upright"},
            "findings": {
                "abnormal": {"system": "http://snomed.info/sct", "code": "233604007", "display": "Pneumonia"}
            },
        },
        "referral": {"to": "a doctor", "urgency": "urgent", "within": "today"},
    },
}


def task_info_for(task: str) -> dict[str, Any]:
    """The manifest's task keys (kind, title, population, prevalence, codes, referral)."""
    return dict(TASK_INFO[task])


def describe_transfer(recipe: Recipe, net: Any, history: dict[str, Any]) -> str:
    """A paragraph on the pretrained backbone, its provenance and the fine-tuning run."""
    from export.lite import WEIGHTS
    from export.transfer import use_bf16

    info = WEIGHTS[recipe.backbone]
    epochs = history["history"]
    best = max(epochs, key=lambda e: e["val_auc"])
    minutes = sum(e["seconds"] for e in epochs) / 60
    params = sum(p.numel() for p in net.parameters())
    stages = ", ".join(f"{e} epochs from block {b}" for e, b in recipe.unfreeze)
    device = history.get("device", "cpu")
    precision = "bf16 autocast" if use_bf16(device, training=True) else "fp32 (bf16 only for the cache)"
    return (
        f"{recipe.backbone} ({params / 1e6:.2f} M parameters), ImageNet weights from the registry "
        f"package `{info.pin}` ({info.licence}; file `{info.file}`, sha256 `{info.sha256}`, checked "
        "before loading); the 1000-class classifier is replaced by a 1x1 convolution over the last "
        "feature map (class-activation map; its spatial mean is the logit)"
        + (", the RGB stem filters summed for grey films" if recipe.spec["channels"] == 1 else "")
        + f". Fine-tuned on {device}: the stem and the first {recipe.cache_blocks} blocks stay frozen and "
        f"their activations were cached for {recipe.cached_views} augmented views of every training "
        f"image (view 0 as it is; {augmentation_words(recipe)}); staged unfreezing ({stages}); "
        "discriminative learning rates (each block deeper x"
        f"{recipe.lr_decay}); AdamW (peak lr {recipe.lr}, weight decay {recipe.weight_decay}), warm-up + "
        f"cosine, batch {recipe.batch}, EMA weights, channels-last, {precision}. {len(epochs)} epochs, "
        f"{minutes:.0f} min; the checkpoint with the best calibration-split AUC "
        f"({best['val_auc']:.3f}, epoch {best['epoch']}) is shipped. {recipe.extra.get('training_note', '')}"
        + (
            " Trained on four ordinal targets (ICDR >= 1, >= 2, >= 3, >= 4); the bundle ships >= 2."
            if recipe.outputs > 1
            else ""
        )
    )


def augmentation_words(recipe: Recipe) -> str:
    """What the cached training views were augmented with, for the card."""
    if recipe.film_shifts:
        from export.film_shift import DESCRIPTION

        return DESCRIPTION
    words = "flips, rotation, zoom, shift, brightness/contrast"
    return words + (", sharpen/blur" if recipe.sharpness else "")


def chest_attributes(data_dir: Path, names: np.ndarray) -> dict[str, np.ndarray]:
    """View (AP/PA), sex and age band of NIH films by file name, for the shortcut probe."""
    from export.data import adult_chest_rows

    rows = {r["image"]: r for r in adult_chest_rows(data_dir)}

    def band(age: str) -> str:
        if not age.isdigit():
            return ""
        return "18-39" if int(age) < 40 else "40-59" if int(age) < 60 else "60+"

    return {
        "view": np.array([rows[n]["view"] for n in names]),
        "sex": np.array([rows[n]["sex"] for n in names]),
        "age": np.array([band(rows[n]["age"]) for n in names]),
    }


def add_task_sections(
    manifest: dict[str, Any],
    recipe: Recipe,
    ev: Evaluation,
    cal: tuple[Dataset, np.ndarray],
    test: tuple[Dataset, np.ndarray],
    task_info: dict[str, Any] | None,
) -> None:
    """The task-as-data keys (kind, title, population, codes, referral), the named operating
    points and, where a patient has several images, the patient rule (docs: task-manifest)."""
    from export.screening import screening_sections

    k = recipe.head_index
    per_patient = len(np.unique(test[0].patients)) < len(test[0].patients) and recipe.task == "fundus-dr"
    sections = screening_sections(
        recipe.screening_sensitivity,
        ev.temperature,
        (cal[0].targets[:, k], cal[1], cal[0].patients),
        (test[0].targets[:, k], test[1], test[0].patients),
        recipe.seed,
        per_patient,
    )
    manifest.update(task_info or {})
    manifest["findings"][0]["operating_points"] = sections["operating_points"]
    manifest["default_operating_point"] = sections["default_operating_point"]
    if "patient" in sections:
        manifest["patient"] = sections["patient"]
    # Superseded by the patient rule (fundus); a chest patient's films are of different days.
    manifest["metrics"].pop("per_patient", None)


def chest_probe(data_dir: Path, seed: int) -> Callable[[Dataset, np.ndarray], dict[str, Any]]:
    """The shortcut probe of adult films (view, sex, age band) on the test split."""
    from export.screening import shortcut_probe

    def probe(test: Dataset, probabilities: np.ndarray) -> dict[str, Any]:
        attributes = chest_attributes(data_dir, test.names)
        found = shortcut_probe(test.targets[:, 0], probabilities, attributes, seed)
        return {"split": "test split", **found}

    return probe
