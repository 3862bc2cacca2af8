"""``kiosk serve``: the web app, the DICOM listener and the sync loop in one supervised process.

Each piece runs in its own thread under :class:`hardware.supervisor.Supervisor` (a crashed one is
logged and restarted with backoff); SIGTERM or SIGINT stops them all cleanly. The web app is
served by waitress on ``KIOSK_HOST:KIOSK_PORT``; the listener on ``KIOSK_DICOM_HOST:KIOSK_DICOM_PORT``
unless that port is 0; pushed films are screened by a spool worker with the web app's pipeline.
A piece whose code is not installed is reported as such and the rest still starts.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.config import Config
from kiosk.errors import BundleError, KioskError

LOG = logging.getLogger("kiosk.serve")


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("--no-dicom", action="store_true", help="do not start the DICOM listener")
    parser.add_argument("--no-sync", action="store_true", help="do not start the sync loop")
    parser.add_argument("--threads", type=int, default=6, help="web server worker threads")


@dataclass
class Kiosk:
    """Everything ``kiosk serve`` started, so it can be stopped in order."""

    supervisor: Any
    store: Any
    pipeline: Callable[[], Any]
    missing: list[str] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Stop the services, then release the models and the store."""
        self.supervisor.stop()
        for close in reversed(self.closers):
            try:
                close()
            except KioskError as exc:
                LOG.warning("while stopping: %s", exc.message)
        self.store.close()


class _WebServer:
    """waitress serving the Flask app; a fresh server for each (re)start."""

    def __init__(self, app: Any, config: Config, threads: int) -> None:
        self.app, self.config, self.threads = app, config, threads
        self._server: Any = None

    def run(self, stop: threading.Event) -> None:
        """Serve until interrupted."""
        from waitress import create_server

        server = create_server(
            self.app, host=self.config.host, port=self.config.port, threads=self.threads,
            ident="kiosk", connection_limit=64, channel_timeout=120,
            max_request_body_size=8 * self.config.max_upload_mb * 2**20,
        )
        self._server = server
        if stop.is_set():
            server.close()
            return
        LOG.info("web app on http://%s:%s", self.config.host, server.effective_port)
        try:
            server.run()
        except (OSError, ValueError):
            # ``interrupt`` closes the socket from another thread while the loop may be inside
            # select(): EBADF (or a negative fd) then ends the loop. That is the stop, not a crash.
            if not stop.is_set():
                raise

    def interrupt(self) -> None:
        """Close the listening socket; ``run`` returns."""
        if self._server is not None:
            self._server.close()


def _add_web(kiosk: Kiosk, config: Config, threads: int) -> None:
    """The web app, sharing the store and (lazily) the pipeline."""
    try:
        from web import create_app
    except ImportError as exc:
        kiosk.missing.append(f"web app ({exc})")
        return
    app = create_app(config, store=kiosk.store, pipeline=kiosk.pipeline)  # the one lazy pipeline
    web = _WebServer(app, config, threads)
    kiosk.supervisor.add("web", web.run, web.interrupt)


def _add_dicom(kiosk: Kiosk, config: Config) -> None:
    """The DICOM listener and the worker screening what it spools."""
    from hardware.listener import DicomListener
    from hardware.pushed import screen_spooled_film
    from hardware.spool import Spool, SpoolWorker

    def screen(path: Path) -> None:
        try:
            pipeline = kiosk.pipeline()
        except BundleError as exc:
            raise KioskError(f"no model can screen it yet ({exc.message}); kept in the spool",
                             code="no_model", retryable=True) from exc
        screen_spooled_film(path, pipeline, kiosk.store)

    spool = Spool(config.data_dir / "spool", min_free_mb=config.min_free_disk_mb)
    worker = SpoolWorker(spool, screen)
    listener = DicomListener(config, spool, worker)
    kiosk.supervisor.add("dicom-listener", listener.serve)
    kiosk.supervisor.add("spool-worker", worker.run)


def _add_sync(kiosk: Kiosk, config: Config) -> None:
    """The outbox sync loop."""
    try:
        from kiosk.sync import make_worker, worker_lock
    except ImportError as exc:
        kiosk.missing.append(f"sync loop ({exc})")
        return

    def run_sync(stop: threading.Event) -> None:
        with worker_lock(config.data_dir):
            make_worker(kiosk.store).run_forever(config.sync_interval_s, stop)

    kiosk.supervisor.add("sync", run_sync)


def build(config: Config, *, web: bool = True, dicom: bool = True, sync: bool = True,
          threads: int = 6) -> Kiosk:
    """Open the store and register every service (nothing runs until ``supervisor.start()``)."""
    from hardware.supervisor import Supervisor
    from kiosk.store import Store
    from kiosk.visit import LazyPipeline

    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(config)
    lazy = LazyPipeline(config, store)
    kiosk = Kiosk(Supervisor(), store, lazy, closers=[lazy.close])
    if web:
        _add_web(kiosk, config, threads)
    if dicom and config.dicom_port:
        _add_dicom(kiosk, config)
    if sync:
        _add_sync(kiosk, config)
    return kiosk


def run(args: argparse.Namespace, config: Config) -> int:
    """Start everything, wait for SIGTERM/SIGINT, stop everything; 0 on a clean stop."""
    kiosk = build(config, dicom=not args.no_dicom, sync=not args.no_sync, threads=args.threads)
    for piece in kiosk.missing:
        LOG.warning("not started, not built yet: %s", piece)
    if not config.dicom_port:
        LOG.info("DICOM listener disabled (KIOSK_DICOM_PORT=0)")
    stop = kiosk.supervisor.stopping
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    from hardware.status import report_services

    report_services(kiosk.supervisor.status)  # the admin page's hardware panel shows them
    kiosk.supervisor.start()
    LOG.info("kiosk serving: %s; data in %s",
             ", ".join(s.name for s in kiosk.supervisor.services) or "nothing", config.data_dir)
    while not stop.wait(1.0):  # a timed wait, so signal handlers run promptly
        pass
    LOG.info("stopping")
    kiosk.close()
    LOG.info("stopped")
    return 0
