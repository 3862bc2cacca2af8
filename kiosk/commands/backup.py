"""``kiosk backup``: a consistent copy of the store by the SQLite backup API (never a file copy)."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from kiosk.config import Config


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("target", nargs="?", type=Path,
                        help="file to write (default: <data>/backups/kiosk-<time>.db)")


def run(args: argparse.Namespace, config: Config) -> int:
    """Write the copy, check it, print where it is."""
    from kiosk.store import Store

    target = args.target or config.data_dir / "backups" / (
        f"kiosk-{datetime.now().strftime('%Y%m%d-%H%M%S')}.db")
    store = Store.open(config)
    try:
        store.backup(target)
    finally:
        store.close()
    print(f"backup written to {target} (integrity check ok); copy the images folder "
          f"{config.data_dir / 'images'} alongside it")
    return 0
