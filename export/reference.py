"""The input reference a bundle carries for drift alarms, and patch versions that add it.

At build time (export/build.py) and for a bundle already shipped (``python -m export reference
models/<bundle>``), every image of the recipe's calibration split (the same seed and split
functions as training: export/data.py ``split_patients``) is read the way the kiosk reads it
(``kiosk.intake.read_image`` and ``kiosk.framing.working_copy`` at the pipeline's working size)
and measured with ``kiosk.pixels.features.features_of``, the very function the pipeline puts
on every result; kiosk.lifecycle.drift bins the measures (deciles) into the manifest's
``input_reference``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from export.bundle import seal, verify_with_kiosk
from export.data import LISTERS, split_patients
from export.errors import ExportError
from export.recipes import RECIPES, Recipe
from export.signing import KEY_ENV, load_private_key
from kiosk.domain import ImageKind
from kiosk.framing import working_copy
from kiosk.intake import read_image
from kiosk.lifecycle.drift import input_reference
from kiosk.pipeline import QUALITY_SIDE
from kiosk.pixels.features import features_of

SPLIT = "calibration"


def split_files(recipe: Recipe, data_dir: Path, split: str = SPLIT) -> list[Path]:
    """The image files of one split of the recipe's data set (by patient, the recipe's seed)."""
    paths, _, patients = LISTERS[recipe.task](data_dir)
    which = split_patients(patients, recipe.seed, recipe.fractions)
    return [path for path, name in zip(paths, which.tolist(), strict=True) if name == split]


def file_features(path: Path, kind: ImageKind, size: int) -> dict[str, float | str]:
    """One file's input features, read as the pipeline reads it for a model of ``size`` px."""
    target = max(QUALITY_SIDE, size)
    image = read_image(path.read_bytes(), source=path.name, kind_hint=kind, target_size=target)
    return features_of(working_copy(image, target))


def reference_for(recipe: Recipe, data_dir: Path, kind: ImageKind) -> dict[str, Any]:
    """The manifest's ``input_reference`` over the recipe's calibration split."""
    files = split_files(recipe, data_dir)
    size = int(recipe.spec["size"])
    return input_reference([file_features(path, kind, size) for path in files], SPLIT)


def recipe_of(manifest: dict[str, Any]) -> Recipe:
    """The recipe that built a bundle (same task and version; a patch version's original)."""
    version = manifest.get("patch", {}).get("from", manifest["version"])
    for recipe in RECIPES.values():
        if recipe.task == manifest["task"] and recipe.version == version:
            return recipe
    raise ExportError(f"no recipe builds {manifest['task']} {manifest['version']}")


def patch_version(version: str) -> str:
    """'2.0.0' -> '2.0.1'."""
    major, minor, patch = version.split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


def add_reference(bundle: Path, data_dir: Path, out: Path) -> Path:
    """A patch version of ``bundle`` in ``out``: the same model files, its manifest with the input
    reference added, re-signed with the key at $KIOSK_SIGNING_KEY. Refused when the split does
    not hold as many images as the manifest's score distribution (not the card's split)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    recipe = recipe_of(manifest)
    kind: ImageKind = "fundus" if recipe.task.startswith("fundus") else "cxr"
    reference = reference_for(recipe, data_dir, kind)
    expected = int(np.sum(manifest["score_distribution"]["counts"]))
    if reference["n"] != expected:
        raise ExportError(f"the {SPLIT} split holds {reference['n']} images, the bundle's score "
                          f"distribution {expected}: not the split the card names")
    version = patch_version(manifest["version"])
    folder = out / f"{manifest['task']}-{version}"
    if folder.exists():
        raise ExportError(f"{folder} exists already")
    shutil.copytree(bundle, folder)
    (folder / "manifest.sig").unlink()
    _note_in_card(folder / "MODEL_CARD.md", bundle.name, manifest["version"], version, reference)
    patched = {key: value for key, value in manifest.items() if key not in ("files", "key_id")}
    patched.update(version=version, input_reference=reference,
                   patch={"from": manifest["version"],
                          "changes": "input_reference added for drift alarms; model files, "
                                     "thresholds and figures unchanged"})
    key = load_private_key()
    key_id = Path(os.environ.get(KEY_ENV, "")).stem
    seal(folder, patched, key, key_id)
    verify_with_kiosk(folder, key, key_id)
    return folder


def _note_in_card(card: Path, source: str, old: str, new: str, reference: dict[str, Any]) -> None:
    """Say in the model card what the patch version changed."""
    text = card.read_text()
    text = text.replace(f" {old}", f" {new}", 1)
    text += (f"\n## Version {new} (patch of {old})\n\nThe same network files, thresholds and "
             f"figures as {old}. The manifest adds `input_reference`: the input features the "
             f"kiosk measures on every image (kiosk/pixels/features.py: brightness, contrast, "
             f"sharpness, field of view, width, height, source device) over the {reference['split']} "
             f"split ({reference['n']} images, the split named above), binned at their deciles, "
             f"which drift alarms compare with the clinic's recent images (docs/monitoring.md). "
             f"Made with `python -m export reference models/{source}`.\n")
    card.write_text(text)
