"""Hand-made hostile inputs for intake, generated in code (no file is stored).

    python fuzz/hostile.py --check        run every case through read_image, print a JSON summary

Each case is a (category, name, bytes) triple built from small synthetic images (always) and
from seeds derived from the real files (when ../shared/data is there). ``--check`` runs them one
by one and records for each whether ``read_image`` returned an image or raised IntakeError (both
fine) or anything else (a finding), its time, and the process's peak RSS.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator

from hostile_bases import _fundus_photo, bases, jpeg_bytes, png_bytes
from hostile_dicom import (
    dicomdirs,
    huge_dimensions,
    undefined_length_sequences,
    wrong_syntaxes,
)
from PIL import Image as PILImage

Case = tuple[str, str, bytes]


def truncations(base: list[tuple[str, bytes]]) -> Iterator[Case]:
    """Every base cut at many offsets: in the header, in the pixel data, one byte short."""
    for name, data in base:
        cuts = sorted(
            {
                *range(0, len(data), max(1, len(data) // 30)),
                *range(1, 140, 9),
                len(data) - 1,
                len(data) - 2,
                len(data) - 16,
                len(data) // 2 + 1,
            }
        )
        cuts = [c for c in cuts if 0 < c < len(data)]
        step = 1 if name.startswith(("cr", "op", "png", "jpeg")) else 3  # real seeds: sampled
        for cut in cuts[::step]:
            yield "truncated", f"{name}@{cut}", data[:cut]


def _chunk(kind: bytes, body: bytes, *, crc: int | None = None) -> bytes:
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", crc if crc is not None else zlib.crc32(kind + body))
    )


def png_floods() -> Iterator[Case]:
    """PNGs with text-chunk floods, compressed-text bombs, huge or bad chunks."""
    valid = png_bytes(_fundus_photo())
    head, rest = valid[:33], valid[33:]  # signature + IHDR, then IDAT... IEND
    bomb = zlib.compress(b"\x00" * (64 * 2**20), 9)
    floods = {
        "text-10000": b"".join(_chunk(b"tEXt", b"Comment\x00" + b"x" * 100) for _ in range(10000)),
        "text-1x5MB": _chunk(b"tEXt", b"Comment\x00" + b"x" * (5 * 2**20)),
        "ztxt-bomb-64MB": _chunk(b"zTXt", b"Comment\x00\x00" + bomb),
        "ztxt-bombs-x8": b"".join(_chunk(b"zTXt", b"C%d\x00\x00" % i + bomb) for i in range(8)),
        "itxt-bomb": _chunk(b"iTXt", b"Comment\x00\x01\x00en\x00\x00" + bomb),
        "iccp-bomb": _chunk(b"iCCP", b"icc\x00\x00" + bomb),
        "bad-crc": _chunk(b"tEXt", b"Comment\x00x", crc=0),
        "length-2GB": struct.pack(">I", 0x7FFFFFFF) + b"tEXt" + b"x" * 16,
        "unknown-critical": _chunk(b"ABCD", b"x" * 32),
        "splt-flood": b"".join(_chunk(b"sPLT", b"p%d\x00\x08" % i + b"\x00" * 60) for i in range(2000)),
        "actl-huge": _chunk(b"acTL", struct.pack(">II", 0x7FFFFFFF, 0)),
    }
    for name, chunks in floods.items():
        yield "png_flood", f"{name}-before-idat", head + chunks + rest
        yield "png_flood", f"{name}-after-idat", valid[:-12] + chunks + valid[-12:]
    idat = valid[33:-12]
    payload = b""
    while idat:
        length = struct.unpack(">I", idat[:4])[0]
        payload += idat[8 : 8 + length]
        idat = idat[12 + length :]
    tiny_idats = b"".join(_chunk(b"IDAT", payload[i : i + 1]) for i in range(len(payload)))
    yield "png_flood", "idat-1-byte-chunks", head + tiny_idats + valid[-12:]
    yield (
        "png_flood",
        "idat-bomb",
        head + _chunk(b"IDAT", zlib.compress(b"\x00" * (32 * 2**20))) + valid[-12:],
    )
    yield "png_flood", "no-iend", valid[:-12]
    for colour_type, depth in ((0, 3), (2, 4), (3, 16), (4, 1), (6, 2), (7, 8), (2, 0)):
        ihdr = struct.pack(">IIBBBBB", 96, 96, depth, colour_type, 0, 0, 0)
        yield (
            "png_flood",
            f"ihdr-type{colour_type}-depth{depth}",
            valid[:8] + _chunk(b"IHDR", ihdr) + rest,
        )


def jpeg_markers(base: list[tuple[str, bytes]]) -> Iterator[Case]:
    """JPEGs with markers replaced, repeated, misplaced, or segment lengths that lie."""
    valid = jpeg_bytes(_fundus_photo())
    markers = [m for m in range(0xC0, 0xFF) if m not in (0xD8, 0xD9)]
    positions = [i for i in range(2, len(valid) - 1) if valid[i - 1] == 0xFF and valid[i] in markers]
    for at in positions:
        for replacement in (0xC0, 0xC2, 0xC4, 0xDA, 0xDB, 0xDD, 0xD9, 0xD0, 0xE1, 0xFE, 0x00, 0xFF):
            if replacement != valid[at]:
                yield (
                    "jpeg_marker",
                    f"marker@{at}->{replacement:02X}",
                    valid[:at] + bytes([replacement]) + valid[at + 1 :],
                )
        for length in (0, 1, 2, 0xFFFF):
            yield (
                "jpeg_marker",
                f"length@{at}={length}",
                valid[: at + 1] + struct.pack(">H", length) + valid[at + 3 :],
            )
    soi = valid[:2]
    yield "jpeg_marker", "soi-eoi", soi + b"\xff\xd9"
    yield "jpeg_marker", "soi-only", soi
    yield "jpeg_marker", "ff-padding-1MB", soi + b"\xff" * 2**20 + valid[2:]
    yield (
        "jpeg_marker",
        "comments-5000",
        soi + b"".join(b"\xff\xfe\x00\x12" + b"c" * 16 for _ in range(5000)) + valid[2:],
    )
    yield "jpeg_marker", "app1-exif-loop", soi + _exif_loop() + valid[2:]
    yield (
        "jpeg_marker",
        "app2-icc-chunks-255",
        soi
        + b"".join(
            b"\xff\xe2"
            + struct.pack(">H", 16 + 14)
            + b"ICC_PROFILE\x00"
            + bytes([i + 1, 255])
            + b"\x00" * 16
            for i in range(255)
        )
        + valid[2:],
    )
    sos = valid.find(b"\xff\xda")
    yield "jpeg_marker", "sos-repeated-200", valid[:sos] + valid[sos:-2] * 200 + b"\xff\xd9"
    yield (
        "jpeg_marker",
        "rst-flood",
        valid[:-2] + b"".join(bytes([0xFF, 0xD0 + i % 8]) for i in range(20000)) + b"\xff\xd9",
    )
    for name, data in base:
        if name.startswith("real-") and data[:3] == b"\xff\xd8\xff":
            yield "jpeg_marker", f"{name}-sof-zero", data.replace(b"\xff\xc0", b"\xff\xc0\x00\x00", 1)


def _exif_loop() -> bytes:
    """An EXIF block whose IFD points back at itself."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, 4, 1, 8) + struct.pack("<I", 8)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def bit_flips(base: list[tuple[str, bytes]], count: int = 400, seed: int = 8) -> Iterator[Case]:
    """Deterministic random byte changes of the bases, in the header and in the pixels."""
    rng = random.Random(seed)
    synthetic = [(n, d) for n, d in base if not n.startswith("real-")]
    for index in range(count):
        name, data = synthetic[index % len(synthetic)]
        mutable = bytearray(data)
        for _ in range(rng.choice((1, 2, 4, 16))):
            at = (
                rng.randrange(len(mutable))
                if rng.random() < 0.5
                else rng.randrange(min(400, len(mutable)))
            )
            mutable[at] = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        yield "bit_flip", f"{name}-flip-{index}", bytes(mutable)


