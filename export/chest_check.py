"""Train the kiosk's learned chest check (orientation, polarity, chest or not) on free labels.

    nice -n 5 .venv/bin/python -m export.chest_check          # cache, train, write, evaluate

Real chest films (Kermany paediatric, NIH adult; the adult samples and the chest DICOMs are kept
out as an external set) and their turned, mirrored and inverted copies give the orientation and
polarity labels; the tibia and dental DICOMs, fundus photographs in grey, small crops and edge
strips of chest films, and synthetic pictures give "not a chest". Films are split by patient: a
fifth of the patients (a stable hash of the id) are held out and never trained on.

Thumbnails are made once by the kiosk's own intake and ``film_thumbnail`` and cached under
``export/work/chest_check/`` (about 20 s CPU); training is a small CNN on one CPU thread (about
180-200 s CPU; 14 epochs of ~10,200 thumbnails), and the evaluation after it ~2 min. The
weights go to ``kiosk/quality/chest_check.npz`` with batch norm folded in; the script prints
their sha256, to be pinned in ``kiosk/quality/chest_check.py``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from export.chest_synthetic import chest_phantom, crop_variants, synthetic_non_chest
from export.data import kermany_patient
from kiosk.intake import read_image
from kiosk.quality.film import SIDE, film_thumbnail

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
CACHE = Path(__file__).resolve().parent / "work" / "chest_check"
OUT = ROOT / "kiosk" / "quality" / "chest_check.npz"
#: Share of patients held out (by a stable hash of the patient id), never trained on.
HELD_OUT_PERCENT = 20
#: The chest DICOMs (the re-tagged SIIM copy is the same pixels, refused at intake).
CHEST_DICOMS = ("CR-MONO1-10-chest.dcm", "RG1_J2KI.dcm", "SIIM-CXR-no-pneumothorax.dcm")
NON_CHEST_DICOMS = ("RG3_J2KI.dcm", "RG3_J2KR.dcm", "CR-ModalitySequenceLUT.dcm")
#: Films stored the wrong way up in the data sets, with the quarter turns (np.rot90 k) that make
#: them upright; found by the check itself and confirmed by eye (the lead marker reads upside
#: down, the diaphragm is at the top).
TURNED_IN_THE_DATA = {"00003490_011.jpg": 2}
#: The side the kiosk decodes a film to before quality (its working copy is at least this).
DECODE_SIDE = 256


@dataclass(frozen=True)
class Film:
    """One real chest film: where it is, whose it is, and whether training may see it."""

    path: Path
    source: str  # kermany, nih, samples, dicom
    patient: str

    @property
    def held_out(self) -> bool:
        """True for films of held-out patients and for the external sets (never trained on)."""
        return self.source in ("samples", "dicom") or is_held_out(self.patient)


def is_held_out(patient: str) -> bool:
    """A stable fifth of the patients, by the hash of their id."""
    return int(hashlib.sha256(patient.encode()).hexdigest()[:8], 16) % 100 < HELD_OUT_PERCENT


def chest_films(data: Path = SHARED_DATA) -> list[Film]:
    """Every real chest film in ``data``: paediatric, adult, the samples and the chest DICOMs."""
    kermany = sorted((data / "cxr" / "kermany-224" / "train").glob("*/*.jpeg"))
    films = [Film(p, "kermany", kermany_patient(p.name)) for p in kermany]
    nih = data / "cxr" / "nih-adult-512"
    with (nih / "labels.csv").open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["image"])
    films += [Film(nih / "images" / r["image"], "nih", "nih-" + r["patient"]) for r in rows]
    films += [Film(p, "samples", p.name) for p in sorted((data / "cxr" / "samples").iterdir())]
    films += [Film(data / "dicom" / n, "dicom", n) for n in CHEST_DICOMS]
    return films


def decode_film(path: Path) -> np.ndarray:
    """A chest film decoded by the kiosk's own intake, as grey uint8 pixels."""
    pixels = read_image(path.read_bytes(), kind_hint="cxr", target_size=DECODE_SIDE).pixels
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def upright_film(film: Film) -> np.ndarray:
    """The decoded film turned upright where the data set stores it turned."""
    grey = decode_film(film.path)
    return np.rot90(grey, TURNED_IN_THE_DATA.get(film.path.name, 0)).copy()


