"""The ``kiosk`` command: one verb per task a person or a service runs.

Each verb lives in ``kiosk/commands/<verb>.py`` with ``configure(parser)`` and
``run(args, config) -> int``; this module only lists them, so ``kiosk --help`` is cheap and no
verb's heavy imports (onnxruntime, Flask, pynetdicom) load unless that verb runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from kiosk import __version__
from kiosk.config import load_config
from kiosk.errors import KioskError

#: verb -> (module under kiosk.commands, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "run the kiosk: web app, DICOM listener and sync loop"),
    "screen": ("screen", "screen image files and print one JSON verdict per input"),
    "sync": ("sync", "send waiting results to the EHR and PACS (once, or --watch)"),
    "doctor": ("doctor", "check the installation and say what to fix"),
    "config": ("config", "print every setting with its value, variable and help"),
    "user": ("user", "create users (the first admin) and reset passwords"),
    "backup": ("backup", "write a consistent copy of the store (SQLite backup API)"),
    "models": ("models", "list model bundles and verify their signatures"),
    "drift": ("drift", "compare recent inputs and scores with each model's reference (alarms)"),
    "fleet": ("fleet", "queue this kiosk's figures (no patient data) for the central record"),
    "calibrate": ("calibrate", "validate a model on this clinic's labelled images; propose a threshold"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb's options."""
    parser = argparse.ArgumentParser(
        prog="kiosk", description="Edge screening kiosk for fundus photographs and chest X-rays."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (module_name, help_line) in VERBS.items():
        module = importlib.import_module(f"kiosk.commands.{module_name}")
        verb_parser = sub.add_parser(verb, help=help_line, description=help_line)
        module.configure(verb_parser)
        verb_parser.set_defaults(module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kiosk`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config()
        return int(args.module.run(args, config))
    except KioskError as exc:
        print(f"kiosk {args.verb}: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