def bombs_under_the_limit(side: int = 7745) -> Iterator[Case]:
    """Valid PNGs of 60 Mpx (just under the default pixel limit) in a few kilobytes.

    Kept out of ``hostile_cases`` because they are slow to build. Before 447f1f3/5660037 intake
    decoded them at full size (5-14 s, 0.45-1.6 GB); it now refuses an expansion over 1000x.
    """
    for mode in ("P", "RGBA", "RGB", "I;16"):
        yield (
            "bomb_under_limit",
            f"png-{mode.replace(';', '')}-{side}",
            png_bytes(PILImage.new(mode, (side, side), 0)),
        )


def striped_png(side: int = 7745, noisy_rows: int = 20) -> bytes:
    """A ~640 kB RGB PNG of 60 Mpx, black but for a band of noise: it expands ~280x, under
    intake's 1000x bomb limit, so intake decodes it (~180 MB of pixels, ~0.6 GB at peak)."""
    import numpy as np

    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[:noisy_rows] = np.random.default_rng(1).integers(0, 256, (noisy_rows, side, 3), dtype=np.uint8)
    return png_bytes(PILImage.fromarray(pixels))


def hostile_cases() -> Iterator[Case]:
    """Every hostile case, category by category."""
    base = bases()
    yield from truncations(base)
    yield from wrong_syntaxes(base)
    yield from huge_dimensions()
    yield from undefined_length_sequences()
    yield from dicomdirs()
    yield from png_floods()
    yield from jpeg_markers(base)
    yield from bit_flips(base)


