"""Plain domain types shared by every step of the flow (numpy + dataclasses only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: What an image shows, as far as intake can tell: a fundus photograph or a chest film.
ImageKind = Literal["fundus", "cxr"]


@dataclass
class Image:
    """A decoded image ready for quality checks: 8-bit pixels plus what is known about them.

    ``pixels`` is uint8, either (H, W) grey with bright meaning dense (MONOCHROME2 sense) for
    films, or (H, W, 3) RGB for photographs. ``original_size`` is (rows, columns) of the stored
    image before any reduced-resolution decode.
    """

    pixels: np.ndarray
    source: str = ""
    kind: ImageKind | None = None
    original_size: tuple[int, int] = (0, 0)
    laterality: Literal["L", "R"] | None = None
    meta: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(rows, columns) of the decoded pixels."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


@dataclass(frozen=True)
class QualityReason:
    """Why an image is not gradable, in words a nurse can act on."""

    code: str
    message: str


@dataclass(frozen=True)
class QualityReport:
    """The gradability of one image, with the measures behind the decision."""

    gradable: bool
    reasons: tuple[QualityReason, ...] = ()
    measures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The report as JSON-ready data."""
        return {
            "gradable": self.gradable,
            "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
            "measures": {k: round(float(v), 4) for k, v in self.measures.items()},
        }
