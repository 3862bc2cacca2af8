"""Train a screening network on a rendered data set: bf16 on CPU, EMA weights, checkpoints."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from export.data import Dataset
from export.nets import ScreeningNet, build
from export.recipes import Recipe
from kiosk.stats import auc


def save_checkpoint(path: Path, net: nn.Module, ema: Ema, optimiser: torch.optim.Optimizer,
                    generator: torch.Generator, state: dict[str, Any]) -> None:
    """Everything a resumed run needs (from scratch or transfer), written atomically."""
    partial = path.with_suffix(".partial")
    torch.save({"net": net.state_dict(), "ema": ema.model.state_dict(), "ema_updates": ema.updates,
                "optimiser": optimiser.state_dict(), "generator": generator.get_state(),
                "state": state}, partial)
    partial.replace(path)


def member_dir(work: Path, task: str, member: int) -> Path:
    """Where member ``member`` of a task's ensemble keeps its checkpoints."""
    return work / task / f"m{member}"


def seed_everything(seed: int) -> None:
    """Fix every random generator that training uses."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def to_tensor(images: np.ndarray, spec: dict[str, Any]) -> torch.Tensor:
    """uint8 (N, H, W, C) → float (N, C, H, W) after the manifest's ``scale`` step."""
    step = spec["steps"][-1]
    mean = torch.tensor(step["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(step["std"], dtype=torch.float32).view(1, -1, 1, 1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """Random flips, rotation, zoom, shift and brightness/contrast (fill stays mid-grey = 0)."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    angle = uniform(-math.pi, math.pi) if recipe.rotate else uniform(-0.12, 0.12)
    zoom = uniform(0.9, 1.12)
    flip_x = (
        torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if recipe.hflip else torch.ones(n)
    )
    flip_y = (
        torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if recipe.vflip else torch.ones(n)
    )
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip_x, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip_x, cos
    theta[:, 1] *= flip_y.view(n, 1)
    theta[:, 0, 2], theta[:, 1, 2] = uniform(-0.06, 0.06), uniform(-0.06, 0.06)
    # The numbers are drawn on the CPU (one seeded generator, whatever the device); the pixels
    # are moved where the batch lives, so on a GPU the augmentation runs there too.
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if recipe.sharpness:
        x = sharpen(x, uniform(-0.8, 0.6).view(n, 1, 1, 1).to(x.device))
    contrast = uniform(0.8, 1.2).view(n, 1, 1, 1).to(x.device)
    brightness = uniform(-0.15, 0.15).view(n, 1, 1, 1).to(x.device)
    return (x * contrast + brightness).contiguous(memory_format=torch.channels_last)


def sharpen(x: torch.Tensor, amount: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """``x + amount * (x - blur(x))``: amount > 0 sharpens (unsharp mask), -1 is a full blur.

    Photographs reach the kiosk from cameras of any resolution; downscaled from 3000 px they are
    sharper than the re-encoded 256 px training copies, and background subtraction amplifies that.
    """
    radius = 2
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    channels = x.shape[1]
    kernel = (taps[:, None] * taps[None, :]).expand(channels, 1, -1, -1).contiguous().to(x.device)
    blurred = F.conv2d(F.pad(x, (radius,) * 4, mode="replicate"), kernel, groups=channels)
    return x + amount * (x - blurred)


@torch.no_grad()
def predict(net: ScreeningNet, images: np.ndarray, spec: dict[str, Any], batch: int = 128) -> np.ndarray:
    """Logits (N, K) in evaluation mode (bf16 autocast for speed)."""
    net.eval()
    out = []
    for start in range(0, len(images), batch):
        x = to_tensor(images[start : start + batch], spec)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _ = net(x)
        out.append(logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


class ThreadGovernor:
    """Use 1 or 2 intra-op threads, whichever steps faster now (the cores are shared).

    Two threads are twice as fast on idle cores but several times slower when other work
    preempts one of them (measured here); every ``probe_every`` steps the other choice is tried.
    """

    def __init__(self, choices: tuple[int, ...] = (2, 1), probe_every: int = 12) -> None:
        self.choices = choices
        self.probe_every = probe_every
        self.seconds = {c: 0.0 for c in choices}
        self.step = 0
        self.current = choices[0]

    def before_step(self) -> None:
        """Pick the thread count for the next step."""
        best = min(self.choices, key=lambda c: self.seconds[c])
        probe = self.step % self.probe_every == self.probe_every - 1
        others = [c for c in self.choices if c != best]
        self.current = others[(self.step // self.probe_every) % len(others)] if probe and others else best
        torch.set_num_threads(self.current)
        self.started = time.perf_counter()

    def after_step(self) -> None:
        """Record how long the step took with the current choice."""
        took = time.perf_counter() - self.started
        old = self.seconds[self.current]
        self.seconds[self.current] = took if old == 0.0 else 0.7 * old + 0.3 * took
        self.step += 1


class Ema:
    """Exponential moving average of weights and batch-norm statistics.

    The decay warms up as (1 + n) / (10 + n) over the first updates, so the average never keeps
    a large share of the random initial weights.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.model: Any = copy.deepcopy(net).eval()
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the average towards the current weights."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for average, current in zip(self.model.state_dict().values(), net.state_dict().values(), strict=True):
            if average.dtype.is_floating_point:
                average.mul_(decay).add_(current.detach(), alpha=1 - decay)
            else:
                average.copy_(current)


class Schedule:
    """Linear warm-up, then cosine decay to zero over the steps, or over a wall-clock budget.

    With ``budget_s`` the cosine follows whichever is further along, the steps or the time, so a
    run on busy shared cores still ends its schedule (and stops) when the budget is spent.
    """

    def __init__(
        self,
        base_lr: float,
        total: int,
        warmup: int,
        budget_s: float | None,
        spent_s: float,
        first_epoch: int = 0,
    ) -> None:
        self.base_lr, self.total, self.warmup, self.first_epoch = base_lr, total, warmup, first_epoch
        self.budget_s, self.spent_s, self.started = budget_s, spent_s, time.time()

    def fraction(self, step: int) -> float:
        """How far along the decay is, 0..1."""
        by_steps = (step - self.warmup) / max(self.total - self.warmup, 1)
        if self.budget_s is None:
            return min(max(by_steps, 0.0), 1.0)
        by_time = (self.spent_s + time.time() - self.started) / self.budget_s
        return min(max(by_steps, by_time, 0.0), 1.0)

    def lr(self, step: int) -> float:
        """The learning rate for ``step``."""
        if step < self.warmup:
            return self.base_lr * (step + 1) / self.warmup
        return self.base_lr * 0.5 * (1 + math.cos(math.pi * self.fraction(step)))

    def done(self, step: int) -> bool:
        """True once the schedule has run out (steps or budget)."""
        return step >= self.total or self.fraction(step) >= 1.0


def train(
    recipe: Recipe,
    data: Dataset,
    workdir: Path,
    *,
    progress: bool = True,
    resume: bool = True,
    log: Any = print,
    budget_s: float | None = None,
    extra_epochs: int = 0,
    extra_lr: float = 5e-4,
    member: int = 0,
    threads: int = 0,
) -> ScreeningNet:
    """Train, checkpointing every epoch into ``workdir``; returns the best EMA network.

    ``budget_s`` caps the wall-clock time: the cosine schedule is compressed to end within it.
    ``extra_epochs`` continues a finished run with a second (warm-restart) cosine cycle from
    ``extra_lr``; the best checkpoint is replaced only if the calibration-split AUC improves.
    ``member`` k of an ensemble trains from seed ``recipe.seed + k`` (the patient split never
    changes); ``threads`` fixes the intra-op threads (two members side by side: 1 each), else
    they follow whichever of 1 or 2 steps faster.
    """
    torch.set_num_threads(threads or 2)
    seed = recipe.seed + member
    seed_everything(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    train_set, val_set = data.part("train"), data.part("calibration")
    net = build(recipe.spec["channels"], recipe.widths, recipe.blocks, recipe.outputs)
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimiser = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = max(len(train_set.images) // recipe.batch, 1)
    total = steps_per_epoch * recipe.epochs
    ema = Ema(net, decay=0.995 if total > 600 else 0.98)
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {"epoch": 0, "best_auc": -1.0, "history": []}
    last = workdir / "last.pt"
    if resume and last.exists():
        saved = torch.load(last, weights_only=True)
        net.load_state_dict(saved["net"])
        if "ema_updates" in saved:
            ema.model.load_state_dict(saved["ema"])
            ema.updates = int(saved["ema_updates"])
        else:  # a checkpoint from before the EMA warm-up: restart the average from the weights
            ema.model.load_state_dict(saved["net"])
        optimiser.load_state_dict(saved["optimiser"])
        generator.set_state(saved["generator"])
        state = saved["state"]
        log(f"resumed at epoch {state['epoch']}")
    state["seed"], state["threads"] = seed, threads or "1-2"
    spent = float(sum(e["seconds"] for e in state["history"]))
    warmup = min(2 * steps_per_epoch, total // 10 + 1)
    schedule = Schedule(recipe.lr, total, warmup, budget_s, spent)
    last_epoch = recipe.epochs
    if extra_epochs:
        first = int(state["epoch"])
        last_epoch = first + extra_epochs
        schedule = Schedule(
            extra_lr, extra_epochs * steps_per_epoch, steps_per_epoch // 4, budget_s, 0.0, first
        )
        state.setdefault("stages", []).append(
            {"after_epoch": first, "epochs": extra_epochs, "lr": extra_lr, "budget_s": budget_s}
        )
    else:
        state["budget_s"] = budget_s
    for epoch in range(int(state["epoch"]), last_epoch):
        started = time.time()
        loss = run_epoch(
            net, ema, optimiser, train_set, recipe, epoch, schedule, generator, progress, threads
        )
        val_logits = predict(ema.model, val_set.images, recipe.spec)
        k = recipe.head_index
        val_auc = auc(val_set.targets[:, k], val_logits[:, k])
        state["epoch"] = epoch + 1
        state["history"].append(
            {
                "epoch": epoch + 1,
                "loss": round(loss, 4),
                "val_auc": round(val_auc, 4),
                "seconds": round(time.time() - started, 1),
            }
        )
        if val_auc > state["best_auc"]:
            state["best_auc"] = val_auc
            torch.save(
                {"ema": ema.model.state_dict(), "epoch": epoch + 1, "val_auc": val_auc}, workdir / "best.pt"
            )
        save_checkpoint(last, net, ema, optimiser, generator, state)
        log(f"member {member} " + json.dumps(state["history"][-1]) + f" best={state['best_auc']:.4f}")
        if schedule.done((epoch + 1 - schedule.first_epoch) * steps_per_epoch):
            log(f"schedule finished after epoch {epoch + 1}")
            break
    best = torch.load(workdir / "best.pt", weights_only=True)
    ema.model.load_state_dict(best["ema"])
    (workdir / "history.json").write_text(json.dumps(state, indent=2))
    return ema.model.eval()


def run_epoch(
    net: ScreeningNet,
    ema: Ema,
    optimiser: torch.optim.Optimizer,
    train_set: Dataset,
    recipe: Recipe,
    epoch: int,
    schedule: Schedule,
    generator: torch.Generator,
    progress: bool,
    threads: int = 0,
) -> float:
    """One pass over the training images in a seeded random order; returns the mean loss."""
    net.train()
    steps = max(len(train_set.images) // recipe.batch, 1)
    order = torch.randperm(len(train_set.images), generator=generator).numpy()
    losses = []
    bar = tqdm(
        range(steps),
        desc=f"epoch {epoch + 1}/{recipe.epochs}",
        disable=not progress,
        leave=False,
        mininterval=5.0,
    )
    governor = ThreadGovernor((threads,) if threads else (2, 1))
    for step in bar:
        at = (epoch - schedule.first_epoch) * steps + step
        if schedule.done(at):
            break
        governor.before_step()
        index = np.sort(order[step * recipe.batch : (step + 1) * recipe.batch])
        x = augment(to_tensor(train_set.images[index], recipe.spec), recipe, generator)
        y = torch.from_numpy(train_set.targets[index])
        for group in optimiser.param_groups:
            group["lr"] = schedule.lr(at)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _ = net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        ema.update(net)
        losses.append(float(loss.detach()))
        governor.after_step()
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", threads=governor.current, refresh=False)
    return float(np.mean(losses))
