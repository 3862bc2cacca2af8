"""Overhead of decoding in the sandbox (worker processes) against decoding in-process.

    python bench/sandbox_bench.py [--repeat 15] [--workers 2] [--json]

For each real file (a full-size fundus photograph, a 256 px one, a DRIVE PNG, chest DICOMs in
JPEG baseline and JPEG 2000), ``read_image`` runs ``--repeat`` times in-process and through
``SandboxedIntake`` (warm workers, the default memory and time limits), alternating, with the
screening target size. Prints the median milliseconds of each, the difference and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiosk.intake import IntakeLimits, read_image  # noqa: E402
from kiosk.sandbox import SandboxedIntake  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
FILES = [
    "fundus/eyepacs-fullres/13_left.jpeg",
    "fundus/eyepacs-256/images/10009_left.jpeg",
    "fundus/drive/training/images/21_training.png",
    "dicom/SIIM-CXR-no-pneumothorax.dcm",
    "dicom/RG1_J2KI.dcm",
]
TARGET_SIZE = 224


def _ms(call: object, data: bytes, name: str) -> float:
    started = time.perf_counter()
    call(data, source=name, target_size=TARGET_SIZE)  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000


def main() -> int:
    """Run the comparison and print one row per file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with SandboxedIntake(IntakeLimits(), workers=args.workers) as sandbox:
        for relative in FILES:
            path = DATA / relative
            if not path.exists():
                continue
            data = path.read_bytes()
            for call in (read_image, sandbox.read_image):  # warm both: imports, worker start
                call(data, source=path.name, target_size=TARGET_SIZE)
            inline, boxed = [], []
            for _ in range(args.repeat):
                inline.append(_ms(read_image, data, path.name))
                boxed.append(_ms(sandbox.read_image, data, path.name))
            a, b = statistics.median(inline), statistics.median(boxed)
            rows.append({"file": relative, "bytes": len(data), "in_process_ms": round(a, 1),
                         "sandbox_ms": round(b, 1), "overhead_ms": round(b - a, 1),
                         "ratio": round(b / a, 2)})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'file':48} {'in-process':>11} {'sandbox':>9} {'overhead':>9} {'ratio':>6}  (median ms)")
        for row in rows:
            print(f"{row['file']:48} {row['in_process_ms']:11.1f} {row['sandbox_ms']:9.1f} "
                  f"{row['overhead_ms']:9.1f} {row['ratio']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
