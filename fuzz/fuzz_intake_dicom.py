"""atheris harness: DICOM bytes into ``kiosk.intake.read_image``.

A finding is any exception other than ``IntakeError`` escaping ``read_image``, a run over the
time limit (``-timeout``) or over the memory limit (``-rss_limit_mb``). Run it through
``python fuzz/run.py dicom`` (which builds the seed corpus from the real files).
"""

from __future__ import annotations

import contextlib
import sys

import atheris
from common import import_tree

with atheris.instrument_imports(include=["kiosk.intake", "pydicom"]):
    import_tree("kiosk.intake", "pydicom.pixels")
    from kiosk.errors import IntakeError
    from kiosk.intake import read_image


def test_one_input(data: bytes) -> None:
    """One execution: the bytes are either an image or an IntakeError."""
    # Odd lengths also take the reduced-resolution paths (JPEG 2000 levels, JPEG draft).
    target_size = 16 if len(data) % 2 else None
    with contextlib.suppress(IntakeError):
        read_image(data, source="fuzz.dcm", target_size=target_size)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
