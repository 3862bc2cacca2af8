"""atheris harness: the DICOM listener's handlers, called with fuzzed C-STORE datasets.

Each input becomes the encoded dataset of a C-STORE request (the first byte picks the
presentation context's transfer syntax). ``handle_store`` must answer a status and never raise;
whatever it spooled then goes through ``read_header`` (what the spool worker runs first), which
may refuse with a ``KioskError`` and nothing else. Run it through ``python fuzz/run.py listener``.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import atheris
from common import import_tree

with atheris.instrument_imports(include=["hardware", "pydicom"]):
    import_tree("hardware")
    from pynetdicom import build_context, evt
    from pynetdicom.ae import ApplicationEntity
    from pynetdicom.association import Association
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.events import Event
    from seeds import LISTENER_SYNTAXES  # imports pydicom: inside, so that pydicom is instrumented

    from hardware.listener import handle_echo, handle_store
    from hardware.pushed import read_header
    from hardware.spool import Spool
    from kiosk.errors import KioskError

SYNTAXES = LISTENER_SYNTAXES
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
SHM = Path("/dev/shm")  # noqa: S108  # RAM-backed: the spool fsyncs every file it writes
SPOOL_DIR = Path(tempfile.mkdtemp(prefix="fuzz-spool-", dir=SHM if SHM.is_dir() else None))
SPOOL = Spool(SPOOL_DIR)
ASSOCIATION = Association(ApplicationEntity("KIOSK"), "acceptor")
ASSOCIATION.requestor.ae_title = "FUZZER"


def _event(dataset: bytes, syntax: str) -> Event:
    """A C-STORE event as pynetdicom hands it to the handler."""
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = CR_STORAGE
    request.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    request.DataSet = io.BytesIO(dataset)
    context = build_context(CR_STORAGE, syntax)
    context.context_id = 1
    return Event(ASSOCIATION, evt.EVT_C_STORE, {"request": request, "context": context.as_tuple})


def test_one_input(data: bytes) -> None:
    """One C-STORE: a status back, then the spooled file read or refused with a KioskError."""
    if not data:
        assert handle_echo(_event(b"", SYNTAXES[0])) == 0
        return
    syntax = SYNTAXES[data[0] % len(SYNTAXES)]
    status = handle_store(_event(data[1:], syntax), SPOOL, None)
    assert isinstance(status, int), status
    for path in SPOOL.pending():
        with contextlib.suppress(KioskError):
            read_header(path.read_bytes())
        path.unlink()


if __name__ == "__main__":
    try:
        atheris.Setup(sys.argv, test_one_input)
        atheris.Fuzz()
    finally:
        shutil.rmtree(SPOOL_DIR, ignore_errors=True)
