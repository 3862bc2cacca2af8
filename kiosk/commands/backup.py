"""``kiosk backup``: placeholder until its owner module lands (see the open issues)."""

from __future__ import annotations

import argparse

from kiosk.config import Config
from kiosk.errors import KioskError


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""


def run(args: argparse.Namespace, config: Config) -> int:
    """Not built yet: says so instead of pretending."""
    raise KioskError("'kiosk backup' is not built yet", code="not_built")
