"""From a trained network to a signed bundle: export, parity, calibration, INT8, card, seal."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.bundle import fresh_folder, seal, verify_with_kiosk
from export.card import write_card, write_plots
from export.data import Dataset, load_real
from export.errors import ExportError
from export.evaluate import DRIFT_BINS, Evaluation, evaluate
from export.nets import ScreeningNet, Shipped, build
from export.onnx_export import check_parity, cpu_session, export_onnx
from export.quantise import latency_ms, quantise_static
from export.recipes import RECIPES, Recipe
from export.signing import KEY_ENV, load_private_key
from export.train import member_dir, predict
from kiosk.preprocess import scale
from kiosk.stats import auc, sigmoid

INTENDED_USE = (
    "Research and demonstration only. Not for clinical decisions: a reference model "
    "trained on a small public data set, not a medical device."
)
Log = Callable[[str], None]


def onnx_logits(model: Path, images: np.ndarray, spec: dict[str, Any], batch: int = 64) -> np.ndarray:
    """The ``logits`` output [N, 1] of an ONNX file on rendered uint8 images."""
    session: Any = cpu_session(model)
    parts = [
        session.run(["logits"], {"image": scale(images[i : i + batch], spec)})[0]
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(parts)


#: Images passed through the graph to calibrate INT8, divided among the copies of the network
#: an ensemble graph runs per image: onnxruntime keeps every activation of every calibration
#: image in memory (128 images through 3 members x 4 views at 256 px went past 24 GiB).
CALIBRATION_PASSES = 128
MIN_CALIBRATION_IMAGES = 16


def try_int8(
    folder: Path,
    data: Dataset,
    recipe: Recipe,
    fp32_auc: float,
    log: Log,
    copies: int = 1,
    cal_logits: np.ndarray | None = None,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Quantise with real training images; keep model.int8.onnx only if it is faster and its
    calibration-split AUC is within 0.005 of fp32's (decided there; the test AUC is reported)."""
    train_images = data.part("train").images
    count = max(MIN_CALIBRATION_IMAGES, CALIBRATION_PASSES // max(copies, 1))
    pick = np.random.default_rng(recipe.seed).choice(
        len(train_images), min(count, len(train_images)), replace=False
    )
    calibration = scale(train_images[np.sort(pick)], recipe.spec)
    target = folder / "model.int8.onnx"
    quantise_static(folder / "model.onnx", target, calibration)
    test, cal = data.part("test"), data.part("calibration")
    k = recipe.head_index
    int8_auc = auc(test.targets[:, k], onnx_logits(target, test.images, recipe.spec)[:, 0])
    if cal_logits is None:
        cal_logits = onnx_logits(folder / "model.onnx", cal.images, recipe.spec)[:, 0]
    cal_fp32 = auc(cal.targets[:, k], cal_logits)
    cal_int8_logits = onnx_logits(target, cal.images, recipe.spec)[:, 0]
    cal_int8 = auc(cal.targets[:, k], cal_int8_logits)
    # Per-image agreement (calibrated probability), so a reader sees what the AUC rule hides.
    gap = np.abs(sigmoid(cal_int8_logits / temperature) - sigmoid(cal_logits / temperature))
    fp32_ms = latency_ms(folder / "model.onnx", calibration)
    int8_ms = latency_ms(target, calibration)
    kept = cal_fp32 - cal_int8 < 0.005 and int8_ms < fp32_ms
    log(
        f"INT8: AUC {int8_auc:.4f} vs {fp32_auc:.4f}, {int8_ms:.1f} ms vs {fp32_ms:.1f} ms → "
        + ("kept" if kept else "dropped")
    )
    if not kept:
        target.unlink()
    return {
        "fp32_ms": round(fp32_ms, 2),
        "int8_ms": round(int8_ms, 2),
        "int8_auc": round(int8_auc, 4),
        "fp32_auc": round(fp32_auc, 4),
        "calibration_split_auc": {"fp32": round(cal_fp32, 4), "int8": round(cal_int8, 4)},
        "calibration_split_probability_difference": {
            "median": round(float(np.median(gap)), 4),
            "p95": round(float(np.percentile(gap, 95)), 4),
            "max": round(float(gap.max()), 4),
        },
        "kept": kept,
        "calibration_images": len(calibration),
    }


def manifest_for(
    recipe: Recipe,
    ev: Evaluation,
    int8: dict[str, Any],
    training_data: dict[str, Any],
    limitations: list[str],
    parity: float,
) -> dict[str, Any]:
    """The manifest of docs/bundle.md (files and key_id are added when sealing)."""
    variants: dict[str, Any] = {
        "fp32": {"file": "model.onnx", "auc": round(ev.test_auc, 4), "latency_ms_cpu": int8.get("fp32_ms")}
    }
    if int8.get("kept"):
        variants["int8"] = {
            "file": "model.int8.onnx",
            "auc": int8["int8_auc"],
            "latency_ms_cpu": int8["int8_ms"],
        }
    return {
        "format": 1,
        "task": recipe.task,
        "version": recipe.version,
        "name": recipe.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "variants": variants,
        "input": recipe.spec,
        "outputs": {"logits": "logits", "cam": "cam", "labels": [recipe.label], "activation": "sigmoid"},
        "calibration": {
            "method": "temperature",
            "temperature": round(ev.temperature, 4),
            "fitted_on": "calibration split (by patient)",
        },
        "findings": [
            {
                "label": recipe.label,
                "display": recipe.display,
                "referable": True,
                "urgent": recipe.urgent,
                "threshold": round(ev.threshold, 4),
                "operating_point": ev.test_point.to_dict(recipe.target),
                "operating_point_calibration_split": ev.calibration_point.to_dict(recipe.target),
            }
        ],
        "metrics": ev.metrics("test split, by patient"),
        "score_distribution": {
            "bins": DRIFT_BINS.tolist(),
            "counts": ev.score_counts,
            "split": "calibration",
            "of": "calibrated probability",
        },
        "quantisation": int8,
        "export": {"parity_max_abs_diff": parity, "exporter": f"torch {torch.__version__}"},
        "training_data": training_data,
        "intended_use": INTENDED_USE,
        "limitations": limitations,
    }


def build_bundle(
    recipe: Recipe,
    nets: ScreeningNet | list[ScreeningNet],
    data: Dataset,
    out_root: Path,
    *,
    key: Any,
    key_id: str,
    training_data: dict[str, Any],
    notes: dict[str, Any],
    limitations: list[str],
    shift: Callable[[Path, dict[str, Any]], str] | None = None,
    int8: bool = True,
    log: Log = print,
    task_info: dict[str, Any] | None = None,
    probe: Callable[[Dataset, np.ndarray], dict[str, Any]] | None = None,
    input_reference: dict[str, Any] | None = None,
) -> Path:
    """Write, measure and sign the bundle ``out_root/<task>-<version>``; returns its folder.

    ``nets`` are the recipe's ensemble members; the graph shipped averages the combination of
    them and of up to ``recipe.views`` views that :func:`choose_graph` picks.
    ``input_reference`` (export/reference.py) is stored in the manifest for drift alarms.
    """
    folder = fresh_folder(out_root / f"{recipe.task}-{recipe.version}")
    members = [n.float().eval() for n in (nets if isinstance(nets, list) else [nets])]
    cal, test = data.part("calibration"), data.part("test")
    chosen = Graph(tuple(range(len(members))), 1, float("nan"), True)
    if len(members) > 1 or recipe.views > 1:
        graphs = choose_graph(members, recipe, cal, log)
        chosen = graphs[0]
        notes = {**notes, "ensemble": {"shipped": chosen.name, "graphs": {g.name: g.auc for g in graphs}}}
    shipped = Shipped([members[m] for m in chosen.members], recipe.head_index, chosen.views)
    export_onnx(
        shipped, folder / "model.onnx", recipe.spec["channels"], recipe.spec["size"], name=recipe.name
    )
    parity = check_parity(shipped, folder / "model.onnx", scale(cal.images[:16], recipe.spec))
    log(f"ONNX parity on 16 real images: max |diff| {parity:.2e}")
    k = recipe.head_index
    cal_logits = onnx_logits(folder / "model.onnx", cal.images, recipe.spec)[:, 0]
    if recipe.backbone:
        cal_logits = fold_logit_offset(shipped, folder, recipe, cal, cal_logits, log)
    test_logits = onnx_logits(folder / "model.onnx", test.images, recipe.spec)[:, 0]
    ev = evaluate(
        cal.targets[:, k],
        cal_logits,
        test.targets[:, k],
        test_logits,
        test.patients,
        target_sensitivity=recipe.screening_sensitivity,
        seed=recipe.seed,
    )
    log(
        f"test AUC {ev.test_auc:.4f} {ev.test_auc_ci}, T={ev.temperature:.3f}, threshold {ev.threshold:.3f}, "
        f"sens {ev.test_point.sensitivity:.3f} spec {ev.test_point.specificity:.3f}, ECE {ev.ece_after:.3f}"
    )
    copies = len(chosen.members) * chosen.views
    quantisation = (
        try_int8(folder, data, recipe, ev.test_auc, log, copies, cal_logits, ev.temperature)
        if int8
        else {"kept": False}
    )
    manifest = manifest_for(recipe, ev, quantisation, training_data, limitations, float(f"{parity:.3g}"))
    manifest["export"].update({"members": list(chosen.members), "views": chosen.views})
    if recipe.backbone:
        from export.taskinfo import add_task_sections

        add_task_sections(manifest, recipe, ev, (cal, cal_logits), (test, test_logits), task_info)
    if probe is not None:
        manifest["metrics"]["shortcut_probe"] = probe(test, ev.test_probabilities)
    if input_reference is not None:
        manifest["input_reference"] = input_reference
    if "ensemble" in notes:
        manifest["export"]["calibration_split_auc_by_graph"] = notes["ensemble"]["graphs"]
    notes = {
        **notes,
        "int8": int8_note(quantisation),
        "seed": recipe.seed,
        "split_counts": {s: int((data.split == s).sum()) for s in ("train", "calibration", "test")},
    }
    notes.setdefault("shift", "Not measured.")
    if shift is not None:
        notes["shift"] = shift(folder / "model.onnx", manifest)
    write_plots(folder, ev)
    write_card(folder, manifest, ev, notes)
    seal(folder, manifest, key, key_id)
    verify_with_kiosk(folder, key, key_id)
    return folder


def fold_logit_offset(
    shipped: Shipped, folder: Path, recipe: Recipe, cal: Dataset, cal_logits: np.ndarray, log: Log
) -> np.ndarray:
    """Platt scaling within the contract: the offset of sigmoid((logit + c) / T) fitted on the
    calibration split is added to the CAM head's bias, so ``logits`` stays the mean of ``cam``
    and the manifest's temperature alone calibrates (a fine-tuned model's logits are shifted,
    which a temperature cannot undo). Returns the calibration logits of the re-exported graph."""
    from kiosk.stats import fit_platt

    scale_, offset = fit_platt(cal.targets[:, recipe.head_index], cal_logits)
    shift = offset / scale_
    with torch.no_grad():
        for net in shipped.nets:
            head: Any = net.head
            head.bias[recipe.head_index] += shift
    export_onnx(
        shipped, folder / "model.onnx", recipe.spec["channels"], recipe.spec["size"], name=recipe.name
    )
    check_parity(shipped, folder / "model.onnx", scale(cal.images[:16], recipe.spec))
    log(f"Platt offset {shift:+.3f} folded into the CAM head's bias (calibration split)")
    return cal_logits + shift


#: Largest bundle a build may ship (fp32 graph plus an INT8 one a quarter its size): bundles
#: are committed, so the repository stays small.
MAX_BUNDLE_BYTES = 20 * 2**20


@dataclass(frozen=True)
class Graph:
    """One candidate for the shipped graph: which members, how many views, what it scores."""

    members: tuple[int, ...]
    views: int
    auc: float
    fits: bool

    @property
    def name(self) -> str:
        """E.g. 'networks 1+3, 4 views'."""
        who = "+".join(str(m + 1) for m in self.members)
        label = f"network{'s' if len(self.members) > 1 else ''} {who}, {self.views} view"
        return label + ("s" if self.views > 1 else "") + ("" if self.fits else " (over the size budget)")


def choose_graph(members: list[ScreeningNet], recipe: Recipe, cal: Dataset, log: Log) -> list[Graph]:
    """Every combination of members (and 1 or ``recipe.views`` views) scored on the calibration
    split, never the test split; the first is the one to ship: the best AUC among those whose
    bundle fits ``MAX_BUNDLE_BYTES`` (fewer networks, then fewer views, win a tie)."""
    k, views = recipe.head_index, recipe.views
    logits = {}  # (member, view) -> [N]
    nhwc = {(): (), (3,): (2,), (2,): (1,), (2, 3): (1, 2)}  # Shipped.FLIPS on NCHW → NHWC
    for m, net in enumerate(members):
        for v, flip in enumerate(Shipped.FLIPS[:views]):
            images = np.flip(cal.images, axis=nhwc[flip]).copy() if flip else cal.images
            logits[m, v] = predict(net, images, recipe.spec)[:, k]
    labels = cal.targets[:, k]
    per_network = 1.25 * 4 * sum(p.numel() for p in members[0].parameters())
    graphs = [
        Graph(
            subset,
            n_views,
            round(auc(labels, np.mean([logits[m, v] for m in subset for v in range(n_views)], 0)), 4),
            len(subset) * per_network <= MAX_BUNDLE_BYTES,
        )
        for size in range(1, len(members) + 1)
        for subset in itertools.combinations(range(len(members)), size)
        for n_views in sorted({1, views})
    ]
    fitting = [g for g in graphs if g.fits] or graphs
    best = max(fitting, key=lambda g: (g.auc, -len(g.members), -g.views))
    log("calibration-split AUC: " + ", ".join(f"{g.name} {g.auc:.4f}" for g in graphs))
    return [best] + [g for g in graphs if g is not best]


def int8_note(q: dict[str, Any]) -> str:
    """One paragraph on the INT8 decision for the card."""
    if "int8_auc" not in q:
        return "INT8 was not attempted for this build."
    verdict = (
        "kept (faster and AUC within 0.005)"
        if q["kept"]
        else "not shipped (rule: faster and AUC drop < 0.005)"
    )
    if "calibration_split_auc" in q:
        cal = q["calibration_split_auc"]
        verdict += f"; decided on the calibration split (AUC {cal['int8']} vs fp32 {cal['fp32']})"
    if "calibration_split_probability_difference" in q:
        gap = q["calibration_split_probability_difference"]
        verdict += (
            f". Per image, |INT8 - fp32| calibrated probability on the calibration split: median "
            f"{gap['median']}, 95th percentile {gap['p95']}, largest {gap['max']}"
        )
    return (
        f"Static INT8 (QDQ, per-channel weights, {q['calibration_images']} real training images for "
        f"calibration): test AUC {q['int8_auc']} vs fp32 {q['fp32_auc']}, latency {q['int8_ms']} ms vs "
        f"{q['fp32_ms']} ms → {verdict}."
    )


def load_members(recipe: Recipe, work: Path, name: str = "") -> list[Any]:
    """The best EMA network of every ensemble member saved by training."""
    if recipe.backbone:
        from export.lite import architecture
        from export.transfer import transfer_dir

        best = transfer_dir(work, name or recipe.task) / "best.pt"
        if not best.is_file():
            raise ExportError(
                f"no fine-tuned checkpoint at {best}: run `python -m export train {recipe.task}`"
            )
        lite_net = architecture(recipe.backbone, recipe.outputs, recipe.spec["channels"], recipe.upscale)
        lite_net.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["ema"])
        return [lite_net.eval()]
    nets = []
    for member in range(recipe.members):
        best = member_dir(work, recipe.task, member) / "best.pt"
        if not best.is_file():
            raise ExportError(
                f"no trained checkpoint at {best}: "
                f"run `python -m export train {recipe.task} --member {member}`"
            )
        net = build(recipe.spec["channels"], recipe.widths, recipe.blocks, recipe.outputs)
        net.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["ema"])
        nets.append(net.eval())
    return nets


