"""``kiosk models install | shadow-report | promote | rollback``: change control from the shell.

The same steps as the admin's Models page (web/models_admin.py), on the same store, so a change
made here is audited alike and a running kiosk loads the new lineup at its next screening.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from kiosk.config import Config
from kiosk.lifecycle import models as lineup
from kiosk.lifecycle.shadow_report import report
from kiosk.store import Store


def install(args: argparse.Namespace, config: Config) -> int:
    """Verify a bundle, copy it into the models folder, say its role (a candidate, never active)."""
    store = Store.open(config)
    try:
        bundle = lineup.install(config, store, args.path, actor=args.actor)
        role = lineup.survey(config, store).role(bundle)
    finally:
        store.close()
    print(f"installed {bundle.task} {bundle.version}  sha256 {bundle.sha256[:12]}  as {role}")
    return 0


def promote(args: argparse.Namespace, config: Config) -> int:
    """Make ``TASK VERSION`` the active bundle."""
    store = Store.open(config)
    try:
        after = lineup.promote(config, store, args.task, args.version, actor=args.actor)
    finally:
        store.close()
    print(_now_active(after, args.task))
    return 0


def rollback(args: argparse.Namespace, config: Config) -> int:
    """Make the previous bundle of ``TASK`` active again."""
    store = Store.open(config)
    try:
        after = lineup.rollback(config, store, args.task, actor=args.actor)
    finally:
        store.close()
    print(_now_active(after, args.task))
    return 0


def _now_active(after: lineup.Lineup, task: str) -> str:
    """What runs for the task now."""
    row = after.recorded[task]
    return f"{task}: active {lineup.words(row.active)}; previous {lineup.words(row.previous)}"


def shadow_report(args: argparse.Namespace, config: Config) -> int:
    """Print the shadow report: one JSON object per candidate, or readable lines."""
    store = Store.open(config)
    try:
        entries = report(store, lineup.survey(config, store))
    finally:
        store.close()
    for entry in entries:
        print(json.dumps(entry) if args.json else readable(entry))
    if not entries and not args.json:
        print("no candidate bundle is installed, and no shadow result is kept")
    return 0


def readable(entry: dict[str, Any]) -> str:
    """A few lines a person reads: the candidate, against the active model, against clinicians."""
    candidate = entry["candidate"]
    versus, clinicians = entry["versus_active"], entry["versus_clinicians"]
    score = versus["score"]
    lines = [f"{entry['task']} {candidate['version']} (sha256 {candidate['sha256'][:12]}, "
             f"{candidate['role']}) beside the active "
             f"{', '.join(entry['compared_with']) or 'model'}: n = {entry['n']} images",
             f"  verdicts agree {_share(versus['agreement'])}; score difference "
             f"{score['mean_difference']} (95% CI {score['ci']}), r = {score['correlation']}",
             f"  signed screenings: {clinicians['n_signed']}"]
    for side in ("active", "candidate"):
        figures = clinicians[side]
        lines.append(f"  {side:9} sensitivity {_share(figures['sensitivity'])}  specificity "
                     f"{_share(figures['specificity'])}  agreement {_share(figures['agreement'])}")
    return "\n".join(lines)


def _share(estimate: dict[str, Any] | None) -> str:
    """``0.91 (0.84-0.95, n = 60)``, or ``-`` without cases."""
    if estimate is None:
        return "-"
    low, high = estimate["ci"]
    return f"{estimate['value']:.2f} ({low:.2f}-{high:.2f}, n = {estimate['n']})"
