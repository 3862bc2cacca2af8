"""Intake: from the bytes a camera, an X-ray unit or an upload delivers to a checked ``Image``.

``read_image`` is the one boundary: it guards size, sniffs the format, decodes DICOM or a
photograph, and turns every failure a parser may raise on hostile bytes into an ``IntakeError``
with a specific ``code`` and a message a nurse can read (the cause stays chained for the log).
"""

from __future__ import annotations

from kiosk.domain import Image, ImageKind
from kiosk.errors import IntakeError

# The limits first: the decoders below still import them from this package.
from kiosk.intake.limits import DEFAULT_LIMITS, MAX_ASPECT, MIN_SIDE, IntakeLimits, check_dimensions

# isort: split
from kiosk.intake.dicom import read_dicom
from kiosk.intake.photo import read_photo


def sniff_format(data: bytes) -> str:
    """'dicom', 'png' or 'jpeg' from the first bytes; IntakeError for anything else."""
    if data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if _looks_like_headerless_dicom(data):
        return "dicom"
    raise IntakeError(
        "This file is not a PNG, JPEG or DICOM image. Export the picture as JPEG or PNG, or send "
        "the film as DICOM.",
        code="not_an_image",
    )


def _looks_like_headerless_dicom(data: bytes) -> bool:
    """An old ACR-NEMA style file: starts with a group 0008 (or 0002) element, little endian."""
    if len(data) < 8 or data[1] != 0 or data[0] not in (0x02, 0x08) or data[3] != 0:
        return False
    # The element number is small and the VR or length that follows is plausible.
    return data[2] < 0x40 and (data[4:6].isalpha() or int.from_bytes(data[4:8], "little") < 2**20)


def read_image(
    data: bytes,
    *,
    source: str = "",
    kind_hint: ImageKind | None = None,
    target_size: int | None = None,
    limits: IntakeLimits = DEFAULT_LIMITS,
) -> Image:
    """Decode DICOM, PNG or JPEG bytes into an Image, or raise IntakeError saying why not."""
    if not data:
        raise IntakeError("The file is empty.", code="not_an_image")
    if len(data) > limits.max_bytes:
        raise IntakeError(
            f"The file is {len(data) / 2**20:.1f} MiB, more than the limit of "
            f"{limits.max_bytes / 2**20:.0f} MiB.",
            code="too_large",
        )
    fmt = sniff_format(data)
    try:
        image = _decode(fmt, bytes(data), source, kind_hint, target_size, limits)
    except IntakeError:
        raise
    except Exception as exc:  # the one boundary: whatever a parser raises on hostile bytes
        raise _parser_failure(fmt, exc) from exc
    return image


def _decode(fmt: str, data: bytes, source: str, kind_hint: ImageKind | None,
            target_size: int | None, limits: IntakeLimits) -> Image:
    """Dispatch to the DICOM or photograph decoder."""
    if fmt == "dicom":
        return read_dicom(data, source=source, kind_hint=kind_hint, target_size=target_size,
                          limits=limits)
    return read_photo(data, fmt, source=source, kind_hint=kind_hint, target_size=target_size,
                      limits=limits)


def _parser_failure(fmt: str, exc: Exception) -> IntakeError:
    """The IntakeError for an exception a decoder raised: truncated, or damaged."""
    text = f"{type(exc).__name__}: {exc}".lower()
    name = {"dicom": "DICOM file", "png": "PNG image", "jpeg": "JPEG image"}[fmt]
    if isinstance(exc, MemoryError):
        return IntakeError(f"The {name} is too large to decode on this kiosk.", code="too_large")
    if isinstance(exc, ImportError):  # the file may be fine: this installation lacks its codec
        return IntakeError(f"This kiosk has no decoder installed for this {name} ({exc.name or exc}); "
                           "ask your IT contact to run 'kiosk doctor'.", code="codec_missing")
    if any(word in text for word in ("truncated", "eof", "end of file", "not enough", "short",
                                     "incomplete", "expected", "buffer")):
        return IntakeError(f"The {name} is truncated: the transfer was cut off. Send it again.",
                           code="truncated")
    return IntakeError(f"The {name} is damaged and cannot be decoded ({type(exc).__name__}).",
                       code="corrupt")


__all__ = ["DEFAULT_LIMITS", "MAX_ASPECT", "MIN_SIDE", "IntakeError", "IntakeLimits", "check_dimensions",
           "read_image", "sniff_format"]
