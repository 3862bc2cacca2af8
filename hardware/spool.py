"""The DICOM spool: received films are written to disk before they are acknowledged.

``Spool.put`` writes, fsyncs and renames (then fsyncs the folder), so a film the X-ray unit was
told "stored" survives a power cut. ``SpoolWorker`` screens spooled films one by one in a thread;
on start it takes up whatever an earlier run left behind, so a crash after the acknowledgement
loses nothing. A film that can never be screened moves to ``refused/`` with a JSON reason.
A film that failed through the kiosk's own fault (its decoder could not start, a codec is not
installed) was acknowledged to the X-ray unit and must not be lost: it stays in the spool, is
retried, and an alarm (``held/<film>.json``, an ERROR in the log, a FAIL in ``kiosk doctor``)
says so until it is screened.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from kiosk.errors import DiskFullError, KioskError

UTC = timezone.utc  # datetime.UTC is Python 3.11+; JetPack 6 runs 3.10

LOG = logging.getLogger(__name__)

SUFFIX = ".dcm"
PARTIAL = ".partial"
#: Refusal codes that are the kiosk's fault, not the film's: such films are kept and retried
#: (its decoder or a codec, its model or the back-end that runs it).
KIOSK_FAULTS = frozenset({"decoder_unavailable", "codec_missing", "no_model", "no_backend",
                          "engine_not_loaded", "infer_failed", "cuda_error"})


class Spool:
    """A folder of received DICOM files waiting to be screened."""

    def __init__(self, folder: Path, *, min_free_mb: int = 0) -> None:
        self.folder = folder
        self.refused_dir = folder / "refused"
        self.held_dir = folder / "held"
        self.min_free_mb = min_free_mb
        self.refused_dir.mkdir(parents=True, exist_ok=True)

    def has_room_for(self, size: int) -> bool:
        """Whether ``size`` bytes fit while leaving the configured free space."""
        free = shutil.disk_usage(self.folder).free
        return free - size >= self.min_free_mb * 2**20

    def put(self, data: bytes) -> Path:
        """Write a received file durably; :class:`DiskFullError` when the disk is low."""
        if not self.has_room_for(len(data)):
            raise DiskFullError(
                f"less than {self.min_free_mb} MiB would be left on the disk: free space first"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = self.folder / f"{stamp}-{uuid.uuid4().hex}{SUFFIX}"
        partial = target.with_suffix(PARTIAL)
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.rename(target)
        _fsync_dir(self.folder)
        return target

    def pending(self) -> list[Path]:
        """Spooled files not yet screened, oldest first; stale partial writes are removed."""
        for partial in self.folder.glob(f"*{PARTIAL}"):
            # never acknowledged, so the sender still has it and will send it again
            partial.unlink(missing_ok=True)
        return sorted(self.folder.glob(f"*{SUFFIX}"))

    def done(self, path: Path) -> None:
        """Forget a film that is now safely in the store (and any alarm it raised)."""
        path.unlink(missing_ok=True)
        _fsync_dir(self.folder)
        (self.held_dir / path.with_suffix(".json").name).unlink(missing_ok=True)

    def hold(self, path: Path, error: KioskError) -> None:
        """Keep a film the kiosk failed to screen by its own fault, with an alarm beside it."""
        self.held_dir.mkdir(exist_ok=True)
        alarm = self.held_dir / path.with_suffix(".json").name
        since = json.loads(alarm.read_text()).get("since") if alarm.exists() else None
        now = datetime.now(UTC).isoformat()
        reason = {"code": error.code, "message": error.message, "since": since or now, "last": now}
        partial = alarm.with_suffix(PARTIAL)
        partial.write_text(json.dumps(reason, indent=2) + "\n")
        partial.replace(alarm)

    def held(self) -> list[tuple[str, dict[str, str]]]:
        """Films kept for retry because of a fault of the kiosk, each with its alarm."""
        if not self.held_dir.is_dir():
            return []
        return [(alarm.with_suffix(SUFFIX).name, json.loads(alarm.read_text()))
                for alarm in sorted(self.held_dir.glob("*.json"))]

    def refuse(self, path: Path, error: KioskError) -> Path:
        """Move a film that cannot be screened aside, with its reason beside it."""
        target = self.refused_dir / path.name
        reason = {"code": error.code, "message": error.message, "at": datetime.now(UTC).isoformat()}
        target.with_suffix(".json").write_text(json.dumps(reason, indent=2) + "\n")
        path.replace(target)
        _fsync_dir(self.refused_dir)
        return target

    def refused(self) -> list[tuple[Path, dict[str, str]]]:
        """Films refused so far, each with its reason."""
        found = []
        for path in sorted(self.refused_dir.glob(f"*{SUFFIX}")):
            reason_file = path.with_suffix(".json")
            reason = json.loads(reason_file.read_text()) if reason_file.exists() else {}
            found.append((path, reason))
        return found


def _fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Screens one spooled file; raises KioskError (retryable or not) when it cannot.
FilmProcessor = Callable[[Path], None]


class SpoolWorker:
    """One thread that screens spooled films in arrival order, retrying what may succeed later."""

    def __init__(self, spool: Spool, process: FilmProcessor, *, retry_s: float = 30.0) -> None:
        self.spool = spool
        self.process = process
        self.retry_s = retry_s
        self._queue: queue.Queue[Path] = queue.Queue()
        self._queued: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0

    def notify(self, path: Path) -> None:
        """A new film was spooled."""
        with self._lock:
            if path in self._queued:
                return
            self._queued.add(path)
            self._busy += 1
        self._queue.put(path)

    def run(self, stop: threading.Event | None = None) -> None:
        """Screen films until ``stop`` (or :meth:`stop`) is set; takes up leftovers first."""
        stop = stop or self._stop
        for path in self.spool.pending():
            self.notify(path)
        while not (stop.is_set() or self._stop.is_set()):
            try:
                path = self._queue.get(timeout=min(self.retry_s, 0.5))
            except queue.Empty:
                continue
            self._handle(path)

    def _handle(self, path: Path) -> None:
        """Screen one film; requeue it later when the failure may pass."""
        retry = False
        try:
            if path.exists():
                self.process(path)
                self.spool.done(path)
        except KioskError as exc:
            ours = exc.code in KIOSK_FAULTS
            retry = exc.retryable or ours or isinstance(exc, DiskFullError)
            if ours:  # acknowledged to the sender, failed by the kiosk's fault: never lost
                LOG.error("ALARM: spooled film %s kept for retry: %s [%s]", path.name, exc.message,
                          exc.code)
                self.spool.hold(path, exc)
            else:
                LOG.warning("spooled film %s: %s [%s]%s", path.name, exc.message, exc.code,
                            " (will retry)" if retry else "")
            if not retry:
                self.spool.refuse(path, exc)
        except OSError as exc:
            retry = True
            LOG.warning("spooled film %s: %s (will retry)", path.name, exc)
        except Exception as exc:
            # a bug met on one film must not kill the worker, nor come back on every restart
            LOG.exception("spooled film %s: unexpected failure; moved to refused/", path.name)
            self.spool.refuse(path, KioskError(f"unexpected failure: {exc!r}", code="unexpected_error"))
        finally:
            with self._lock:
                self._queued.discard(path)
                self._busy -= 1
            with self._idle:
                self._idle.notify_all()
        if retry:
            timer = threading.Timer(self.retry_s, self.notify, args=(path,))
            timer.daemon = True
            timer.start()

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or being screened (for tests and shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stop.set()
