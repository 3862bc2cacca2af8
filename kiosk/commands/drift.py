"""``kiosk drift [--json]``: do this clinic's images and scores still look like each model's reference?

Per loaded task, the newest results kept in the store (screened in the web app, pushed by a
modality, or ``kiosk screen --keep``) are compared with the reference the bundle carries
(kiosk/lifecycle/drift.py; method and figures in docs/monitoring.md). With ``--json``, one JSON
object per task per line: ``task``, ``model_version``, ``n``, ``statistic``, ``value``,
``threshold``, ``alarm``, and the detail (``window``, ``quantities``, ``new_devices``,
``reason``). An alarm raised here is audited once, as on the admin page.

Exit status: 0 when no task raises an alarm, 1 when any does, 2 when the check cannot run (no
verified bundle, the store cannot be opened).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from kiosk.config import Config


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("--json", action="store_true", help="one JSON object per task per line")


def run(args: argparse.Namespace, config: Config) -> int:
    """Check every loaded task; 1 when any raises an alarm, else 0."""
    from kiosk.lifecycle.drift import summary
    from kiosk.lifecycle.models import active_bundles
    from kiosk.store import Store

    store = Store.open(config)
    try:
        bundles, _ = active_bundles(config, store)  # those in force (docs/change-control.md)
        found = summary(store, bundles)
    finally:
        store.close()
    for one in found:
        print(json.dumps(one) if args.json else human(one), flush=True)
    return 1 if any(one["alarm"] for one in found) else 0


def human(drift: dict[str, Any]) -> str:
    """One readable line per task."""
    head = f"{drift['task']} {drift['model_version']}: "
    if drift["value"] is None:
        words = f"{drift['reason'] or 'no statistic'} (n = {drift['n']})"
    else:
        worst = max((q for q in drift["quantities"] if q["psi"] is not None),
                    key=lambda q: q["psi"])
        words = (f"{drift['statistic'].upper()} {drift['value']:.3f} (largest: {worst['name']}) "
                 f"against {drift['threshold']:.3f} over the last {drift['n']} results")
    if drift["new_devices"]:
        words += f"; new source device(s): {', '.join(drift['new_devices'])}"
    return head + ("ALARM — " if drift["alarm"] else "ok — ") + words
