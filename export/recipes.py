"""What each reference model is: data, input spec, labels, network size and schedule."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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

#: fundus-dr 2.0: the ImageNet backbone wants RGB in [-1, 1]; a camera photograph first goes
#: through the data set's own chain (squash to 256 px, JPEG q90), see kiosk/preprocess.py.
FUNDUS_SPEC_V2: dict[str, Any] = {
    **FUNDUS_SPEC,
    "steps": [
        {"op": "like_eyepacs_256", "size": 256, "quality": 90, "max_ratio": 1.25},
        *FUNDUS_SPEC["steps"][:-1],
        {"op": "scale", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    ],
}

#: Adult films (NIH, 512 px): larger input than the paediatric model, [-1, 1] for the backbone.
ADULT_CHEST_SPEC: dict[str, Any] = {
    **CHEST_SPEC,
    "size": 256,
    "steps": [
        {"op": "grey"},
        {"op": "resize", "size": 256},
        {"op": "clahe", "clip": 2.0, "tiles": 8},
        {"op": "scale", "mean": [0.5], "std": [0.5]},
    ],
}

#: cxr-pneumonia 1.1: the Kermany films are 224 px already (no resampling); [-1, 1] for the backbone.
PAEDIATRIC_CHEST_SPEC: dict[str, Any] = {
    **CHEST_SPEC,
    "size": 224,
    "steps": [
        {"op": "grey"},
        {"op": "resize", "size": 224},
        {"op": "clahe", "clip": 2.0, "tiles": 8},
        {"op": "scale", "mean": [0.5], "std": [0.5]},
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
    #: Random left-right mirroring in training (off for films whose heart side is information).
    hflip: bool = True
    #: Film-level shifts (export/film_shift.py: crop, gamma, resolution loss, blur/sharpen, noise,
    #: JPEG) applied to the file's pixels *before* the kiosk's preprocessing, in the cached views.
    film_shifts: bool = False
    #: Seed of the patient split (fixed for every member) and of the first member's training.
    seed: int = 2026
    #: A fine-tune's own training seed (initial head, batches, views), when not ``seed``: the
    #: split stays that of ``seed``.
    train_seed: int = 0
    #: Networks trained independently (seeds seed, seed + 1, ...) and averaged in the shipped graph.
    members: int = 1
    #: Test-time views averaged in the shipped graph: 1 (none), 2 (+ mirror) or 4 (+ both flips).
    views: int = 1
    #: Random sharpen/blur in training, so a sharper camera photograph is not a new world.
    sharpness: bool = False
    target: str = "sensitivity >= 0.90"
    version: str = "1.0.0"
    #: Share of patients in the train and calibration splits (the rest is the test split).
    fractions: tuple[float, float] = (0.70, 0.15)
    #: Transfer learning (export/transfer.py): an ImageNet backbone of export/lite.py, or "" for
    #: the from-scratch ScreeningNet of export/nets.py.
    backbone: str = ""
    #: Blocks of the backbone kept frozen whose activations are cached (stem + this many blocks).
    cache_blocks: int = 5
    #: Augmented views of every training image cached (view 0 is the image as it is).
    cached_views: int = 6
    #: Staged unfreezing: (epochs, first trainable block); the head is always trained.
    unfreeze: tuple[tuple[int, int], ...] = ()
    #: The backbone enlarges its input by this factor first (export/lite.py: LiteNet.upscale).
    upscale: float = 1.0
    #: Sensitivity the shipped ('screening') threshold reaches on the calibration split.
    screening_sensitivity: float = 0.90
    #: Discriminative learning rates: each block deeper from the head trains at this factor less.
    lr_decay: float = 0.85
    extra: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "fundus-dr": Recipe(
        task="fundus-dr",
        name="Fundus DR model (EfficientNet-Lite0, ImageNet transfer)",
        spec=FUNDUS_SPEC_V2,
        label="referable_dr",
        display="Referable diabetic retinopathy (moderate NPDR or worse)",
        urgent=False,
        widths=(),
        blocks=(),
        epochs=14,
        batch=48,
        lr=1.5e-3,
        weight_decay=1e-4,
        views=4,
        sharpness=True,
        version="2.0.0",
        outputs=4,
        head_index=1,
        backbone="efficientnet-lite0",
        cache_blocks=5,
        # Two cached views (+ random mirroring of the cached maps): the frozen stages cost about as
        # much as the training on these shared cores, see docs/models.md.
        cached_views=2,
        unfreeze=((1, 16), (1, 11), (12, 5)),
        extra={
            "training_note": "The run began with 6 epochs in the last stage (8 in all); after epoch 5 it "
            "was stopped and resumed from its checkpoint with 12 (14 in all), since the 55 min budget had "
            "room (the cosine schedule stretched from there). The calibration-split AUC then fell epoch "
            "after epoch (0.799, 0.791, 0.774, 0.769, 0.747: over-fitting two cached views), so the run "
            "was stopped after epoch 9; epoch 5 ships. A second run (four cached views, peak lr 1e-3) "
            "reached only 0.774 in 5 epochs and was dropped (the choice made on the calibration split)."
        },
        target="sensitivity >= 0.90 (screening goal on new eyes >= 0.87)",
    ),
    # An experiment against over-fitting: freeze more (cache after block 11), four cached views.
    "cxr-adult": Recipe(
        task="cxr-adult",
        name="Adult chest X-ray model (EfficientNet-Lite0, ImageNet transfer)",
        spec=ADULT_CHEST_SPEC,
        label="abnormal",
        display="Pneumonia or other abnormality on an adult chest film",
        urgent=True,
        widths=(),
        blocks=(),
        epochs=20,
        batch=32,
        lr=1e-3,
        weight_decay=1e-4,
        views=2,
        vflip=False,
        rotate=False,
        version="1.0.0",
        backbone="efficientnet-lite0",
        cache_blocks=5,
        cached_views=8,
        # 546 patients: 20% calibration / 20% test, so operating points and CIs rest on more films.
        fractions=(0.60, 0.20),
        unfreeze=((2, 16), (3, 11), (15, 5)),
        target="sensitivity >= 0.85 (goal on new films >= 0.80)",
        screening_sensitivity=0.85,
    ),
    "fundus-dr-1.1": Recipe(
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

#: The paediatric model retrained from ImageNet weights with augmentation aimed at the shifts
#: between hospitals (exposure, detector resolution, processing, compression, framing), not the
#: in-house split: 1.0.0 reached 0.998 in house but about 0.95 on the kept-back test films.
RECIPES["cxr-pneumonia-1.1"] = replace(
    RECIPES["cxr-adult"],
    task="cxr-pneumonia",
    name="Paediatric chest X-ray pneumonia model (EfficientNet-Lite0, ImageNet transfer)",
    spec=PAEDIATRIC_CHEST_SPEC,
    label="pneumonia",
    display="Pneumonia (consolidation on a chest film)",
    version="1.1.0",
    batch=32,
    views=1,
    hflip=False,
    film_shifts=True,
    cached_views=8,
    fractions=(0.70, 0.15),  # the split of 1.0.0 (same seed), so the two compare on the same films
    unfreeze=((1, 16), (2, 11), (12, 5)),
    target="sensitivity >= 0.90 (goal on new films >= 0.90, specificity >= 0.80)",
    screening_sensitivity=0.90,
)

# An experiment against over-fitting: freeze more (cache after block 11), four cached views.
RECIPES["fundus-dr-b"] = replace(
    RECIPES["fundus-dr"], epochs=6, lr=1e-3, cache_blocks=11, cached_views=4,
    unfreeze=((1, 16), (5, 11)), extra={},
)

# fundus-dr 2.1 (issue 12): the 2.0 recipe over-fitted its two cached views after epoch 5 (the
# calibration-split AUC fell from 0.799 to 0.747). Eight cached views (one drawn at random per
# image per epoch, as for the chest models), a lower peak learning rate and stronger weight decay,
# and a shorter last stage. Chosen against 2.0 on the calibration split only. Tried 2026-12-04:
# best calibration-split AUC 0.779 (epoch 6, then falling), under 2.0's 0.799: not built.
RECIPES["fundus-dr-2.1"] = replace(
    RECIPES["fundus-dr"], version="2.1.0", cached_views=8, lr=1e-3, weight_decay=1e-2,
    unfreeze=((1, 16), (1, 11), (8, 5)), extra={},
)

# fundus-dr 2.2 (issue 12): both cached recipes over-fitted their few cached views within five
# epochs. Here every training image is augmented afresh at every step (cached_views = 0: the
# frozen stem and first five blocks run forward on each batch, export/transfer.py: FreshViews).
# Tried 2026-12-04 (quiet machine, 80-130 s per epoch): calibration-split AUC 0.785 at epoch 6,
# then falling to 0.764 by epoch 11 (stopped there); under 2.0's 0.799.
RECIPES["fundus-dr-2.2"] = replace(
    RECIPES["fundus-dr"], version="2.2.0", cached_views=0, lr=1.5e-3, weight_decay=1e-4,
    unfreeze=((1, 16), (1, 11), (12, 5)), extra={},
)

# fundus-dr 2.3: 2.2 with the 256 px photograph enlarged to 320 px inside the network (the issue:
# "try larger inputs where the source allows"; the copies are 256 px, so the gain can only come
# from small lesions spanning more than the stem's stride). About 1.6 times 2.2's cost.
# 2.2 peaked at epoch 6 (0.785) with the learning rate still high and fell after (0.764 by epoch
# 11) while its loss kept falling: fresh views slow the over-fitting but do not stop it. So 2.3
# also ends its cosine schedule where 2.2 peaked (7 epochs in all).
# Tried 2026-12-04 (200-300 s per epoch, 27 min): calibration-split AUC 0.784 at epoch 7, the
# same as 2.2's 0.785 at 256 px: the enlarged input gains nothing here.
RECIPES["fundus-dr-2.3"] = replace(
    RECIPES["fundus-dr-2.2"], version="2.3.0", upscale=1.25, unfreeze=((1, 16), (1, 11), (5, 5))
)

# fundus-dr 2.4: 2.2 (256 px) with 2.3's short schedule and its own training seed; the split is
# the same (seed 2026). A control for 2.3's larger input, and an ingredient of a weight average.
# Tried 2026-12-04 (90-140 s per epoch, 13 min): 0.793 at epoch 5. The weight average of 2.2, 2.3
# and 2.4 (python -m export.soup) reached 0.807 against 2.0.1's 0.800 (paired difference +0.007,
# 95% CI -0.018 to +0.031): not built (docs/models.md).
RECIPES["fundus-dr-2.4"] = replace(
    RECIPES["fundus-dr-2.2"], version="2.4.0", train_seed=2027, unfreeze=((1, 16), (1, 11), (5, 5))
)

# fundus-dr 3.x (issue 12, on a lent GPU): every cached or partly frozen recipe above over-fitted
# within five to seven epochs at calibration-split AUC 0.78-0.80. On a GPU the whole network is
# fine-tuned end to end (only the stem stays frozen: cache_blocks = 0) on views drawn afresh at
# every step, on the GPU itself (export/train.py: augment), with discriminative learning rates
# from the head (1e-3) down to block 0 (0.85 ** 16 = 0.07 of it). Four runs side by side on one
# GPU: three seeds at 256 px and one with the input enlarged 1.5 times; the best epoch of each is
# chosen on the calibration split, and export.soup weighs their weight average the same way.
# Run with scripts/train-gpu.sh. Tried 2026-12-04 on a lent H200 (four runs side by side, 8-12 s
# per epoch, 20 epochs in under 5 min): best calibration-split AUC 0.771 (3.0, epoch 7), 0.786
# (3.1, epoch 8), 0.792 (3.2, epoch 11), 0.800 (3.3, x1.5, epoch 10), each falling after to
# 0.74-0.77 by epoch 20 while the training loss fell from 0.24 to 0.09: end to end on a GPU
# over-fits these 3,778 eyes as the CPU recipes did, and peaks no higher than 2.0 (0.799).
RECIPES["fundus-dr-3.0"] = replace(
    RECIPES["fundus-dr"], version="3.0.0", cache_blocks=0, cached_views=0, batch=64, lr=1e-3,
    weight_decay=1e-4, unfreeze=((1, 16), (1, 8), (18, 0)), extra={},
)
RECIPES["fundus-dr-3.1"] = replace(RECIPES["fundus-dr-3.0"], version="3.1.0", train_seed=2027)
RECIPES["fundus-dr-3.2"] = replace(RECIPES["fundus-dr-3.0"], version="3.2.0", train_seed=2028)
RECIPES["fundus-dr-3.3"] = replace(RECIPES["fundus-dr-3.0"], version="3.3.0", train_seed=2029, upscale=1.5)
# The four Lite0 runs above peaked at 0.771-0.800 (3.3, enlarged 1.5 times, the best) by epoch
# 7-11 and fell after, as the CPU recipes did. Next on a GPU: the larger EfficientNet-Lite2 (its
# own input is 260 px), at 256 px and enlarged 1.5 times, two seeds each. Prepared, not yet run:
# the session's second call found no machine to lend (2026-12-04). Its checkpoints are 19 MB in
# fp32; scripts/train-gpu.sh hands them back in fp16.
RECIPES["fundus-dr-3.4"] = replace(
    RECIPES["fundus-dr-3.0"], version="3.4.0", backbone="efficientnet-lite2", train_seed=2030,
)
RECIPES["fundus-dr-3.5"] = replace(RECIPES["fundus-dr-3.4"], version="3.5.0", train_seed=2031)
RECIPES["fundus-dr-3.6"] = replace(RECIPES["fundus-dr-3.4"], version="3.6.0", train_seed=2032, upscale=1.5)
RECIPES["fundus-dr-3.7"] = replace(RECIPES["fundus-dr-3.4"], version="3.7.0", train_seed=2033, upscale=1.5)