def read_history(workdir: Path) -> dict[str, Any]:
    """Training history: history.json when training finished, else the last checkpoint's."""
    finished = workdir / "history.json"
    if finished.is_file():
        return dict(json.loads(finished.read_text()))
    return dict(torch.load(workdir / "last.pt", map_location="cpu", weights_only=True)["state"])


def retrain_command(recipe: Recipe, member: int, history: dict[str, Any]) -> str:
    """The command line(s) that trained one member, as recorded in its history."""
    base = f"python -m export train {recipe.task}"
    if recipe.members > 1:
        base += f" --member {member} --no-build"
    if isinstance(history.get("threads"), int):
        base += f" --threads {history['threads']}"
    command = base
    if history.get("budget_s"):
        command += f" --time-budget-min {history['budget_s'] / 60:.0f}"
    for stage in history.get("stages", []):
        command += f"` then `{base} --more-epochs {stage['epochs']} --more-lr {stage['lr']}"
        if stage.get("budget_s"):
            command += f" --time-budget-min {stage['budget_s'] / 60:.0f}"
    return command


def build_from_checkpoint(task: str, data_dir: Path, work: Path, out: Path, log: Log = print) -> Path:
    """Build the signed bundle of a reference model from its members' training checkpoints."""
    from export.provenance import describe_training, limitations_for, shift_probe, training_data_for
    from export.reference import reference_for
    from export.taskinfo import chest_probe, task_info_for

    torch.set_num_threads(2)
    recipe = RECIPES[task]
    data = load_real(
        recipe.task, recipe.spec, recipe.seed, data=data_dir, cache=work, fractions=recipe.fractions
    )
    nets = load_members(recipe, work, task)
    key_path = Path(os.environ.get(KEY_ENV, ""))
    splits = dict(zip(data.patients.tolist(), data.split.tolist(), strict=True))
    if recipe.backbone:
        from export.taskinfo import describe_transfer
        from export.transfer import transfer_dir

        history = read_history(transfer_dir(work, task))
        notes = {
            "training": describe_transfer(recipe, nets[0], history),
            "command": f"python -m export train {task}"
            + (f" --time-budget-min {history['budget_s'] / 60:.0f}" if history.get("budget_s") else ""),
        }
    else:
        histories = [read_history(member_dir(work, task, m)) for m in range(recipe.members)]
        commands = [retrain_command(recipe, m, h) for m, h in enumerate(histories)]
        if recipe.members > 1:
            commands.append(f"python -m export build {task}")
        notes = {"training": describe_training(recipe, nets, histories), "command": "` and `".join(commands)}
    folder = build_bundle(
        recipe,
        nets,
        data,
        out,
        key=load_private_key(),
        key_id=key_path.stem,
        training_data=training_data_for(recipe.task, data),
        notes=notes,
        limitations=limitations_for(recipe.task),
        shift=lambda model, manifest: shift_probe(recipe.task, model, manifest, data_dir, splits),
        log=log,
        task_info=task_info_for(recipe.task) if recipe.backbone else None,
        probe=chest_probe(data_dir, recipe.seed) if recipe.task == "cxr-adult" else None,
        input_reference=reference_for(
            recipe, data_dir, "fundus" if recipe.task.startswith("fundus") else "cxr"
        ),
    )
    log(f"signed bundle written: {folder}")
    return folder
