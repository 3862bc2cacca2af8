"""A real screening pipeline for the web tests: tiny signed bundles built at test time."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from bundle_builder import build_bundle, make_keys
from PIL import Image as PILImage

from kiosk.config import Config
from kiosk.pipeline import Pipeline


def build_models(root: Path) -> tuple[Path, Path]:
    """Fundus and chest bundles (pneumothorax fires on bright films); (models, trusted keys)."""
    keys = make_keys(root)
    build_bundle(root / "models", keys, kind="fundus", edit=_population(18, 120, "adults"))
    build_bundle(root / "models", keys, kind="cxr", gains=[0.0, 4.0], biases=[-5.0, 0.0],
                 edit=_population(1, 5, "children aged 1 to 5"))
    return root / "models", keys.trusted_dir


def _population(low: int, high: int, who: str) -> Any:
    """A manifest edit: the ages the model was trained on, as the shipped bundles state them."""
    def edit(manifest: dict[str, Any]) -> None:
        manifest["population"] = {"age_years": [low, high], "description": who}
    return edit


def model_settings(root: Path) -> dict[str, Any]:
    """Config overrides that point at the test bundles and decode in-process."""
    models, trusted = build_models(root)
    return {"models_dir": models, "trusted_keys": trusted, "sandbox_workers": 0}


def open_pipeline(config: Config) -> Pipeline:
    """The real pipeline over the configured bundles."""
    return Pipeline.from_config(config)


def darkened(jpeg: bytes, factor: int = 8) -> bytes:
    """The photograph made too dark to grade (an ungradable capture)."""
    picture = np.asarray(PILImage.open(io.BytesIO(jpeg)).convert("RGB"))
    buffer = io.BytesIO()
    PILImage.fromarray((picture // factor).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
