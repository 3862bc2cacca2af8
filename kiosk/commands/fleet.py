"""``kiosk fleet``: queue this kiosk's figures for a period to the central record (issue 16.5).

``kiosk fleet report`` makes the figures of a period (yesterday by default: whole UTC days) and
queues them to the outbox as one FHIR MeasureReport, sent by ``kiosk sync`` like every result
(exactly once, with the same retries and parking). A period is reported once; asking again
prints the report queued before. ``kiosk fleet list`` shows the reports and their state.
No patient data leaves in them (docs/fleet.md).
"""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta, timezone

from kiosk.config import Config


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("action", choices=("report", "list"),
                        help="report: queue a period's figures; list: the reports queued")
    parser.add_argument("--day", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="the one UTC day to report (default: yesterday)")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="first UTC day of a longer period (with --to)")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="last UTC day of the period, included")
    parser.add_argument("--include-today", action="store_true",
                        help="allow a period that has not ended (later screenings of it are "
                        "never reported: a period is reported once)")


def period_of(args: argparse.Namespace, today: date) -> tuple[date, date]:
    """The period asked for: --day, or --from/--to, else yesterday."""
    if args.start or args.end:
        return args.start or args.end, args.end or args.start
    day = args.day or today - timedelta(days=1)
    return day, day


def run(args: argparse.Namespace, config: Config) -> int:
    """Queue or list fleet reports; prints JSON."""
    from kiosk.lifecycle import fleet
    from kiosk.store import Store

    store = Store.open(config)
    try:
        if args.action == "list":
            print(json.dumps(store.fleet_reports(), indent=2))
            return 0
        today = datetime.now(timezone.utc).date()
        start, end = period_of(args, today)
        drift, surveillance = fleet.running_figures(store)
        report, queued = fleet.queue(store, fleet.Period(start, end), drift=drift,
                                     surveillance=surveillance, actor="cli", today=today,
                                     allow_open=args.include_today)
        print(json.dumps({"report": report.id, "kiosk": report.kiosk,
                          "period": [report.period_start, report.period_end],
                          "queued": queued, "destinations": store.fleet_destinations,
                          "figures": report.figures}, indent=2))
        return 0
    finally:
        store.close()

