"""Decode untrusted image files in worker processes with a memory and a time limit.

One hostile file (a decompression bomb under the pixel limit, a decoder bug that loops or
crashes) must not take the kiosk down. :class:`SandboxedIntake` keeps a small pool of
pre-started worker processes (forkserver, with the codecs imported once); each decode
runs in a worker whose address space is capped with ``RLIMIT_AS``. A worker that runs out of
memory, dies or overruns the time limit is killed and replaced, and its file is refused with
``IntakeError(code="decode_failed")`` or ``IntakeError(code="decode_timeout")``; the next file
decodes normally. With ``workers=0`` decoding happens in-process (no limits), e.g. for tools.

A file reaches its worker through the worker's inbox and the pixels come back through its
outbox (shared memory, ``kiosk/mailbox.py``: one write and one read each way, where the pipe
passes them in socket-buffer pieces with a wake-up of both processes each), without giving the
worker anything more than the pipe did. A worker that cannot start is the kiosk's fault, not
the file's: ``IntakeError(code="decoder_unavailable", retryable=True)``.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from kiosk import mailbox as mail
from kiosk.config import Config
from kiosk.domain import Image, ImageKind
from kiosk.errors import IntakeError
from kiosk.mailbox import Mailbox

if TYPE_CHECKING:
    from kiosk.intake import IntakeLimits

log = logging.getLogger(__name__)

#: The decoder run in the workers, as "module:function"; same signature as ``read_image``.
DEFAULT_DECODER = "kiosk.intake:read_image"
#: Third-party modules the forkserver preloads, so that a new worker starts in milliseconds.
#: Never the kiosk's own packages: the forkserver runs with the working directory first on
#: sys.path (``python -c``; it ignores the parent's path), so a folder named ``kiosk`` there
#: (e.g. ``KIOSK_DATA_DIR=./kiosk``) would be imported as an empty namespace package in place of
#: an editable install's ``kiosk`` and break every worker. A plain folder cannot shadow these.
FORKSERVER_PRELOAD = [
    "numpy", "PIL.Image", "PIL.PngImagePlugin", "PIL.JpegImagePlugin", "PIL.Jpeg2KImagePlugin",
    "cv2", "pydicom", "pydicom.pixels", "pylibjpeg", "openjpeg", "libjpeg",
]
#: Modules each worker imports before its memory cap (with the parent's sys.path, set by
#: multiprocessing): decoders import codecs lazily, and a lazy import under the cap would fail
#: for want of address space.
PRELOAD = [*FORKSERVER_PRELOAD, "kiosk.domain", "kiosk.errors", "kiosk.intake", "kiosk.intake.dicom",
           "kiosk.intake.photo"]
#: Most threads OpenJPEG may use for one JPEG 2000 decode in a worker (``OPJ_NUM_THREADS``).
MAX_DECODE_THREADS = 4
#: Seconds a freshly started worker may take to import the decoder and say it is ready.
START_TIMEOUT_S = 120.0


@dataclass(eq=False)
class _Worker:
    """One decode process and the parent's end of its pipe."""

    process: BaseProcess
    conn: Connection
    ready: bool = False
    #: Shared memory with the worker (kiosk/mailbox.py): its inbox and outbox.
    mailbox: Mailbox = field(default_factory=Mailbox)


class SandboxedIntake:
    """``read_image`` with the same signature, run in a pool of memory- and time-limited workers."""

    def __init__(
        self,
        limits: IntakeLimits | None = None,
        *,
        memory_mb: int = 1024,
        timeout_s: float = 10.0,
        workers: int = 2,
        decoder: str = DEFAULT_DECODER,
    ) -> None:
        if memory_mb <= 0 or timeout_s <= 0 or workers < 0:
            raise ValueError("memory_mb and timeout_s must be positive, workers >= 0")
        self.limits = limits
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.workers = workers
        self.decoder = decoder
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._context = _context() if workers else None
        for _ in range(workers):
            self._idle.put(self._start_worker())

    @classmethod
    def from_config(cls, config: Config) -> SandboxedIntake:
        """The sandbox sized by ``sandbox_*`` settings, with the intake limits of the config."""
        from kiosk.intake import IntakeLimits

        return cls(
            IntakeLimits.from_config(config),
            memory_mb=config.sandbox_memory_mb,
            timeout_s=config.sandbox_timeout_s,
            workers=config.sandbox_workers,
        )

    def read_image(
        self,
        data: bytes,
        *,
        source: str = "",
        kind_hint: ImageKind | None = None,
        target_size: int | None = None,
        limits: IntakeLimits | None = None,
    ) -> Image:
        """Decode ``data`` like ``kiosk.intake.read_image``; a killed or hung decode is an IntakeError."""
        kwargs: dict[str, Any] = {"source": source, "kind_hint": kind_hint, "target_size": target_size}
        chosen = limits if limits is not None else self.limits
        if chosen is not None:
            kwargs["limits"] = chosen
        if self.workers == 0:
            return _load_decoder(self.decoder)(data, **kwargs)
        if self._closed:
            raise RuntimeError("the decode sandbox is closed")
        worker = self._idle.get()
        if not worker.process.is_alive():  # killed while idle (OOM killer): not this file's fault
            worker = self._replace(worker)
        try:
            reply = self._ask(worker, data, kwargs)
            if reply[0] == "bug" or reply[:2] == ("refused", "decode_failed"):
                worker = self._replace(worker)  # after a MemoryError or a bug, start clean
        except BaseException:
            worker = self._replace(worker)
            raise
        finally:
            self._idle.put(worker)
        return _unpack(reply)

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        self._closed = True
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            _stop(worker)

    def __enter__(self) -> SandboxedIntake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and the doctor)."""
        with self._lock:
            return sorted(w.process.pid for w in self._all if w.process.pid is not None)

    # -- internals ---------------------------------------------------------------------------

    def _start_worker(self) -> _Worker:
        assert self._context is not None
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=_serve, args=(child_end, self.decoder, self.memory_mb), daemon=True,
            name="kiosk-decode",
        )
        process.start()
        child_end.close()
        worker = _Worker(process, parent_end, mailbox=mail.open_for_worker(parent_end, process.pid))
        with self._lock:
            self._all.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> _Worker:
        with self._lock:
            self._all.discard(worker)
        _stop(worker)
        return self._start_worker()

    def _ask(self, worker: _Worker, data: bytes, kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Send one file to ``worker`` and wait for its answer, within the time limit."""
        if not worker.ready:
            _wait_ready(worker)
        try:
            worker.conn.send((mail.post(worker.mailbox, data), kwargs))
            if not worker.conn.poll(self.timeout_s):
                raise IntakeError(
                    f"Decoding this file took longer than {self.timeout_s:g} s and was stopped; "
                    "the file may be damaged or hostile. Export it again or use another image.",
                    code="decode_timeout",
                )
            reply: tuple[Any, ...] = mail.open_reply(worker.mailbox, worker.conn.recv())
        except (EOFError, OSError, ValueError) as exc:
            raise _crashed(worker) from exc
        mail.after(worker.mailbox, data)
        return reply


