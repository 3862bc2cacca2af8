"""JPEG 2000 films decoded at a reduced resolution level: far faster than full size.

A 2500x2048 lossless film takes about a second at full size and 17-65 ms two or three levels
down (Pillow's ``reduce`` on the raw codestream). Some codestreams refuse deep levels, so the
deepest level that keeps the smaller side at or above the target is tried first, then shallower.
"""

from __future__ import annotations

import math
from io import BytesIO

import numpy as np
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000, JPEG2000Lossless

J2K_SYNTAXES = (JPEG2000, JPEG2000Lossless)
#: Deepest reduction tried; codestreams rarely have more than five decomposition levels.
MAX_LEVEL = 5


def is_jpeg2000(ds: Dataset) -> bool:
    """True when the pixel data is a JPEG 2000 codestream."""
    return ds.file_meta.get("TransferSyntaxUID") in J2K_SYNTAXES


def reduction_level(rows: int, columns: int, target_size: int) -> int:
    """The deepest level whose smaller side is still at least ``target_size``."""
    level = 0
    while level < MAX_LEVEL and math.ceil(min(rows, columns) / 2 ** (level + 1)) >= target_size:
        level += 1
    return level


def decode_reduced(ds: Dataset, target_size: int) -> np.ndarray | None:
    """The first frame's stored values at a reduced level, or None to decode at full size."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    level = reduction_level(rows, columns, target_size)
    if level == 0 or int(ds.get("PixelRepresentation") or 0) != 0:
        return None
    frames = int(ds.get("NumberOfFrames") or 1)
    codestream = next(generate_frames(ds.PixelData, number_of_frames=frames))
    for attempt in range(level, 0, -1):
        pixels = _decode_level(codestream, attempt, rows, columns)
        if pixels is not None:
            return pixels
    return None


def _decode_level(codestream: bytes, level: int, rows: int, columns: int) -> np.ndarray | None:
    """One try at ``level``; None when this codestream cannot be decoded that far down."""
    try:
        with PILImage.open(BytesIO(codestream), formats=["JPEG2000"]) as image:
            if image.size != (columns, rows):
                return None  # header and codestream disagree: let the full decoder judge
            image.reduce = level  # type: ignore[method-assign, assignment]
            image.load()
            pixels = np.asarray(image)
    except Exception:  # "broken data stream" at deep levels is expected: try a shallower one
        return None
    expected = (math.ceil(rows / 2**level), math.ceil(columns / 2**level))
    if pixels.shape[:2] != expected:
        return None
    # Pillow scales samples up to the full 8 or 16 bits of its mode; undo that.
    precision = codestream_precision(codestream)
    container = 16 if pixels.dtype == np.uint16 else 8
    if precision is None or precision > container:
        return None
    return pixels >> (container - precision) if precision < container else pixels


def codestream_precision(codestream: bytes) -> int | None:
    """Bits per sample of the first component, from the SIZ marker segment (None if unsigned
    precision cannot be read)."""
    if codestream[:4] != b"\xff\x4f\xff\x51" or len(codestream) < 43:
        return None
    ssiz = codestream[42]
    return None if ssiz & 0x80 else (ssiz & 0x7F) + 1
