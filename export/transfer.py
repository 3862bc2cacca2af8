"""Fine-tune an ImageNet backbone on two CPU cores: cached frozen stages, staged unfreezing.

The stem and the first ``recipe.cache_blocks`` blocks stay frozen; their activations are computed
once for ``recipe.cached_views`` augmented views of every training image (view 0 unaugmented)
and kept in ``export/work/<task>/transfer/``; with ``cached_views = 0`` nothing is cached and
every batch is augmented afresh and run through the frozen stages (``FreshViews``, about twice
the cost of a cached epoch). Training then runs only the rest of the network:
the head first, then deeper blocks in stages (``recipe.unfreeze``), each block at a learning
rate ``recipe.lr_decay`` times the one above it, with EMA weights, channels-last, bf16 autocast
where the CPU has AMX (elsewhere bf16 is slower than fp32, measured), and a checkpoint every
epoch that ``python -m export train TASK`` resumes from. ``--device cuda`` runs the same on a GPU.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from export.data import Dataset
from export.lite import LiteNet, pretrained
from export.recipes import Recipe
from export.train import (
    Ema,
    Schedule,
    ThreadGovernor,
    augment,
    save_checkpoint,
    seed_everything,
    to_tensor,
)
from kiosk.stats import auc

Log = Callable[[str], None]


def transfer_dir(work: Path, task: str) -> Path:
    """Where a fine-tuned model keeps its feature cache and checkpoints."""
    return work / task / "lite"


def cpu_flags() -> str:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def use_bf16(device: str, training: bool) -> bool:
    """bf16 autocast where it is faster (measured here): CUDA; a CPU with AMX tiles; for inference
    only, a CPU with AVX512-BF16 (its bf16 backward of depthwise convolutions is slower than fp32)."""
    if device.startswith("cuda"):
        return True
    flags = cpu_flags()
    return "amx_bf16" in flags or (not training and "avx512_bf16" in flags)


def autocast(device: str, training: bool = False) -> Any:
    """The autocast context for ``device`` (disabled where bf16 would be slower)."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=use_bf16(device, training))


@torch.no_grad()
def frozen_features(
    net: LiteNet, images: np.ndarray, recipe: Recipe, device: str, generator: torch.Generator | None
) -> np.ndarray:
    """fp16 activations after the frozen blocks, of augmented views when ``generator`` is given."""
    net.eval()
    out = []
    for start in range(0, len(images), 64):
        x = to_tensor(images[start : start + 64], recipe.spec)
        if generator is not None:
            x = augment(x, recipe, generator)
        with autocast(device):
            y = net.prefix(x.to(device), recipe.cache_blocks)
        out.append(y.float().cpu().numpy().astype(np.float16))
    return np.concatenate(out)


def cached(path: Path, make: Callable[[], np.ndarray]) -> np.ndarray:
    """``make()`` saved at ``path`` once (atomically), memory-mapped afterwards."""
    if not path.exists():
        partial = path.with_name(path.stem + ".partial.npy")
        np.save(partial, make())
        partial.replace(path)
    return np.load(path, mmap_mode="r")


