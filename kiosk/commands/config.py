"""``kiosk config``: print the configuration table with the values in force."""

from __future__ import annotations

import argparse
import json

from kiosk.config import Config, settings


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--markdown", action="store_true", help="print the defaults as the Markdown table of the docs"
    )


def run(args: argparse.Namespace, config: Config) -> int:
    """Print every setting: variable, value in force, help line."""
    if args.markdown:
        print("| variable | default | meaning |\n| --- | --- | --- |")
        for _, env, default, help_line in settings():
            print(f"| `{env}` | `{default}` | {help_line} |")
        return 0
    rows = [(env, str(getattr(config, name)), help_line) for name, env, _, help_line in settings()]
    if args.json:
        print(json.dumps({env: value for env, value, _ in rows}, indent=2))
        return 0
    width = max(len(env) for env, _, _ in rows)
    for env, value, help_line in rows:
        print(f"{env:<{width}}  {value}\n{'':<{width}}  {help_line}")
    return 0
