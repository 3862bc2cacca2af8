"""Reduced-resolution DICOM pixels: JPEG 2000 films and photographs decoded at a reduced
resolution level, uncompressed films shrunk as they are read, and compressed frame headers
checked before decoding. A screening model reads a few hundred pixels a side; decoding only that
much is what makes intake fast.

A hostile file can declare a small image in its DICOM header and a huge one in the codestream;
decoders allocate by the codestream, so the frame's own size is read (JPEG SOF, JPEG 2000 SIZ)
and must match Rows and Columns before any decoder runs.

A 2500x2048 lossless film takes about a second at full size and 17-65 ms two or three levels
down (Pillow's ``reduce`` on the raw codestream). Some codestreams refuse deep levels, so the
deepest level that keeps the smaller side at or above the target is tried first, then shallower.
"""

from __future__ import annotations

import math
import struct
from io import BytesIO
from typing import Any, cast

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000, JPEG2000Lossless

J2K_SYNTAXES = (JPEG2000, JPEG2000Lossless)
#: Deepest reduction tried; codestreams rarely have more than five decomposition levels.
MAX_LEVEL = 5


def is_jpeg2000(ds: Dataset) -> bool:
    """True when the pixel data is a JPEG 2000 codestream."""
    return ds.file_meta.get("TransferSyntaxUID") in J2K_SYNTAXES


def frame_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) a JPEG or JPEG 2000 codestream declares, or None when it is not one."""
    if frame[:4] == b"\xff\x4f\xff\x51" and len(frame) >= 24:  # JPEG 2000 SOC + SIZ
        xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", frame[8:24])
        return ysiz - yosiz, xsiz - xosiz
    if frame[:2] == b"\xff\xd8":
        return _jpeg_frame_size(frame)
    return None


def _jpeg_frame_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) from the first SOF marker of a JPEG (baseline, extended, lossless, LS)."""
    at = 2
    while at + 9 <= len(frame):
        if frame[at] != 0xFF:
            return None
        marker = frame[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        length = struct.unpack(">H", frame[at + 2 : at + 4])[0]
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            rows, columns = struct.unpack(">HH", frame[at + 5 : at + 9])
            return rows, columns
        at += 2 + length
    return None


def first_frame(ds: Dataset) -> bytes:
    """The first frame's compressed bytes."""
    frames = int(ds.get("NumberOfFrames") or 1)
    return next(generate_frames(ds.PixelData, number_of_frames=frames))


def reduction_level(rows: int, columns: int, target_size: int) -> int:
    """The deepest level whose smaller side is still at least ``target_size``."""
    level = 0
    while level < MAX_LEVEL and math.ceil(min(rows, columns) / 2 ** (level + 1)) >= target_size:
        level += 1
    return level


def decode_reduced(ds: Dataset, target_size: int) -> np.ndarray | None:
    """The first frame's stored values (grey, or RGB for colour) at a reduced level, or None to
    decode at full size."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    level = reduction_level(rows, columns, target_size)
    if level == 0 or int(ds.get("PixelRepresentation") or 0) != 0:
        return None
    samples = int(ds.get("SamplesPerPixel") or 1)
    codestream = first_frame(ds)
    for attempt in range(level, 0, -1):
        pixels = _decode_level(codestream, attempt, rows, columns)
        if pixels is not None:
            shape_fits = pixels.ndim == 2 if samples == 1 else pixels.shape[2:] == (samples,)
            return pixels if shape_fits else None
    return None


def _decode_level(codestream: bytes, level: int, rows: int, columns: int) -> np.ndarray | None:
    """One try at ``level``; None when this codestream cannot be decoded that far down."""
    try:
        with PILImage.open(BytesIO(codestream), formats=["JPEG2000"]) as image:
            if image.size != (columns, rows):
                return None  # header and codestream disagree: let the full decoder judge
            _load_reduced(image, level, codestream)
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


def _load_reduced(image: ImageFile.ImageFile, level: int, codestream: bytes) -> None:
    """Decode ``image`` ``level`` resolution levels down.

    Pillow (12 and 13) rounds the reduced size to nearest, OpenJPEG rounds it up: a side of
    1841 px is 460 for Pillow and 461 for OpenJPEG two levels down, and the decode then fails
    as a "broken data stream" (so the real CR ``RG1_J2KI.dcm`` could only be decoded one level
    down). For a codestream whose image starts at the origin the tile is set to OpenJPEG's own
    size; otherwise, or if Pillow's internals differ, Pillow's own ``reduce`` is used.
    """
    tile = getattr(image, "tile", None)
    if codestream[:4] == b"\xff\x4f\xff\x51" and codestream[16:24] == bytes(8) and tile and \
            len(tile) == 1 and isinstance(tile[0][3], tuple) and len(tile[0][3]) == 5:
        size = (math.ceil(image.size[0] / 2**level), math.ceil(image.size[1] / 2**level))
        codec, _, layers, fd, length = tile[0][3]
        image._size = size
        image.tile = [ImageFile._Tile(tile[0][0], (0, 0, *size), tile[0][2],
                                      (codec, level, layers, fd, length))]
        ImageFile.ImageFile.load(image)
        return
    image.reduce = level  # type: ignore[method-assign, assignment]
    image.load()


def codestream_precision(codestream: bytes) -> int | None:
    """Bits per sample of the first component, from the SIZ marker segment (None if unsigned
    precision cannot be read)."""
    if codestream[:4] != b"\xff\x4f\xff\x51" or len(codestream) < 43:
        return None
    ssiz = codestream[42]
    return None if ssiz & 0x80 else (ssiz & 0x7F) + 1


def native_reduced(ds: Dataset, target_size: int) -> np.ndarray | None:
    """An uncompressed grey film's stored values shrunk by ``2**level`` (area average), the
    level chosen as for JPEG 2000; None to decode at full size.

    The pixel data is viewed in place (no full-size copy, no full-size window): only the
    shrunk film is windowed, and only it leaves the decode sandbox. Films whose bits above
    BitsStored hold something (overlays) are masked first.
    """
    rows, columns = int(ds.Rows), int(ds.Columns)
    level = reduction_level(rows, columns, target_size)
    syntax = ds.file_meta.TransferSyntaxUID
    allocated = int(ds.BitsAllocated)
    if (level == 0 or syntax.is_compressed or not syntax.is_little_endian
            or int(ds.get("SamplesPerPixel") or 1) != 1 or int(ds.get("NumberOfFrames") or 1) != 1
            or int(ds.get("PixelRepresentation") or 0) != 0 or allocated not in (8, 16)):
        return None
    dtype = np.uint8 if allocated == 8 else np.dtype("<u2")
    raw = cast("np.ndarray[Any, np.dtype[np.unsignedinteger[Any]]]",
               np.frombuffer(ds.PixelData, dtype=dtype, count=rows * columns).reshape(rows, columns))
    stored = int(ds.get("BitsStored") or allocated)
    if stored < allocated and int(raw.max()) >> stored:
        raw = raw & np.array((1 << stored) - 1, dtype=raw.dtype)
    factor = 2**level
    height, width = rows // factor, columns // factor
    return cv2.resize(raw[: height * factor, : width * factor], (width, height),
                      interpolation=cv2.INTER_AREA)
