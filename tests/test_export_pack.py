"""``python -m export.pack``: what a recipe trains on, packed for another machine in parts of a
size, without the test split; the parts put back together train on the same images."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from conftest import shared

from engines.bundle import sha256_file
from export.data import load_real
from export.lite import WEIGHTS
from export.pack import FITTING, main
from export.recipes import RECIPES


def _small_copy(tmp_path: Path, eyes: int = 60) -> Path:
    """A data folder of the first ``eyes`` EyePACS photographs (links) and their labels."""
    source = shared("fundus", "eyepacs-256")
    folder = tmp_path / "data" / "fundus" / "eyepacs-256"
    (folder / "images").mkdir(parents=True)
    rows = (source / "labels.csv").read_text().splitlines()[: eyes + 1]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    for row in rows[1:]:
        name = row.split(",")[0]
        os.symlink(source / "images" / name, folder / "images" / name)
    return tmp_path / "data"


def test_parts_rebuild_the_training_data_without_the_test_split(tmp_path: Path) -> None:
    data = _small_copy(tmp_path)
    recipe = RECIPES["fundus-dr-1.1"]  # trained from scratch: images and labels only
    assert main(["fundus-dr-1.1", str(tmp_path / "out"), "--max-mb", "0.3", "--data", str(data)]) == 0
    parts = sorted((tmp_path / "out").iterdir())
    assert len(parts) >= 3
    rebuilt = tmp_path / "rebuilt"
    for part in parts:
        files = [f for f in part.rglob("*") if f.is_file()]
        assert sum(f.stat().st_size for f in files) <= 300_000
        shutil.copytree(part, rebuilt, dirs_exist_ok=True)
    every = load_real("fundus-dr", recipe.spec, recipe.seed, data=data, cache=tmp_path / "c1")
    sent = {p.name for p in (rebuilt / "data" / "fundus" / "eyepacs-256" / "images").iterdir()}
    assert sent == set(every.names[np.isin(every.split, FITTING)])  # not one test image
    again = load_real("fundus-dr", recipe.spec, recipe.seed, data=rebuilt / "data", cache=tmp_path / "c2",
                      splits=FITTING)
    kept = np.isin(every.split, FITTING)
    assert (again.names == every.names[kept]).all() and np.array_equal(again.images, every.images[kept])


def test_a_transfer_recipe_takes_its_checked_weights_along(tmp_path: Path) -> None:
    data = _small_copy(tmp_path, eyes=10)
    assert main(["fundus-dr", str(tmp_path / "out"), "--data", str(data)]) == 0
    info = WEIGHTS[RECIPES["fundus-dr"].backbone]
    weights = tmp_path / "out" / "part-1" / "site" / info.module / info.file
    assert sha256_file(weights) == info.sha256
