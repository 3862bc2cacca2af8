"""Shadow-mode fixtures: a shipped bundle copied into a temporary models folder, and a candidate
made from it (a newer version, its calibration changed, re-signed with a key made in the test and
trusted beside the shipped keys).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from bundle_builder import TestKeys, make_keys, sign

from engines.bundle import MANIFEST, version_key

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Models:
    """A temporary models folder holding shipped bundles, and its trusted keys."""

    folder: Path
    trusted: Path
    keys: TestKeys
    shipped: dict[str, Path]  # task -> its shipped bundle's copy in ``folder``


def shipped(task: str) -> Path:
    """The newest shipped bundle of a task in models/ (skip when none ships)."""
    found = [p for p in (ROOT / "models").glob(f"{task}-*") if (p / MANIFEST).is_file()
             and json.loads((p / MANIFEST).read_text())["task"] == task]
    if not found:
        pytest.skip(f"no shipped {task} bundle in models/")
    return max(found, key=lambda p: version_key(json.loads((p / MANIFEST).read_text())["version"]))


def models_with(root: Path, *tasks: str) -> Models:
    """A models folder with the newest shipped bundle of each task, and the trust list."""
    folder, trusted = root / "models", root / "trusted"
    shutil.copytree(ROOT / "models" / "trusted_keys", trusted)
    keys = make_keys(root / "keys", key_id="shadow-test")
    shutil.copy(keys.trusted_dir / "shadow-test.pub", trusted / "shadow-test.pub")
    copies = {}
    for task in tasks:
        source = shipped(task)
        copies[task] = Path(shutil.copytree(source, folder / source.name))
    return Models(folder, trusted, keys, copies)


def make_candidate(source: Path, out: Path, keys: TestKeys, *, temperature_factor: float = 2.5,
                   bump: int = 1) -> tuple[Path, str]:
    """A copy of ``source`` with a newer version and a changed calibration temperature, signed
    with ``keys``; returns (folder, version). Its scores differ from the source's on any image
    whose logit is not zero, so its output can be told apart wherever it might leak."""
    manifest = json.loads((source / MANIFEST).read_text())
    major, minor, *_ = (*version_key(manifest["version"]), 0, 0)
    version = f"{major}.{minor + bump}.9"
    folder = out / f"{manifest['task']}-{version}"
    shutil.copytree(source, folder)
    manifest["version"] = version
    manifest["key_id"] = keys.key_id
    calibration = manifest.setdefault("calibration", {})
    calibration["temperature"] = float(calibration.get("temperature", 1.0)) * temperature_factor
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    sign(folder, keys)
    return folder, version
