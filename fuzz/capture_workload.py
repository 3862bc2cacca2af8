"""A capture workload for the kill, power-loss and disk-full tests: record screenings, ack each.

    python fuzz/capture_workload.py DATA_DIR [--start N] [--count N]

Each screening (a patient, two eye images, two heat-maps, the screening with its outbox rows and
audit entry) is recorded through ``kiosk.store.Store`` exactly as the kiosk does; only after
``record_screening`` has returned is ``ACK <uid> <image sha256s>`` printed, as the nurse would
see the result. A refusal prints ``REFUSED <code>`` and ends the run with status 3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from store_helpers import screen  # noqa: E402

from kiosk.config import load_config  # noqa: E402
from kiosk.errors import KioskError  # noqa: E402
from kiosk.store import Store  # noqa: E402

#: Destinations configured so that every screening gets its outbox rows (nothing is sent here).
DESTINATIONS = {"fhir_url": "http://127.0.0.1:9/fhir", "hl7_address": "127.0.0.1:9"}


def main() -> int:
    """Record screenings until killed, refused, or ``--count`` is reached."""
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=10**6)
    args = parser.parse_args()
    config = load_config(env={}, data_dir=args.data_dir.resolve(), min_free_disk_mb=1, **DESTINATIONS)
    store = Store.open(config)
    print("READY", flush=True)
    for seed in range(args.start, args.start + args.count):
        try:
            screening = screen(store, seed, identifier=f"W-{seed:06d}")
        except KioskError as exc:
            print(f"REFUSED {exc.code}", flush=True)
            return 3
        print(f"ACK {screening.uid} {' '.join(screening.image_shas + screening.heatmap_shas)}", flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
