"""Helpers the harnesses share: import a package with all its submodules (under instrumentation)."""

from __future__ import annotations

import importlib
import pkgutil


def import_tree(*names: str) -> None:
    """Import each package and every submodule now, so atheris instruments code loaded lazily."""
    for name in names:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{name}."):
            try:
                importlib.import_module(module.name)
            except ImportError:  # an optional codec that is not installed
                continue
