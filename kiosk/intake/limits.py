"""How large and how shaped an offered image may be, checked before anything is decoded."""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.config import Config
from kiosk.errors import IntakeError

#: Sides shorter than this cannot be screened (a thumbnail or an icon, not a photograph).
MIN_SIDE = 32
#: Rows/columns ratio beyond which the dimensions are absurd for a fundus photo or a film.
MAX_ASPECT = 8.0


@dataclass(frozen=True)
class IntakeLimits:
    """How large an offered file and its decoded image may be."""

    max_bytes: int = 64 * 2**20
    max_pixels: int = 60_000_000

    @classmethod
    def from_config(cls, config: Config) -> IntakeLimits:
        """The limits set by ``KIOSK_MAX_UPLOAD_MB`` and ``KIOSK_MAX_PIXELS``."""
        return cls(max_bytes=config.max_upload_mb * 2**20, max_pixels=config.max_pixels)


#: The limits used when the caller gives none (the defaults of the configuration table).
DEFAULT_LIMITS = IntakeLimits()


def check_dimensions(rows: int, columns: int, limits: IntakeLimits) -> None:
    """Refuse zero, tiny, absurdly shaped or too many pixels, before anything is decoded."""
    if rows <= 0 or columns <= 0:
        raise IntakeError(f"The image declares {columns}x{rows} pixels: it is empty or damaged.",
                          code="bad_dimensions")
    if rows * columns > limits.max_pixels:
        raise IntakeError(
            f"The image declares {columns}x{rows} pixels, more than the limit of "
            f"{limits.max_pixels:,}: refused as a possible decompression bomb.",
            code="decompression_bomb",
        )
    if min(rows, columns) < MIN_SIDE or max(rows, columns) > MAX_ASPECT * min(rows, columns):
        raise IntakeError(
            f"The image is {columns}x{rows} pixels: too small or too narrow to be a fundus "
            "photograph or a chest film.",
            code="bad_dimensions",
        )
