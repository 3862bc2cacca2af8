"""``kiosk calibrate TASK``: validate a model on this clinic's labelled images, propose a threshold.

    kiosk calibrate fundus-dr --labels labels.csv [--images DIR]   a labelled folder
    kiosk calibrate fundus-dr --from-sign-offs                      the clinicians' decisions
    kiosk calibrate fundus-dr --labels labels.csv --apply           ... and put it in force
    kiosk calibrate fundus-dr --undo                                back to the bundle's point

Without ``--apply`` nothing changes: the run is kept (audited) and its figures printed, the
threshold in force beside the proposed one. With ``--apply`` the proposal becomes the task's
site operating point (audited); a running ``kiosk serve`` takes it at its next start, or apply
it from the admin page. Exit status 0 when a threshold is proposed (or applied, or undone),
1 when the guardrails refuse one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kiosk.config import Config
from kiosk.errors import KioskError


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("task", help="the task to validate (see 'kiosk models list')")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--labels", type=Path, metavar="CSV",
                        help="labels: file,label[,patient][,eye]; label 1/0, yes/no, referable/...")
    source.add_argument("--from-sign-offs", action="store_true",
                        help="use the screenings the clinicians confirmed or overruled")
    source.add_argument("--undo", action="store_true",
                        help="withdraw the site threshold: the bundle's operating point again")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="folder of the labelled images (default: the CSV's folder)")
    parser.add_argument("--target", type=float, default=0.90,
                        help="sensitivity the threshold must reach at its lower 95%% bound")
    parser.add_argument("--min-positives", type=int, default=40, help="refuse below this many")
    parser.add_argument("--min-negatives", type=int, default=100, help="refuse below this many")
    parser.add_argument("--apply", action="store_true", help="put the proposed threshold in force")
    parser.add_argument("--actor", default="cli", help="who does it, for the audit log")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace, config: Config) -> int:
    """Validate (and apply, or undo); 0 when a threshold is proposed or in force, 1 if refused."""
    from kiosk.lifecycle import validation
    from kiosk.lifecycle.models import open_pipeline, survey
    from kiosk.store import Store
    from kiosk.visit import apply_settings

    store = Store.open(config)
    # the active bundle per task, not the newest installed (docs/change-control.md)
    pipeline = open_pipeline(config, store, survey(config, store), shadow=False)
    try:
        if args.task not in pipeline.tasks():
            raise KioskError(f"no model is loaded for task {args.task!r} (loaded: "
                             f"{', '.join(pipeline.tasks())})", code="unknown_task")
        apply_settings(store, pipeline)
        if args.undo:
            withdrawn = validation.undo(store, args.task, actor=args.actor, pipeline=pipeline)
            print(json.dumps({"task": args.task, "withdrawn": withdrawn.id}) if args.json else
                  f"{args.task}: site threshold of validation {withdrawn.id} withdrawn; "
                  f"operating point now {pipeline.operating_point(args.task)}")
            return 0
        return _validate(args, store, pipeline)
    finally:
        pipeline.close()
        store.close()


def _validate(args: argparse.Namespace, store: Any, pipeline: Any) -> int:
    """Screen the labelled set, keep and print the report, apply it when asked."""
    from kiosk.lifecycle import validation

    if args.from_sign_offs:
        scored = validation.from_sign_offs(store, args.task, pipeline.models[args.task].bundle.sha256)
    elif args.labels is not None:
        rows = validation.read_labels(args.labels)
        scored = validation.screen_folder(pipeline, args.task, args.images or args.labels.parent,
                                          rows)
    else:
        raise KioskError("give --labels CSV, --from-sign-offs or --undo", code="bad_arguments")
    figures = validation.report(pipeline, args.task, scored, target=args.target,
                                min_positives=args.min_positives, min_negatives=args.min_negatives)
    run = validation.keep(store, figures, source="sign_offs" if args.from_sign_offs else "folder",
                          actor=args.actor)
    proposed = figures["proposal"]["status"] == "proposed"
    if args.apply and proposed:
        run = validation.apply(store, run.id, actor=args.actor, pipeline=pipeline)
    answer = {**figures, "validation": run.id, "applied": run.applied}
    print(json.dumps(answer) if args.json else "\n".join(_lines(answer)))
    return 0 if proposed else 1


def _lines(answer: dict[str, Any]) -> list[str]:
    """The report for a person: the set, the AUC, the point in force and the proposal."""
    auc = answer["auc"]
    lines = [f"validation {answer['validation']}: {answer['task']} {answer['model']['version']} "
             f"on {answer['n_positive']} positive + {answer['n_negative']} negative images"
             + (f" ({', '.join(f'{n} {why}' for why, n in answer['excluded'].items())} left out)"
                if answer["excluded"] else ""),
             "AUC " + (f"{auc:.3f} (95% CI {answer['auc_ci'][0]:.3f}-{answer['auc_ci'][1]:.3f})"
                       if auc is not None else "not measurable (one class only)"),
             _point_line(f"now ({answer['current']['operating_point'] or 'bundle'})",
                         answer["current"])]
    proposal = answer["proposal"]
    if proposal["proposed"] is None:
        lines.append("no threshold proposed: " + "; ".join(proposal["reasons"]))
        return lines
    lines.append(_point_line("proposed (site)", proposal["proposed"]))
    lines.append(_point_line("usual rule, for comparison", proposal["point_estimate"]))
    lines.append(f"applied {answer['applied']}" if answer["applied"] else
                 f"nothing changed: kiosk calibrate {answer['task']} ... --apply to put it in force")
    return lines


def _point_line(name: str, point: dict[str, Any]) -> str:
    """One operating point: threshold, sensitivity and specificity with their intervals."""
    sens, spec = point["sensitivity_ci"], point["specificity_ci"]
    return (f"{name}: threshold {point['threshold']:.4f}, sensitivity {point['sensitivity']:.3f} "
            f"({sens[0]:.3f}-{sens[1]:.3f}), specificity {point['specificity']:.3f} "
            f"({spec[0]:.3f}-{spec[1]:.3f})")