def decode_other_dicom(path: Path) -> np.ndarray:
    """A DICOM of another body part: intake refuses it by its header, so decode the pixels only."""
    from kiosk.intake.dicom import parse, stored_pixels, to_uint8

    ds = parse(path.read_bytes())
    return to_uint8(stored_pixels(ds, 2 * DECODE_SIDE), ds)


def decode_photo(path: Path) -> np.ndarray:
    """A fundus photograph in grey, as a camera's JPEG would be judged given as a chest film."""
    pixels = read_image(path.read_bytes(), kind_hint="fundus", target_size=DECODE_SIDE).pixels
    return pixels.mean(axis=2).astype(np.uint8)  # what kiosk.quality.assess does with RGB films


def fundus_photos(data: Path = SHARED_DATA) -> list[tuple[Path, bool]]:
    """(photo, held out) for a stable sample of EyePACS, all of DRIVE and the full-size ones."""
    folder = data / "fundus" / "eyepacs-256"
    with (folder / "labels.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["patient"]) % 4 == 0]
    photos = [(folder / "images" / r["image"], is_held_out("eyepacs-" + r["patient"]))
              for r in sorted(rows, key=lambda r: r["image"])]
    photos += [(p, False) for p in sorted((data / "fundus" / "drive").glob("*/images/*"))]
    photos += [(p, True) for p in sorted((data / "fundus" / "eyepacs-fullres").glob("*.jp*g"))]
    return photos


# --- the cache of thumbnails --------------------------------------------------------------

def _to_uint8(thumb: np.ndarray) -> np.ndarray:
    """A thumbnail stored in a byte per pixel (the mask plane is 0 or 1)."""
    return np.round(thumb * np.array([255.0, 1.0])[:, None, None]).astype(np.uint8)


def thumbnails_of(rows: Iterator[tuple[np.ndarray, str, str, bool, bool]]) -> dict[str, np.ndarray]:
    """Stack (grey, source, name, chest, held out) rows into the cached arrays."""
    thumbs, sources, names, chest, held = [], [], [], [], []
    for grey, source, name, is_chest, is_held in rows:
        thumbs.append(_to_uint8(film_thumbnail(grey)))
        sources.append(source)
        names.append(name)
        chest.append(is_chest)
        held.append(is_held)
    return {"thumbs": np.stack(thumbs), "source": np.array(sources), "name": np.array(names),
            "chest": np.array(chest), "held_out": np.array(held)}


def _cache_rows(data: Path, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, str, str,
                                                                          bool, bool]]:
    """Every cached picture: real films, their crops, other body parts, fundus, synthetic."""
    for film in chest_films(data):
        grey = upright_film(film)
        yield grey, film.source, film.path.name, True, film.held_out
        if not film.held_out and rng.random() < 0.35:
            for crop in crop_variants(grey, rng, 1, whole=False):
                yield crop, "chest-crop", film.path.name, False, False
    for name in NON_CHEST_DICOMS:
        grey = decode_other_dicom(data / "dicom" / name)
        yield grey, "other-dicom", name, False, True  # the whole film: what is measured
        for crop in crop_variants(grey, rng, 150, whole=True):
            yield crop, "other-dicom-variant", name, False, False
    for path, held in fundus_photos(data):
        yield decode_photo(path), "fundus", path.name, False, held
    for index in range(300):
        yield chest_phantom(rng, index), "phantom", f"phantom-{index}", True, False
    for index, picture in enumerate(synthetic_non_chest(rng, 1200)):
        yield picture, "synthetic", f"synthetic-{index}", False, False


