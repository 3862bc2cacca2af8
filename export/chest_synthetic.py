"""Pictures for training the chest check beyond the real films: variants, crops, phantoms, others.

Few real films of other body parts exist here (one tibia, one dental panoramic), so each is seen
as many crops, turns and contrasts, and synthetic pictures (limbs, skulls, dental arches,
shapes, text, smooth noise) widen what "not a chest" means. Chest phantoms (like the tests'
``chest_phantom``, with their shapes varied) keep the kiosk's own synthetic test film readable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import numpy as np


def _gamma(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random contrast (gamma) change of a uint8 picture."""
    gamma = float(np.exp(rng.uniform(-0.6, 0.6)))
    return (255.0 * (grey / 255.0) ** gamma).astype(np.uint8)


def _tilt(grey: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    """Turn by a random angle up to ``degrees`` about the centre, filling with edge pixels."""
    height, width = grey.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-degrees, degrees), 1.0)
    return cv2.warpAffine(grey, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def crop_variants(grey: np.ndarray, rng: np.random.Generator, count: int, *,
                  whole: bool) -> Iterator[np.ndarray]:
    """Random views of a film: large crops of it (``whole``) or small pieces and edge strips."""
    height, width = grey.shape
    for _ in range(count):
        if whole:
            fh, fw = rng.uniform(0.5, 1.0, 2)
        elif rng.random() < 0.5:
            fh, fw = rng.uniform(0.15, 0.5, 2)  # a piece: a quarter of the film at most
        else:
            fh, fw = (1.0, rng.uniform(0.06, 0.22))[::int(rng.choice([1, -1]))]  # an edge strip
        h, w = max(8, int(fh * height)), max(8, int(fw * width))
        top = int(rng.choice([0, height - h])) if not whole and min(fh, fw) < 0.25 else \
            int(rng.integers(0, height - h + 1))
        left = int(rng.integers(0, width - w + 1))
        crop = grey[top:top + h, left:left + w]
        if whole:
            crop = _tilt(np.rot90(crop, int(rng.integers(4))).copy(), rng, 20)
        yield _gamma(crop, rng)


def chest_phantom(rng: np.random.Generator, index: int) -> np.ndarray:
    """A frontal chest film in MONOCHROME2 sense, with its anatomy's proportions varied."""
    size = int(rng.integers(128, 320))
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    lung_x, lung_w, lung_h = rng.uniform(0.36, 0.48), rng.uniform(0.24, 0.34), rng.uniform(0.5, 0.7)
    film = np.full((size, size), rng.uniform(0.0, 0.15))
    film[((x / 0.95) ** 2 + ((y - 0.3) / 1.1) ** 2 <= 1) & (y > -0.75)] = rng.uniform(0.45, 0.65)
    film[(np.abs(x) < 0.2) & (y <= -0.75)] = 0.5
    for side in (-1, 1):
        lung = ((x - side * lung_x) / lung_w) ** 2 + ((y + 0.05) / lung_h) ** 2 <= 1
        film[lung] = rng.uniform(0.12, 0.32)
    film[(np.abs(x) < rng.uniform(0.1, 0.18)) & (y > -0.75)] = rng.uniform(0.7, 0.9)
    diaphragm = rng.uniform(0.5, 0.7)
    film[y > diaphragm] = np.maximum(film[y > diaphragm], rng.uniform(0.7, 0.9))
    ribs = 0.06 * (np.sin(y * 22 + np.abs(x) * 4) > 0.6) * ((np.abs(x) > 0.15) & (y < 0.5))
    mottle = np.kron(rng.normal(0, 1, (size // 8 + 1, size // 8 + 1)), np.ones((8, 8)))
    film = film + ribs + 0.03 * mottle[:size, :size] + rng.normal(0, 0.02, film.shape)
    grey = (np.clip(film, 0, 1) * 255).astype(np.uint8)
    squash = rng.uniform(0.85, 1.15)
    return cv2.resize(grey, (size, max(16, int(size * squash))), interpolation=cv2.INTER_AREA)


def _field(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random brightness on 0-1."""
    coarse = rng.random((int(rng.integers(2, 12)),) * 2).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _limb(rng: np.random.Generator, size: int) -> np.ndarray:
    """One or two long bones in soft tissue on a strip between collimator shadows."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    film = np.full((size, size), rng.uniform(0.0, 0.1))
    width = rng.uniform(0.15, 0.35)
    film[np.abs(x) < width + 0.05 * y] = rng.uniform(0.35, 0.55)
    for offset in rng.uniform(-0.08, 0.08, int(rng.integers(1, 3))):
        film[np.abs(x - offset) < rng.uniform(0.03, 0.08) + 0.05 * np.clip(y, 0, 1) ** 2] = 0.9
    film[np.abs(x) >= rng.uniform(0.4, 0.8)] = rng.choice([0.0, 1.0])
    return film


def _skull(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bright oval ring (a skull, a pelvis outline) around textured inside."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    radius = (x / rng.uniform(0.6, 0.9)) ** 2 + (y / rng.uniform(0.6, 0.95)) ** 2
    film = 0.05 + 0.3 * (radius < 1) * _field(rng, size)
    film[(radius > 0.8) & (radius < 1)] = 0.9
    return film


def _dental(rng: np.random.Generator, size: int) -> np.ndarray:
    """A wide band with a curved row of bright teeth, as on a panoramic film."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    film = 0.1 + 0.4 * (np.abs(y) < 0.45) * _field(rng, size)
    arch = np.abs(y - 0.25 * x**2 + 0.05) < 0.12
    teeth = np.sin(x * rng.uniform(25, 45)) > 0.2
    film[arch & teeth & (np.abs(x) < 0.8)] = 0.95
    return film


def _shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random filled circles, rectangles and lines on a smooth background."""
    film = (0.5 * _field(rng, size) * 255).astype(np.uint8)
    for _ in range(int(rng.integers(1, 8))):
        shade = int(rng.integers(0, 256))
        a, b = (tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2))
        shape = int(rng.integers(3))
        if shape == 0:
            cv2.circle(film, a, int(rng.integers(3, size // 3)), shade, -1)
        elif shape == 1:
            cv2.rectangle(film, a, b, shade, -1)
        else:
            cv2.line(film, a, b, shade, int(rng.integers(1, 8)))
    return film / 255.0


def _text(rng: np.random.Generator, size: int) -> np.ndarray:
    """Lines of random letters, as on a scanned form or a screen capture."""
    film = np.full((size, size), int(rng.integers(256)), np.uint8)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
    for row in range(int(rng.integers(2, 8))):
        words = "".join(rng.choice(list(letters), int(rng.integers(4, 16))))
        cv2.putText(film, words, (4, 20 + row * size // 8), cv2.FONT_HERSHEY_SIMPLEX,
                    size / 300, int(rng.integers(256)), 1 + int(rng.integers(2)))
    return film / 255.0


KINDS: tuple[Callable[[np.random.Generator, int], np.ndarray], ...] = (
    _field, _limb, _skull, _dental, _shapes, _text)


def synthetic_non_chest(rng: np.random.Generator, count: int) -> Iterator[np.ndarray]:
    """``count`` grey uint8 pictures that are not chest films, in any orientation."""
    for index in range(count):
        size = int(rng.integers(96, 256))
        film = KINDS[index % len(KINDS)](rng, size)
        film = film + rng.normal(0, rng.uniform(0.0, 0.05), film.shape)
        grey = (np.clip(film, 0, 1) * 255).astype(np.uint8)
        yield np.rot90(grey, int(rng.integers(4))).copy()
