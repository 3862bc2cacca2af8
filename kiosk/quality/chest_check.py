"""The learned chest check: which way up a film is, whether it is inverted, whether it is a chest.

A small CNN (four 3x3 convolutions, 2x2 max-pooling, one linear layer; batch norm folded into
the convolutions) reads the 64x64 thumbnail of ``film.film_thumbnail``. Its forward pass is
written here in numpy, so the quality step stays pure (no onnxruntime, no torch). The weights
(``chest_check.npz``) are made by ``python -m export.chest_check``; their sha256 is pinned below
and checked at load, so a changed or damaged file is refused rather than silently used.

Heads, as logits: where the head of the patient lies (top, left, bottom, right: the film as
given, then turned by np.rot90 k=1, 2, 3), whether the film is inverted (bones dark), and
whether it is a frontal chest film at all. A film mirrored left-right is still upright: which
side is the patient's left is a labelling matter (the lead marker), not an orientation one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from kiosk.errors import QualityError

WEIGHTS = Path(__file__).with_name("chest_check.npz")
#: sha256 of the shipped weights; ``python -m export.chest_check`` prints the new one.
WEIGHTS_SHA256 = "f71d728e54d7ac81eff52e80953770bdfed3b0d85a364e599541a533190fb928"
#: Where the patient's head lies, in the order of the orientation head.
HEAD_AT = ("top", "left", "bottom", "right")
CONVOLUTIONS = 4


@dataclass(frozen=True)
class ChestVerdict:
    """What the check makes of one film: probabilities from 0 to 1."""

    head_at: dict[str, float]  # the four orientations, summing to 1
    inverted: float
    chest: float

    def measures(self) -> dict[str, float]:
        """The probabilities as QualityReport measures."""
        heads = {f"p_head_{side}": p for side, p in self.head_at.items()}
        return {"p_chest": self.chest, "p_inverted": self.inverted, **heads}


class ChestCheck:
    """The trained network, ready to judge thumbnails."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.convs = [(arrays[f"conv{i}_w"].astype(np.float32),
                       arrays[f"conv{i}_b"].astype(np.float32)) for i in range(CONVOLUTIONS)]
        self.fc_w = arrays["fc_w"].astype(np.float32)
        self.fc_b = arrays["fc_b"].astype(np.float32)

    @classmethod
    def load(cls, path: Path = WEIGHTS, sha256: str = WEIGHTS_SHA256) -> ChestCheck:
        """Load weights, refusing a file whose sha256 is not the pinned one."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise QualityError(f"The chest check's weights cannot be read ({path}): {exc}. "
                               "Reinstall the kiosk.", code="chest_check_missing") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise QualityError(f"The chest check's weights {path.name} have sha256 {digest}, not "
                               f"the pinned {sha256}: refused. Reinstall the kiosk or rebuild "
                               "them with `python -m export.chest_check`.",
                               code="chest_check_mismatch")
        with np.load(path, allow_pickle=False) as arrays:
            return cls({name: arrays[name] for name in arrays.files})

    def logits(self, thumb: np.ndarray) -> np.ndarray:
        """The six logits for one (2, 64, 64) thumbnail."""
        x = thumb.astype(np.float32)
        for weight, bias in self.convs:
            x = np.maximum(_conv3x3(x, weight, bias), 0.0)
            channels, height, width = x.shape
            x = x.reshape(channels, height // 2, 2, width // 2, 2).max(axis=(2, 4))
        return self.fc_w @ x.reshape(-1) + self.fc_b

    def judge(self, thumb: np.ndarray) -> ChestVerdict:
        """Orientation, polarity and chest-ness of one thumbnail."""
        logits = self.logits(thumb).astype(np.float64)
        turns = np.exp(logits[:4] - logits[:4].max())
        turns /= turns.sum()
        return ChestVerdict(head_at={side: float(p) for side, p in zip(HEAD_AT, turns, strict=True)},
                            inverted=_sigmoid(logits[4]), chest=_sigmoid(logits[5]))


def _conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A 3x3 convolution with zero padding 1: (C, H, W) -> (O, H, W).

    Summed over the nine shifts as small matrix products: small enough that BLAS stays on one
    thread, so a busy machine does not make it slow (one big im2col product can be 30x slower
    there).
    """
    channels, height, width = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((weight.shape[0], height * width), np.float32)
    for row in range(3):
        for col in range(3):
            shifted = np.ascontiguousarray(padded[:, row:row + height, col:col + width])
            out += weight[:, :, row, col] @ shifted.reshape(channels, -1)
    return out.reshape(-1, height, width) + bias[:, None, None]


def _sigmoid(logit: float) -> float:
    """The logistic function."""
    return float(1.0 / (1.0 + np.exp(-logit)))


@lru_cache(maxsize=1)
def shipped_check() -> ChestCheck:
    """The shipped weights, loaded (and checked) once."""
    return ChestCheck.load()
