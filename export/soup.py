"""Weight averages ("model soups") of fine-tuned runs, measured on the calibration split only.

``python -m export.soup RUN RUN ... [--against BUNDLE]`` loads the best EMA checkpoint of each
run (``export/work/RUN/lite/best.pt``; every run a recipe of the same task, fine-tuned from the
same ImageNet weights, so their weights may be averaged), and prints the calibration-split AUC of
each run, of every average of two or more runs (Wortsman et al. 2022: one network, no extra
inference cost) and of every logit ensemble (what an average approximates, at k times the cost).
A run with a larger input (``upscale``) is read at each input size of the average's runs.
``--against`` scores a shipped bundle's network on the same images, with a paired patient
bootstrap of the AUC difference of the best average. The test split is never read here.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from export.compare import paired_auc_difference
from export.data import WORK, Dataset, load_real
from export.lite import LiteNet, architecture
from export.onnx_export import cpu_session
from export.recipes import RECIPES
from export.train import to_tensor
from kiosk.stats import auc

State = dict[str, torch.Tensor]


def average(states: list[State]) -> State:
    """The element-wise mean of state dicts of one architecture (counters keep their dtype)."""
    return {k: torch.stack([s[k].double() for s in states]).mean(0).to(states[0][k].dtype) for k in states[0]}


@torch.no_grad()
def logits(net: LiteNet, images: np.ndarray, spec: dict[str, object], head: int) -> np.ndarray:
    """The shipped head's logit of every image (one view, evaluation mode)."""
    net.eval()
    return np.concatenate(
        [net(to_tensor(images[i : i + 64], spec))[0][:, head].numpy() for i in range(0, len(images), 64)]
    )


def bundle_logits(bundle: Path, data: Dataset, spec: dict[str, object]) -> np.ndarray:
    """A shipped bundle's fp32 network on the same rendered images."""
    session = cpu_session(bundle / "model.onnx")
    name = session.get_inputs()[0].name
    batches = [
        session.run(None, {name: to_tensor(data.images[i : i + 32], spec).contiguous().numpy()})[0]
        for i in range(0, len(data.images), 32)
    ]
    return np.concatenate(batches)[:, 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.soup", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="recipe names whose runs are in export/work")
    parser.add_argument("--against", type=Path, help="a shipped bundle to compare the best average with")
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    recipes = [RECIPES[run] for run in args.runs]
    first = recipes[0]
    if any((r.task, r.backbone, r.outputs, r.seed, r.fractions) != (first.task, first.backbone, first.outputs,
           first.seed, first.fractions) for r in recipes):
        raise SystemExit("the runs must share task, backbone, outputs and split")
    data = load_real(first.task, first.spec, first.seed, cache=args.work, fractions=first.fractions)
    cal = data.part("calibration")
    labels = cal.targets[:, first.head_index]
    states = [
        torch.load(args.work / run / "lite" / "best.pt", map_location="cpu", weights_only=True)["ema"]
        for run in args.runs
    ]
    scores: dict[tuple[tuple[str, ...], float], np.ndarray] = {}
    for size in range(1, len(args.runs) + 1):
        for combo in itertools.combinations(range(len(args.runs)), size):
            state = average([states[i] for i in combo])
            for upscale in sorted({recipes[i].upscale for i in combo}):
                net = architecture(first.backbone, first.outputs, first.spec["channels"], upscale)
                net.load_state_dict(state)
                key = (tuple(args.runs[i] for i in combo), upscale)
                scores[key] = logits(net, cal.images, first.spec, first.head_index)
                kind = "run" if size == 1 else "average"
                print(f"{kind} {' + '.join(key[0])} at x{upscale}: calibration AUC "
                      f"{auc(labels, scores[key]):.4f}", flush=True)
    singles = {
        runs[0]: z for (runs, up), z in scores.items() if len(runs) == 1 and up == RECIPES[runs[0]].upscale
    }
    for size in range(2, len(args.runs) + 1):
        for names in itertools.combinations(args.runs, size):
            summed = np.sum([singles[name] for name in names], axis=0)
            print(f"logit ensemble {' + '.join(names)}: calibration AUC {auc(labels, summed):.4f}")
    best = max((k for k in scores if len(k[0]) > 1), key=lambda k: auc(labels, scores[k]), default=None)
    if args.against and best is not None:
        shipped = bundle_logits(args.against, cal, first.spec)
        difference = paired_auc_difference(labels, shipped, scores[best], cal.patients, seed=first.seed)
        print(f"{args.against.name}: calibration AUC {auc(labels, shipped):.4f}; best average "
              f"{' + '.join(best[0])} at x{best[1]} minus it: {difference}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
