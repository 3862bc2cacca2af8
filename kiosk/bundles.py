"""The bundles the kiosk runs: the newest verified one per task, and what it says about each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.base import Engine
from engines.bundle import Bundle, load_newest
from kiosk.config import Config
from kiosk.errors import BundleError
from kiosk.tasks import describe


def load_bundles(config: Config) -> tuple[dict[str, Bundle], dict[Path, BundleError]]:
    """The newest verified bundle per task, and why the others were refused (none: an error)."""
    bundles, refusals = load_newest(config.models_dir, config.trusted_keys)
    if not bundles:
        reasons = "; ".join(exc.message for exc in refusals.values()) or "none found"
        raise BundleError(f"no verified model bundle in {config.models_dir} ({reasons})",
                          code="no_model")
    return bundles, refusals


def refused_entry(path: Path, exc: BundleError) -> dict[str, Any]:
    """How the kiosk lists a bundle that failed verification (same keys as a loaded one)."""
    return {"id": path.name.removesuffix(".tar"), "version": None, "name": None, "sha256": None,
            "path": str(path), "signature": {"status": "refused", "key_id": None},
            "error": exc.to_dict(), "backend": None, "variant": None, "warmup_ms": None,
            "skipped": []}


def describe_model(bundle: Bundle, engine: Engine, point: str | None) -> dict[str, Any]:
    """What the kiosk says about one loaded bundle: identity, task, signature, back-end."""
    manifest = bundle.manifest
    task = describe(manifest)
    return {
        "id": bundle.task, "version": bundle.version, "name": manifest.get("name"),
        "title": task.title, "kind": task.kind,
        "population": task.population.to_dict() if task.population else None,
        "operating_point": point,
        "sha256": bundle.sha256, "path": str(bundle.path),
        "signature": {"status": "verified", "key_id": bundle.key_id},
        "labels": bundle.labels, "metrics": manifest.get("metrics", {}),
        "intended_use": manifest.get("intended_use"), "limitations": manifest.get("limitations", []),
        **engine.describe(),
    }
