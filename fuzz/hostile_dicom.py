"""Hostile DICOM: wrong transfer syntaxes, huge dimensions, undefined-length sequences, DICOMDIRs."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import pydicom
from hostile_bases import dicom_bytes, dicom_dataset, jpeg_bytes, png_bytes
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

Case = tuple[str, str, bytes]
PIXEL_TAG = b"\xe0\x7f\x10\x00"
SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.100",
    "1.2.840.10008.1.2.4.102",
    "1.2.3.4.5.6",
    "",
    "not a uid",
    "1.2.840.10008.1.2.1\x00\x00",
]


def wrong_syntaxes(base: list[tuple[str, bytes]]) -> Iterator[Case]:
    """DICOM files whose declared transfer syntax is not the one their pixels are in."""
    for name, data in base:
        if b"DICM" not in data[:132]:
            continue
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        declared = str(ds.file_meta.TransferSyntaxUID)
        for syntax in SYNTAXES if not name.startswith("real-") else SYNTAXES[::4]:
            if syntax != declared:
                yield (
                    "wrong_syntax",
                    f"{name}-as-{syntax or 'empty'}",
                    _swap_syntax(data, declared, syntax),
                )


def _swap_syntax(data: bytes, old: str, new: str) -> bytes:
    """Rewrite the (0002,0010) value in place, keeping the file meta group length right."""
    raw_old, raw_new = _ui(old), _ui(new)
    at = data.find(b"\x02\x00\x10\x00UI")
    if at < 0:
        return data
    length = struct.unpack("<H", data[at + 6 : at + 8])[0]
    element = b"\x02\x00\x10\x00UI" + struct.pack("<H", len(raw_new)) + raw_new
    out = data[:at] + element + data[at + 8 + length :]
    group = out.find(b"\x02\x00\x00\x00UL")
    if group >= 0 and raw_old is not None:
        value = struct.unpack("<I", out[group + 8 : group + 12])[0] + len(raw_new) - length
        out = out[: group + 8] + struct.pack("<I", value) + out[group + 12 :]
    return out


def _ui(uid: str) -> bytes:
    raw = uid.encode("latin-1")
    return raw + b"\x00" if len(raw) % 2 else raw


def huge_dimensions() -> Iterator[Case]:
    """Rows x Columns, bit depths, samples and frames far outside what a film can be."""
    sides = [0, 1, 31, 65535, 40000]
    for rows in sides:
        for columns in sides:
            for syntax in (ExplicitVRLittleEndian, JPEG2000Lossless):
                yield (
                    "huge_dimensions",
                    f"{rows}x{columns}-{syntax}",
                    _with(rows=rows, columns=columns, syntax=syntax),
                )
    for bits in (0, 1, 7, 12, 32, 64, 255):
        yield "huge_dimensions", f"bits-{bits}", _with(bits_allocated=bits)
    for samples in (0, 2, 3, 4, 255, 65535):
        yield "huge_dimensions", f"samples-{samples}", _with(samples=samples)
    for frames in ("0", "-1", "2147483647", "1e9", "abc", "65535"):
        yield "huge_dimensions", f"frames-{frames}", _with(frames=frames)
    for rows, columns in ((65535, 65535), (7745, 7745), (60000, 1000)):
        yield "huge_dimensions", f"png-ihdr-{rows}x{columns}", _png_with_ihdr(rows, columns)
        yield "huge_dimensions", f"jpeg-sof-{rows}x{columns}", _jpeg_with_sof(min(rows, 65535), columns)


def _with(
    *,
    rows: int = 64,
    columns: int = 64,
    bits_allocated: int = 8,
    samples: int = 1,
    frames: str = "",
    syntax: str = ExplicitVRLittleEndian,
) -> bytes:
    """The grey base with its image pixel module rewritten (pixel data kept as is)."""
    ds = dicom_dataset()
    if syntax != ExplicitVRLittleEndian:
        data = dicom_bytes(ds, syntax)
        ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = rows, columns, bits_allocated, samples
    ds.BitsStored = ds.HighBit = max(0, min(bits_allocated, 16))
    if frames:
        ds.add_new(0x00280008, "IS", frames) if frames.lstrip("-").isdigit() else ds.add_new(
            0x00280008, "LO", frames
        )
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _png_with_ihdr(rows: int, columns: int) -> bytes:
    """A tiny PNG whose IHDR declares ``columns`` x ``rows``."""
    data = bytearray(png_bytes(PILImage.new("RGB", (64, 64))))
    ihdr = struct.pack(">IIBBBBB", columns, rows, 8, 2, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def _jpeg_with_sof(rows: int, columns: int) -> bytes:
    """A tiny JPEG whose SOF0 declares ``columns`` x ``rows``."""
    data = bytearray(jpeg_bytes(PILImage.new("RGB", (64, 64))))
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", rows, columns)
    return bytes(data)


def _element(group: int, element: int, vr: bytes, value: bytes, *, undefined: bool = False) -> bytes:
    """One explicit VR little endian element."""
    head = struct.pack("<HH", group, element) + vr
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return head + b"\x00\x00" + struct.pack("<I", 0xFFFFFFFF if undefined else len(value)) + value
    return head + struct.pack("<H", len(value)) + value


ITEM, ITEM_END, SEQ_END = (
    b"\xfe\xff\x00\xe0",
    b"\xfe\xff\x0d\xe0\x00\x00\x00\x00",
    b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
)


def _nested(depth: int, *, close: bool) -> bytes:
    """Sequences of undefined length nested ``depth`` deep, closed properly or left open."""
    body = _element(0x0008, 0x0100, b"SH", b"T-D3000 ")
    for _ in range(depth):
        item = ITEM + b"\xff\xff\xff\xff" + body + (ITEM_END if close else b"")
        body = _element(0x0040, 0x0275, b"SQ", item + (SEQ_END if close else b""), undefined=True)
    return body


def undefined_length_sequences() -> Iterator[Case]:
    """Sequences of undefined length: deep, unterminated, with stray or missing delimiters."""
    base = dicom_bytes(dicom_dataset())
    at = base.find(PIXEL_TAG)
    for depth in (1, 2, 10, 100, 500, 1000, 3000):
        for close in (True, False):
            yield (
                "undefined_length",
                f"depth-{depth}-{'closed' if close else 'open'}",
                (base[:at] + _nested(depth, close=close) + base[at:]),
            )
    strays = {
        "item-end-only": ITEM_END,
        "seq-end-only": SEQ_END,
        "item-huge": ITEM + b"\xf0\xff\xff\x7f",
        "item-no-length": ITEM,
        "sq-huge-defined": _element(0x0040, 0x0275, b"SQ", b"")[:-4] + b"\xff\xff\xff\x7f",
        "sq-open-at-end": _element(0x0040, 0x0275, b"SQ", ITEM + b"\xff\xff\xff\xff", undefined=True),
        "un-undefined": _element(0x0009, 0x1010, b"UN", ITEM + b"\xff\xff\xff\xff", undefined=True),
    }
    for name, chunk in strays.items():
        yield "undefined_length", f"{name}-before-pixels", base[:at] + chunk + base[at:]
        yield "undefined_length", f"{name}-at-end", base + chunk
        yield "undefined_length", f"{name}-instead-of-pixels", base[:at] + chunk
    pixel_open = _element(
        0x7FE0, 0x0010, b"OB", ITEM + b"\x00\x00\x00\x00" + ITEM + b"\x10\x00\x00\x00", undefined=True
    )
    yield "undefined_length", "encapsulated-unterminated", base[:at] + pixel_open
    yield (
        "undefined_length",
        "encapsulated-no-items",
        base[:at] + _element(0x7FE0, 0x0010, b"OB", b"", undefined=True) + SEQ_END,
    )


def dicomdirs() -> Iterator[Case]:
    """DICOMDIR files whose records point outside the folder, with and without pixel data."""
    paths = [
        ["..", "..", "etc", "passwd"],
        ["/etc/passwd"],
        ["..", "HOSTILE-SENTINEL"],
        ["IMAGES", "..", "..", "..", "root", ".ssh", "id_rsa"],
        ["C:\\Windows\\win.ini"],
        ["..\\..\\etc\\passwd"],
        ["IMAGES", "IM0001"],
    ]
    for index, parts in enumerate(paths):
        for with_pixels in (False, True):
            ds = dicom_dataset() if with_pixels else Dataset()
            record = Dataset()
            record.DirectoryRecordType = "IMAGE"
            record.ReferencedFileID = parts if len(parts) > 1 else parts[0]
            record.ReferencedSOPClassUIDInFile = "1.2.840.10008.5.1.4.1.1.1"
            record.ReferencedSOPInstanceUIDInFile = generate_uid(entropy_srcs=[str(index)])
            record.ReferencedTransferSyntaxUIDInFile = ExplicitVRLittleEndian
            record.OffsetOfTheNextDirectoryRecord = (
                record.OffsetOfReferencedLowerLevelDirectoryEntity
            ) = 0
            record.RecordInUseFlag = 0xFFFF
            ds.FileSetID = "HOSTILE"
            ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
            ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
            ds.FileSetConsistencyFlag = 0
            ds.DirectoryRecordSequence = [record]
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
            ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["dir", str(index)])
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            yield (
                "dicomdir",
                f"dicomdir-{index}-{'pixels' if with_pixels else 'plain'}",
                buffer.getvalue(),
            )