def _context() -> BaseContext:
    """A forkserver context (spawn where there is none) whose server preloads the decoder."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if hasattr(context, "set_forkserver_preload"):
        context.set_forkserver_preload(FORKSERVER_PRELOAD)
    return context


def _wait_ready(worker: _Worker) -> None:
    try:
        if worker.conn.poll(START_TIMEOUT_S) and worker.conn.recv() == ("ready",):
            worker.ready = True
            return
    except (EOFError, OSError):
        pass
    log.error("ALARM: decode worker %s did not start (exit status %s): no film can be decoded "
              "until it does; run 'kiosk doctor'", worker.process.pid, worker.process.exitcode)
    raise IntakeError(
        "The kiosk's image decoder could not start: a fault of this kiosk, not of the image. "
        "Try again; if it persists, ask IT to run 'kiosk doctor'.",
        code="decoder_unavailable", retryable=True)


def _crashed(worker: _Worker) -> IntakeError:
    worker.process.join(1.0)
    status = worker.process.exitcode
    log.warning("decode worker %s ended (exit status %s); replacing it", worker.process.pid, status)
    return IntakeError(
        "Decoding this file used too much memory or crashed the decoder and was stopped; "
        "the file may be damaged or hostile. Export it again or use another image.",
        code="decode_failed",
    )


def _stop(worker: _Worker) -> None:
    """Kill a worker and reap it."""
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join(5.0)
    worker.conn.close()
    worker.mailbox.close()


def _unpack(reply: tuple[Any, ...]) -> Image:
    """The worker's answer as an Image, or the IntakeError it reported."""
    status = reply[0]
    if status == "image":
        image: Image = reply[1]
        return image
    if status == "refused":
        raise IntakeError(reply[2], code=reply[1])
    log.error("decoder raised %s (a bug in intake: it must raise IntakeError)", reply[1])
    raise IntakeError(
        "The image decoder failed on this file; export it again or use another image.",
        code="decode_failed",
    )


def _load_decoder(path: str) -> Callable[..., Image]:
    module_name, _, function = path.partition(":")
    decoder: Callable[..., Image] = getattr(importlib.import_module(module_name), function)
    return decoder


# -- the worker process ------------------------------------------------------------------------


def _serve(conn: Connection, decoder_path: str, memory_mb: int) -> None:
    """Worker main loop: import the decoder, cap memory, then decode files until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mailbox = mail.receive(conn)
    # OpenJPEG reads this when a decoder is created: a JPEG 2000 film decodes on every core
    os.environ.setdefault("OPJ_NUM_THREADS", str(min(MAX_DECODE_THREADS, _cores())))
    decoder = _load_decoder(decoder_path)
    _preload()
    _limit_memory(memory_mb)
    conn.send(("ready",))
    while True:
        try:
            payload, kwargs = conn.recv()
            data = mail.collect(mailbox, payload)
        except (EOFError, OSError):
            return
        conn.send(mail.answer(mailbox, _decode(decoder, data, kwargs)))
        del data, payload


def _decode(decoder: Callable[..., Image], data: bytes, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """One decode, with every outcome turned into a picklable reply."""
    try:
        return ("image", decoder(data, **kwargs))
    except IntakeError as exc:
        return ("refused", exc.code, exc.message)
    except MemoryError:
        return ("refused", "decode_failed",
                "Decoding this file needs more memory than the kiosk allows; use another image.")
    except Exception as exc:  # a decoder bug: reported, never allowed to kill the worker loop
        return ("bug", type(exc).__name__)


def _preload() -> None:
    """Import the codecs the decoder may load lazily (best effort: a missing one is not fatal)."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            log.debug("decode worker: %s is not installed", name)


def _cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _limit_memory(memory_mb: int) -> None:
    """Cap this process's address space at what is mapped now plus ``memory_mb``."""
    if not sys.platform.startswith("linux"):
        return  # RLIMIT_AS is not enforced on macOS; the time limit still applies
    import resource

    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = mapped + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
