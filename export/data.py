"""Training data: list the real images, split them by patient, render them once into a cache."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from kiosk.preprocess import render

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
WORK = Path(__file__).resolve().parent / "work"
SPLITS = ("train", "calibration", "test")


@dataclass
class Dataset:
    """Rendered uint8 images (N, H, W, C), targets (N, K), patients and split names."""

    images: np.ndarray
    targets: np.ndarray
    patients: np.ndarray
    split: np.ndarray
    names: np.ndarray

    def part(self, split: str) -> Dataset:
        """The images of one split."""
        keep = self.split == split
        return Dataset(
            self.images[keep], self.targets[keep], self.patients[keep], self.split[keep], self.names[keep]
        )


def split_patients(
    patients: np.ndarray, seed: int, fractions: tuple[float, float] = (0.70, 0.15)
) -> np.ndarray:
    """Assign each image to train / calibration / test so that a patient lies in one split only."""
    unique = np.unique(patients)
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = round(fractions[0] * len(unique))
    n_cal = round(fractions[1] * len(unique))
    which = np.empty(len(unique), dtype=object)
    which[order[:n_train]] = "train"
    which[order[n_train : n_train + n_cal]] = "calibration"
    which[order[n_train + n_cal :]] = "test"
    lookup = dict(zip(unique.tolist(), which.tolist(), strict=True))
    return np.array([lookup[p] for p in patients.tolist()])


def list_fundus(data: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """EyePACS photographs, ordinal targets (level >= 1..4) and patient ids."""
    folder = data / "fundus" / "eyepacs-256"
    with (folder / "labels.csv").open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["image"])
    levels = np.array([int(r["level"]) for r in rows])
    targets = (levels[:, None] >= np.arange(1, 5)[None, :]).astype(np.float32)
    patients = np.array(["eyepacs-" + r["patient"] for r in rows])
    return [folder / "images" / r["image"] for r in rows], targets, patients


def kermany_patient(name: str) -> str:
    """Patient id in a Kermany file name: ``person12_...`` or ``[NORMAL2-]IM-0115-0001``."""
    match = re.match(r"(person\d+)_", name) or re.match(r"((?:NORMAL2-)?IM-\d+)-", name)
    if match is None:
        raise ValueError(f"no patient id in {name!r}")
    return "kermany-" + match.group(1)


def list_chest(data: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Kermany paediatric films, pneumonia targets and patient ids."""
    folder = data / "cxr" / "kermany-224" / "train"
    paths = sorted((folder / "NORMAL").glob("*.jpeg")) + sorted((folder / "PNEUMONIA").glob("*.jpeg"))
    targets = np.array([[p.parent.name == "PNEUMONIA"] for p in paths], dtype=np.float32)
    patients = np.array([kermany_patient(p.name) for p in paths])
    return paths, targets, patients


def adult_chest_rows(data: Path) -> list[dict[str, str]]:
    """The NIH films' labels.csv rows (abnormal, view, age, sex, patient), sorted by file, less
    the 76 films of patients recorded as under 18: the model is for adults (age unknown: kept)."""
    with (data / "cxr" / "nih-adult-512" / "labels.csv").open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["image"])
    return [r for r in rows if not (r["age"].isdigit() and int(r["age"]) < 18)]


def list_adult_chest(data: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """NIH adult frontal films: abnormal (Pneumonia-labelled) vs No Finding, and patient ids."""
    rows = adult_chest_rows(data)
    targets = np.array([[r["abnormal"] == "1"] for r in rows], dtype=np.float32)
    patients = np.array(["nih-" + r["patient"] for r in rows])
    folder = data / "cxr" / "nih-adult-512" / "images"
    return [folder / r["image"] for r in rows], targets, patients


LISTERS = {"fundus-dr": list_fundus, "cxr-pneumonia": list_chest, "cxr-adult": list_adult_chest}


def read_rgb(path: Path) -> np.ndarray:
    """Decode a photograph or film to RGB uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def render_all(paths: list[Path], spec: dict[str, Any], progress: bool = True) -> np.ndarray:
    """Every image through the kiosk's own preprocessing, as one uint8 array."""
    first = render(read_rgb(paths[0]), spec)
    images = np.empty((len(paths), *first.shape), dtype=np.uint8)
    for index, path in enumerate(tqdm(paths, desc="render", disable=not progress)):
        images[index] = render(read_rgb(path), spec)
    return images


def load_real(
    task: str,
    spec: dict[str, Any],
    seed: int,
    data: Path = SHARED_DATA,
    cache: Path = WORK,
    fractions: tuple[float, float] = (0.70, 0.15),
    splits: tuple[str, ...] = SPLITS,
) -> Dataset:
    """The task's real data set, rendered (cached in ``export/work``) and split by patient.

    ``splits``: only the images of these splits are listed and read, so training (train and
    calibration) never opens a test image, and a copy of the data made for another machine (a
    lent GPU) may leave the test split out. The split is made from every patient in the labels,
    so it is the same either way.
    """
    paths, targets, patients = LISTERS[task](data)
    split = split_patients(patients, seed, fractions)
    if tuple(splits) != SPLITS:
        keep = np.isin(split, splits)
        paths = [p for p, k in zip(paths, keep, strict=True) if k]
        targets, patients, split = targets[keep], patients[keep], split[keep]
    part = "" if tuple(splits) == SPLITS else "-" + "+".join(splits)
    cache_file = cache / f"{task}-{spec['size']}-{_spec_key(spec)}-{len(paths)}{part}.npy"
    if cache_file.exists():
        images = np.load(cache_file)
    else:
        images = render_all(paths, spec)
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.partial.npy")
        np.save(partial, images)
        os.replace(partial, cache_file)  # two members starting together: whole file or none
    names = np.array([p.name for p in paths])
    return Dataset(images, targets, patients, split, names)


def load_mnist(path: Path, spec: dict[str, Any]) -> Dataset:
    """PneumoniaMNIST (smoke tests): its val split is split again into calibration and test."""
    arrays = np.load(path)
    train, val = arrays["train_images"], arrays["val_images"]
    images = np.concatenate([train, val])
    images = np.stack([render(image, spec) for image in images])
    targets = np.concatenate([arrays["train_labels"], arrays["val_labels"]]).reshape(-1, 1)
    split = np.array(
        ["train"] * len(train) + ["calibration", "test"] * (len(val) // 2) + ["test"] * (len(val) % 2)
    )
    patients = np.array([f"mnist-{i}" for i in range(len(images))])
    return Dataset(images, targets.astype(np.float32), patients, split, patients.copy())


def _spec_key(spec: dict[str, Any]) -> str:
    """A short digest of the preprocessing, so a changed spec never reuses a stale cache."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
