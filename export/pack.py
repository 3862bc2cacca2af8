"""Pack what a recipe trains on for another machine (a rented or lent GPU), in parts of a size.

``python -m export.pack RECIPE OUT [--max-mb 58] [--data ../shared/data]`` copies the images of
the recipe's train and calibration splits (never the test split: the card's figures stay on
data that no training machine held), the labels beside them, and, for a transfer recipe, the
installed package of its ImageNet weights (checked by sha256 there as here), into
``OUT/part-1``, ``OUT/part-2``, ... each at most ``--max-mb`` MB, for links or tools that limit
one transfer. Each part holds ``data/`` (laid out as ``../shared/data``) and ``site/`` (for
``PYTHONPATH``); copying every part's contents into one folder rebuilds both:

    for part in OUT/part-*; do cp -r "$part"/. /tmp/train/; done
    PYTHONPATH=/tmp/train/site:. scripts/train-gpu.sh /tmp/train/data /tmp/work OUT 6 RECIPE...
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from export.data import LISTERS, SHARED_DATA, split_patients
from export.recipes import RECIPES

FITTING = ("train", "calibration")


def fitting_files(recipe_name: str, data: Path) -> list[tuple[Path, Path]]:
    """(source, path inside the part) of every file a run of the recipe reads: the labels first,
    then the weights package, then the calibration and train images."""
    recipe = RECIPES[recipe_name]
    paths, _targets, patients = LISTERS[recipe.task](data)
    split = split_patients(patients, recipe.seed, recipe.fractions)
    images = [p for s in ("calibration", "train") for p, t in zip(paths, split, strict=True) if t == s]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    labels = sorted({*root.glob("*.csv"), *root.parent.glob("*.csv")})
    files = [(f, Path("data") / f.relative_to(data)) for f in labels]
    if recipe.backbone:
        from export.lite import weights_path

        package = weights_path(recipe.backbone).parent.parent
        files += [(f, Path("site") / f.relative_to(package.parent))
                  for f in sorted(package.rglob("*")) if f.is_file() and "__pycache__" not in f.parts]
    return files + [(p, Path("data") / p.relative_to(data)) for p in images]


def pack(recipe_name: str, out: Path, max_bytes: int, data: Path = SHARED_DATA) -> list[Path]:
    """Copy the recipe's fitting files into parts of at most ``max_bytes``; the parts made."""
    parts: list[Path] = []
    used = max_bytes
    for source, inside in fitting_files(recipe_name, data):
        size = source.stat().st_size
        if size > max_bytes:
            raise SystemExit(f"{source} ({size} bytes) is larger than a part")
        if used + size > max_bytes:
            parts.append(out / f"part-{len(parts) + 1}")
            used = 0
        target = parts[-1] / inside
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        used += size
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.pack", description=__doc__.split("\n")[0])
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("out", type=Path, help="an empty folder for the parts")
    parser.add_argument("--max-mb", type=float, default=58.0, help="largest part, in MB (10^6 bytes)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty")
    for part in pack(args.recipe, args.out, int(args.max_mb * 1e6), args.data):
        files = [f for f in part.rglob("*") if f.is_file()]
        print(f"{part}: {len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