def load_cache(data: Path = SHARED_DATA, cache: Path = CACHE) -> dict[str, np.ndarray]:
    """The cached thumbnails, made once (about a minute) and reused."""
    path = cache / f"thumbnails-{SIDE}.npz"
    if not path.exists():
        started = time.process_time()
        arrays = thumbnails_of(_cache_rows(data, np.random.default_rng(2026)))
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
        np.savez(partial, **arrays)  # type: ignore[arg-type]  # numpy stubs: names as keywords
        os.replace(partial, path)
        print(f"cached {len(arrays['thumbs'])} thumbnails in {time.process_time() - started:.0f} "
              "s CPU")
    with np.load(path, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


#: Adult films are a seventh of the films; each counts this many times in an epoch.
ADULT_WEIGHT = 3
#: Weight of a chest film in the chest-or-not loss: a film refused as "not a chest" costs more
#: than another picture let through (which the exposure checks and the model's own
#: population checks still see).
CHEST_WEIGHT = 2.0

# --- training -----------------------------------------------------------------------------

def build_network() -> Any:
    """The CNN whose forward pass kiosk/quality/chest_check.py re-implements in numpy."""
    from torch import nn

    layers: list[nn.Module] = []
    widths = (2, 8, 16, 32, 48)
    for width_in, width_out in itertools.pairwise(widths):
        layers += [nn.Conv2d(width_in, width_out, 3, padding=1, bias=False),
                   nn.BatchNorm2d(width_out), nn.ReLU(), nn.MaxPool2d(2)]
    layers += [nn.Flatten(), nn.Dropout(0.2), nn.Linear(widths[-1] * (SIDE // 16) ** 2, 6)]
    return nn.Sequential(*layers)


def augment(x: Any, chest: Any, generator: Any) -> tuple[Any, Any, Any]:
    """Random mirror, tilt, zoom, gamma; then a random quarter turn and polarity (the labels)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    uniform = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    mirror = uniform(n) < 0.5
    x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    angle = (uniform(n) - 0.5) * torch.where(chest, 0.4, 6.3)  # +-11 degrees; any for others
    scale = 0.9 + 0.25 * uniform(n)
    shift = (uniform(n, 2) - 0.5) * 0.15
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False)
    gamma = torch.exp((uniform(n) - 0.5) * 1.0)[:, None, None]
    x = torch.stack([x[:, 0].clamp(0, 1) ** gamma, (x[:, 1] > 0.5).float()], 1)
    turns = torch.multinomial(torch.tensor([0.4, 0.2, 0.2, 0.2]), n, True, generator=generator)
    x = torch.stack([torch.rot90(x[i], int(turns[i]), (1, 2)) for i in range(n)])
    inverted = uniform(n) < 0.3
    film = torch.where(inverted[:, None, None], x[:, 1] - x[:, 0], x[:, 0])
    return torch.stack([film, x[:, 1]], 1), turns, inverted.float()


def _epoch_order(sources: np.ndarray, generator: Any) -> Any:
    """A shuffled epoch in which each adult film counts ADULT_WEIGHT times (they are few)."""
    import torch

    index = torch.arange(len(sources))
    adult = torch.from_numpy(np.nonzero(sources == "nih")[0])
    index = torch.cat([index, *[adult] * (ADULT_WEIGHT - 1)])
    return index[torch.randperm(len(index), generator=generator)]


def train(arrays: dict[str, np.ndarray], epochs: int = 14, seed: int = 0,
          without: tuple[str, ...] = ()) -> Any:
    """Fit the CNN on the training thumbnails (less the ``without`` sources); the torch network."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # the other core belongs to the diagnostic models' training
    generator = torch.Generator().manual_seed(seed)
    keep = ~arrays["held_out"] & ~np.isin(arrays["source"], without)
    images = torch.from_numpy(arrays["thumbs"][keep]).float() / torch.tensor([255.0, 1.0])[:, None,
                                                                                           None]
    chest = torch.from_numpy(arrays["chest"][keep])
    sources = arrays["source"][keep]
    network = build_network()
    optimiser = torch.optim.AdamW(network.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(sources) + (ADULT_WEIGHT - 1) * int((sources == "nih").sum())) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=steps)
    network.train()
    for epoch in range(epochs):
        order, total = _epoch_order(sources, generator), 0.0
        for batch in order[: len(order) // 128 * 128].split(128):
            x, turns, inverted = augment(images[batch], chest[batch], generator)
            logits = network(x)
            is_chest = chest[batch]
            loss = F.binary_cross_entropy_with_logits(  # refusing a chest costs more
                logits[:, 5], is_chest.float(), pos_weight=torch.tensor(CHEST_WEIGHT))
            if is_chest.any():
                loss = loss + F.cross_entropy(logits[is_chest, :4], turns[is_chest])
                loss = loss + F.binary_cross_entropy_with_logits(logits[is_chest, 4],
                                                                 inverted[is_chest])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
        print(f"epoch {epoch + 1}/{epochs}: loss {total / (len(order) // 128):.4f}", flush=True)
    return network.eval()


def folded_weights(network: Any) -> dict[str, np.ndarray]:
    """The network's weights with each batch norm folded into the convolution before it."""
    convs = [m for m in network if m.__class__.__name__ == "Conv2d"]
    norms = [m for m in network if m.__class__.__name__ == "BatchNorm2d"]
    linear = next(m for m in network if m.__class__.__name__ == "Linear")
    arrays: dict[str, np.ndarray] = {}
    for index, (conv, norm) in enumerate(zip(convs, norms, strict=True)):
        scale = (norm.weight / (norm.running_var + norm.eps).sqrt()).detach().numpy()
        weight = conv.weight.detach().numpy() * scale[:, None, None, None]
        bias = norm.bias.detach().numpy() - norm.running_mean.detach().numpy() * scale
        arrays[f"conv{index}_w"], arrays[f"conv{index}_b"] = weight, bias
    arrays["fc_w"] = linear.weight.detach().numpy()
    arrays["fc_b"] = linear.bias.detach().numpy()
    return {name: value.astype(np.float32) for name, value in arrays.items()}


def write_weights(arrays: dict[str, np.ndarray], path: Path = OUT) -> str:
    """Save the weights (deterministic bytes) and return their sha256."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # as above
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


# --- evaluation on the cached thumbnails --------------------------------------------------

COPIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "upright": lambda t: t,
    "mirrored": lambda t: t[:, :, ::-1],
    "turned_90": lambda t: np.rot90(t, 1, (1, 2)),
    "upside_down": lambda t: np.rot90(t, 2, (1, 2)),
    "turned_270": lambda t: np.rot90(t, 3, (1, 2)),
    "inverted": lambda t: np.stack([t[1] - t[0], t[1]]),
}


def evaluate(arrays: dict[str, np.ndarray], weights: Path, sha256: str) -> dict[str, Any]:
    """Refusal rates of the numpy check on held-out thumbnails, by source and copy."""
    from kiosk.quality.chest import content_failure
    from kiosk.quality.chest_check import ChestCheck

    check = ChestCheck.load(weights, sha256)
    report: dict[str, Any] = {}
    thumbs = arrays["thumbs"].astype(np.float32) / np.array([255.0, 1.0], np.float32)[:, None, None]
    for source, held in (("kermany", True), ("nih", True), ("samples", True), ("dicom", True),
                         ("kermany", False), ("nih", False)):
        chosen = np.nonzero((arrays["source"] == source) & (arrays["held_out"] == held))[0]
        part = "held-out" if held else "trained-on"
        for copy, make in COPIES.items():
            codes = [content_failure(check.judge(make(thumbs[i]))) for i in chosen]
            bad = sum((code is not None) == (copy in ("upright", "mirrored")) for code in codes)
            report[f"{part} {source} {copy} wrong"] = f"{bad}/{len(chosen)}"
    for source in ("other-dicom", "fundus"):
        chosen = np.nonzero((arrays["source"] == source) & arrays["held_out"])[0]
        passed = sum(content_failure(check.judge(thumbs[i])) is None for i in chosen)
        report[f"{source} passed as an upright chest"] = f"{passed}/{len(chosen)}"
    return report


def main() -> None:
    """Cache, train, write the weights, print their sha256 and the held-out figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--without-other-body-parts", action="store_true",
                        help="train without the tibia and dental films (does an unseen body "
                             "part still read as not a chest?); use with --out elsewhere")
    args = parser.parse_args()
    arrays = load_cache()
    started = time.process_time()
    without = ("other-dicom-variant",) if args.without_other_body_parts else ()
    network = train(arrays, args.epochs, without=without)
    sha256 = write_weights(folded_weights(network), args.out)
    print(f"trained in {time.process_time() - started:.0f} s CPU; {args.out} "
          f"({args.out.stat().st_size / 1024:.0f} KiB) sha256 {sha256}")
    for name, value in evaluate(arrays, args.out, sha256).items():
        print(f"  {name}: {value}")


if __name__ == "__main__":
    main()
