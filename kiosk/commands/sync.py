"""``kiosk sync``: send waiting results to the EHR and PACS, once or as a loop (``--watch``)."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from kiosk.config import Config


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("--watch", action="store_true",
                        help="keep sending, a pass every KIOSK_SYNC_INTERVAL_S seconds")
    parser.add_argument("--status", action="store_true",
                        help="print the queue per destination and the parked items as JSON")
    parser.add_argument("--retry", type=int, metavar="ITEM", action="append", default=[],
                        help="put a parked item back in the queue (repeatable)")
    parser.add_argument("--retry-destination", metavar="NAME", action="append", default=[],
                        help="put every parked item of a destination back in the queue, once "
                        "its cause is fixed (e.g. the PACS's AE title); repeatable")


def run(args: argparse.Namespace, config: Config) -> int:
    """Run one pass (or loop), print what happened; 1 when items are left parked."""
    from kiosk.store import Store
    from kiosk.sync import make_worker, worker_lock
    from kiosk.sync.status import sync_status

    store = Store.open(config)
    try:
        for item_id in args.retry:
            store.retry_item(item_id, actor="cli")
        for item in store.parked_items():
            if item.destination in args.retry_destination:
                store.retry_item(item.id, actor="cli")
        if args.status:
            print(json.dumps(sync_status(store), indent=2))
            return 0
        with worker_lock(config.data_dir):
            worker = make_worker(store)
            print("sync: started", flush=True)
            if args.watch:
                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                signal.signal(signal.SIGINT, lambda *_: stop.set())
                worker.run_forever(config.sync_interval_s, stop)
                return 0
            report = worker.run_once()
        print(json.dumps({"sent": report.sent, "retrying": report.retrying,
                          "parked": report.parked, "errors": report.errors}))
        return 1 if store.parked_items() else 0
    finally:
        store.close()