# -- the check ---------------------------------------------------------------------------------

FORBIDDEN_OPENS = ("passwd", "id_rsa", "win.ini", "HOSTILE-SENTINEL")


def check(trace: bool = False) -> dict[str, object]:
    """Run every case through read_image; the summary of outcomes, times and peak memory."""
    import collections
    import sys
    import time

    from kiosk.errors import IntakeError
    from kiosk.intake import read_image

    opened: list[str] = []
    sys.addaudithook(
        lambda event, args: (
            opened.append(str(args[0]))
            if event == "open" and any(word in str(args[0]) for word in FORBIDDEN_OPENS)
            else None
        )
    )
    outcomes: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    failures: list[dict[str, str]] = []
    times: list[tuple[float, str]] = []
    for category, name, data in hostile_cases():
        if trace:
            print(f"case {category}/{name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            read_image(data, source=name, target_size=16 if len(data) % 2 else None)
            outcomes["image"] += 1
        except IntakeError as exc:
            outcomes[exc.code] += 1
        except BaseException as exc:  # a finding: anything but an image or an IntakeError
            failures.append(
                {"case": f"{category}/{name}", "error": f"{type(exc).__name__}: {exc}"[:300]}
            )
        times.append((time.perf_counter() - started, f"{category}/{name}"))
        categories[category] += 1
    times.sort(reverse=True)
    return {
        "cases": sum(categories.values()),
        "categories": dict(categories),
        "outcomes": dict(outcomes),
        "failures": failures,
        "slowest": [[round(t, 3), n] for t, n in times[:5]],
        "over_5s": [n for t, n in times if t > 5.0],
        "forbidden_opens": opened,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> int:
    """This process's own peak resident memory (VmHWM), in MiB.

    Not ``ru_maxrss``: Linux carries the parent's peak across fork and exec into it, so a child
    of a large test process would report the parent's memory, not its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


if __name__ == "__main__":
    import argparse
    import json
    import resource
    import sys
    import warnings

    parser = argparse.ArgumentParser(description="Run the hand-made hostile cases through intake.")
    parser.add_argument("--check", action="store_true", help="run every case and print a JSON summary")
    parser.add_argument("--trace", action="store_true", help="name each case on stderr before it runs")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # parsers warn about the very damage these cases carry
    cap = 4 * 2**30  # a safety net for the shared machine; the report gives the real peak
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    summary = check(args.trace) if args.check else {"cases": sum(1 for _ in hostile_cases())}
    print(json.dumps(summary))
    sys.exit(
        1 if summary.get("failures") or summary.get("over_5s") or summary.get("forbidden_opens") else 0
    )