def feature_cache(
    net: LiteNet,
    data: Dataset,
    recipe: Recipe,
    folder: Path,
    device: str,
    log: Log,
    raw: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every cached view of the training split and the calibration split's plain features.

    One file per view, so an interrupted cache resumes where it stopped. With ``raw`` (the
    training films before CLAHE, see export/film_shift.py) every view but the first is drawn
    from a film-level shift of them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    train, cal = data.part("train"), data.part("calibration")
    views: list[np.ndarray] = []
    for view in range(recipe.cached_views):
        started = time.time()
        generator = torch.Generator().manual_seed(recipe.seed * 1000 + view) if view else None
        make = partial(frozen_features, net, train.images, recipe, device, generator)
        if view and raw is not None:
            make = partial(shifted_features, net, raw, recipe, device, generator, view)
        views.append(cached(folder / f"train-view{view}.npy", make))
        log(f"feature cache: view {view + 1}/{recipe.cached_views} ready ({time.time() - started:.0f} s)")
    plain = cached(folder / "calibration.npy", lambda: frozen_features(net, cal.images, recipe, device, None))
    return views, plain


class CachedViews:
    """Training batches drawn from the feature cache: one cached view per image, mirrored at random."""

    def __init__(self, views: list[np.ndarray], recipe: Recipe) -> None:
        self.views, self.recipe = views, recipe

    def __len__(self) -> int:
        return len(self.views[0])

    def batch(self, index: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        which = torch.randint(0, len(self.views), (len(index),), generator=generator).numpy()
        x = np.stack([self.views[w][i] for w, i in zip(which, index, strict=True)]).astype(np.float32)
        return flip_features(torch.from_numpy(x), self.recipe, generator)


class FreshViews:
    """Training batches augmented afresh at every step (``cached_views = 0``): the frozen stages
    run forward only, without gradients, on each newly augmented batch. About twice the cost of a
    cached epoch, but the network never sees the same view twice, which the cached recipes
    over-fitted within five epochs."""

    def __init__(self, net: LiteNet, images: np.ndarray, recipe: Recipe, device: str) -> None:
        self.net, self.images, self.recipe, self.device = net, images, recipe, device

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def batch(self, index: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        net, split = self.net, self.recipe.cache_blocks
        net._bn0.eval()
        for block in net._blocks[:split]:
            block.eval()
        x = to_tensor(np.asarray(self.images[index]), self.recipe.spec).to(self.device)
        x = augment(x, self.recipe, generator)  # on the GPU, when training runs there
        with autocast(self.device):
            return net.prefix(x, split).float()


def shifted_features(
    net: LiteNet, raw: np.ndarray, recipe: Recipe, device: str, generator: torch.Generator | None, view: int
) -> np.ndarray:
    """Frozen features of one film-shifted view (its own seed, so a resumed cache is the same)."""
    from export.film_shift import shifted_views

    images = shifted_views(raw, recipe.spec, np.random.default_rng(recipe.seed * 1000 + view))
    return frozen_features(net, images, recipe, device, generator)


def parameter_groups(net: LiteNet, recipe: Recipe) -> list[dict[str, Any]]:
    """One AdamW group per trainable block (and the head), with its depth-scaled LR factor."""
    blocks = len(net._blocks)
    head = [*net._conv_head.parameters(), *net._bn1.parameters(), *net.head.parameters()]
    groups = [{"params": head, "first_block": blocks, "factor": 1.0}]
    for index in range(blocks - 1, recipe.cache_blocks - 1, -1):
        factor = recipe.lr_decay ** (blocks - index)
        groups.append(
            {"params": list(net._blocks[index].parameters()), "first_block": index, "factor": factor}
        )
    return groups


def stage_at(recipe: Recipe, epoch: int) -> int:
    """The first trainable block during ``epoch`` (0-based) of the staged schedule."""
    for epochs, first in recipe.unfreeze:
        if epoch < epochs:
            return first
        epoch -= epochs
    return recipe.unfreeze[-1][1] if recipe.unfreeze else recipe.cache_blocks


def set_trainable(net: LiteNet, first: int) -> None:
    """Blocks from ``first`` on (and the head) learn; earlier ones stay fixed, BN included."""
    for index, block in enumerate(net._blocks):
        learns = index >= first
        block.train(learns)
        for p in block.parameters():
            p.requires_grad_(learns)
    for module in (net._conv_head, net._bn1, net.head, net.dropout):
        module.train(True)


def total_epochs(recipe: Recipe) -> int:
    """Epochs of the whole staged schedule."""
    return sum(e for e, _ in recipe.unfreeze) or recipe.epochs


@torch.no_grad()
def tail_logits(net: LiteNet, features: np.ndarray, recipe: Recipe, device: str) -> np.ndarray:
    """Logits [N, K] of cached features in evaluation mode."""
    net.eval()
    out = []
    for start in range(0, len(features), 128):
        x = torch.from_numpy(np.asarray(features[start : start + 128], dtype=np.float32)).to(device)
        with autocast(device):
            logits, _ = net.tail(x.contiguous(memory_format=torch.channels_last), recipe.cache_blocks)
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out)


def fine_tune(
    recipe: Recipe,
    data: Dataset,
    workdir: Path,
    *,
    device: str = "cpu",
    resume: bool = True,
    log: Log = print,
    budget_s: float | None = None,
    threads: int = 0,
    raw: np.ndarray | None = None,
) -> LiteNet:
    """Fine-tune ``recipe.backbone`` on ``data``; returns the best EMA network (calibration AUC).

    ``raw``: the training split's films before CLAHE, for a recipe with ``film_shifts``."""
    torch.set_num_threads(threads or 2)
    seed_everything(recipe.train_seed or recipe.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    net = pretrained(recipe.backbone, recipe.outputs, recipe.spec["channels"], recipe.upscale).to(device)
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    views, cal_features = feature_cache(net, data, recipe, workdir / "transfer", device, log, raw)
    source: CachedViews | FreshViews = (
        CachedViews(views, recipe) if views else FreshViews(net, data.part("train").images, recipe, device)
    )
    train_targets = torch.from_numpy(data.part("train").targets)
    cal_targets = data.part("calibration").targets[:, recipe.head_index]
    groups = parameter_groups(net, recipe)
    optimiser = torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    n, epochs = len(source), total_epochs(recipe)
    steps_per_epoch = max(n // recipe.batch, 1)
    ema = Ema(net, decay=0.998 if steps_per_epoch * epochs > 1500 else 0.99)
    generator = torch.Generator().manual_seed(recipe.train_seed or recipe.seed)
    state: dict[str, Any] = {"epoch": 0, "best_auc": -1.0, "history": [], "device": device}
    last = workdir / "last.pt"
    if resume and last.exists():
        state = resume_from(last, net, ema, optimiser, generator)
        log(
            f"resumed after epoch {state['epoch']} of {epochs} (best calibration AUC {state['best_auc']:.4f})"
        )
    spent = float(sum(e["seconds"] for e in state["history"]))
    schedule = Schedule(recipe.lr, steps_per_epoch * epochs, steps_per_epoch, budget_s, spent)
    state["budget_s"] = budget_s
    for epoch in range(int(state["epoch"]), epochs):
        started = time.time()
        first = stage_at(recipe, epoch)
        set_trainable(net, first)
        governor = ThreadGovernor((threads,) if threads else (2, 1))
        loss = run_epoch(
            net, ema, optimiser, source, train_targets, recipe, epoch, schedule, generator, device, governor
        )
        val_auc = auc(cal_targets, tail_logits(ema.model, cal_features, recipe, device)[:, recipe.head_index])
        record = {
            "epoch": epoch + 1,
            "first_trainable_block": first,
            "loss": round(loss, 4),
            "val_auc": round(val_auc, 4),
            "seconds": round(time.time() - started, 1),
        }
        state["epoch"] = epoch + 1
        state["history"].append(record)
        if val_auc > state["best_auc"]:
            state["best_auc"] = val_auc
            torch.save(
                {"ema": ema.model.state_dict(), "epoch": epoch + 1, "val_auc": val_auc}, workdir / "best.pt"
            )
        save_checkpoint(last, net, ema, optimiser, generator, state)
        log(progress_line(record, state, epochs))
        if schedule.done((epoch + 1) * steps_per_epoch):
            log(f"schedule finished after epoch {epoch + 1}")
            break
    (workdir / "history.json").write_text(json.dumps(state, indent=2))
    best = torch.load(workdir / "best.pt", map_location="cpu", weights_only=True)
    ema.model.load_state_dict(best["ema"])
    return ema.model.eval()


def progress_line(record: dict[str, Any], state: dict[str, Any], epochs: int) -> str:
    """One log line per epoch, with the ETA of the rest of the schedule."""
    recent = [h["seconds"] for h in state["history"][-3:]]
    eta = sum(recent) / len(recent) * (epochs - int(state["epoch"]))
    return json.dumps(record) + f" best={state['best_auc']:.4f} ETA {eta / 60:.1f} min"


def run_epoch(
    net: LiteNet,
    ema: Ema,
    optimiser: torch.optim.Optimizer,
    source: CachedViews | FreshViews,
    targets: torch.Tensor,
    recipe: Recipe,
    epoch: int,
    schedule: Schedule,
    generator: torch.Generator,
    device: str,
    governor: ThreadGovernor | None = None,
) -> float:
    """One pass over the training images, each as one view from ``source``; the mean loss.

    ``governor`` picks 1 or 2 threads per step, whichever is faster now on the shared cores."""
    steps = max(len(source) // recipe.batch, 1)
    order = torch.randperm(len(source), generator=generator).numpy()
    losses: list[float] = []
    for step in range(steps):
        at = epoch * steps + step
        if schedule.done(at):
            break
        if governor is not None:
            governor.before_step()
        index = np.sort(order[step * recipe.batch : (step + 1) * recipe.batch])
        x_t = source.batch(index, generator).to(device).contiguous(memory_format=torch.channels_last)
        for group in optimiser.param_groups:
            group["lr"] = schedule.lr(at) * group["factor"]
        with autocast(device, training=True):
            logits, _ = net.tail(x_t, recipe.cache_blocks)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets[index].to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        ema.update(net)
        losses.append(float(loss.detach()))
        if governor is not None:
            governor.after_step()
    return float(np.mean(losses)) if losses else math.nan


def flip_features(x: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """Mirror cached feature maps at random (left-right, and up-down where the recipe rotates):
    more views for free, since a fundus photograph has no up or left; chest films are left as
    they are (the heart is on the left)."""
    if not recipe.rotate:
        return x
    n = x.shape[0]
    flip_x = torch.rand(n, generator=generator) < 0.5
    flip_y = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip_x.view(n, 1, 1, 1), x.flip(3), x)
    return torch.where(flip_y.view(n, 1, 1, 1), x.flip(2), x)


def resume_from(
    path: Path, net: LiteNet, ema: Ema, optimiser: torch.optim.Optimizer, generator: torch.Generator
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns the training state."""
    saved = torch.load(path, weights_only=True, map_location="cpu")
    net.load_state_dict(saved["net"])
    ema.model.load_state_dict(saved["ema"])
    ema.updates = int(saved["ema_updates"])
    optimiser.load_state_dict(saved["optimiser"])
    generator.set_state(saved["generator"])
    return dict(saved["state"])
