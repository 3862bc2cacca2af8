"""What each reference model is: data, input spec, labels, network size and schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FUNDUS_SPEC: dict[str, Any] = {
    "name": "image",
    "size": 256,
    "channels": 3,
    "layout": "NCHW",
    "dtype": "float32",
    "steps": [
        {"op": "fundus_crop", "margin": 0.02},
        {"op": "resize", "size": 256},
        {"op": "ben_graham", "sigma_fraction": 0.033},
        {"op": "fov_mask", "shrink": 0.92, "fill": 128},
        {"op": "scale", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    ],
}

CHEST_SPEC: dict[str, Any] = {
    "name": "image",
    "size": 192,
    "channels": 1,
    "layout": "NCHW",
    "dtype": "float32",
    "steps": [
        {"op": "grey"},
        {"op": "resize", "size": 192},
        {"op": "clahe", "clip": 2.0, "tiles": 8},
        {"op": "scale", "mean": [0.5], "std": [0.25]},
    ],
}

MNIST_SPEC: dict[str, Any] = {
    "name": "image",
    "size": 28,
    "channels": 1,
    "layout": "NCHW",
    "dtype": "float32",
    "steps": [{"op": "grey"}, {"op": "resize", "size": 28}, {"op": "scale", "mean": [0.5], "std": [0.25]}],
}


@dataclass(frozen=True)
class Recipe:
    """Everything that defines one trained model, so that a retrain reproduces it."""

    task: str
    name: str
    spec: dict[str, Any]
    label: str
    display: str
    urgent: bool
    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    epochs: int
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    #: Outputs the network is trained on; ``head_index`` is the one the bundle ships.
    outputs: int = 1
    head_index: int = 0
    rotate: bool = True
    vflip: bool = True
    #: Seed of the patient split (fixed for every member) and of the first member's training.
    seed: int = 2026
    #: Networks trained independently (seeds seed, seed + 1, ...) and averaged in the shipped graph.
    members: int = 1
    #: Test-time views averaged in the shipped graph: 1 (none), 2 (+ mirror) or 4 (+ both flips).
    views: int = 1
    #: Random sharpen/blur in training, so a sharper camera photograph is not a new world.
    sharpness: bool = False
    target: str = "sensitivity >= 0.90"
    version: str = "1.0.0"
    extra: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "fundus-dr": Recipe(
        task="fundus-dr",
        name="Fundus DR reference model",
        spec=FUNDUS_SPEC,
        label="referable_dr",
        display="Referable diabetic retinopathy (moderate NPDR or worse)",
        urgent=False,
        widths=(16, 32, 64, 128, 256),
        blocks=(1, 1, 2, 3, 2),
        epochs=36,
        members=3,
        views=4,
        sharpness=True,
        version="1.1.0",
        # Ordinal targets: level >= 1, >= 2 (referable, shipped), >= 3, >= 4.
        outputs=4,
        head_index=1,
    ),
    "cxr-pneumonia": Recipe(
        task="cxr-pneumonia",
        name="Chest X-ray pneumonia reference model",
        spec=CHEST_SPEC,
        label="pneumonia",
        display="Pneumonia (consolidation on a chest film)",
        urgent=True,
        widths=(24, 32, 64, 128, 192),
        blocks=(1, 1, 1, 2, 1),
        epochs=12,
        vflip=False,
        rotate=False,
    ),
    "smoke": Recipe(
        task="cxr-pneumonia",
        name="PneumoniaMNIST smoke model",
        spec=MNIST_SPEC,
        label="pneumonia",
        display="Pneumonia (smoke test)",
        urgent=True,
        widths=(8, 16),
        blocks=(1, 1),
        epochs=1,
        batch=128,
        vflip=False,
        rotate=False,
        version="0.0.1",
    ),
}
