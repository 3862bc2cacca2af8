"""Supervised threads for ``kiosk serve``: one per service, restarted with backoff when it dies.

A service is a name, a ``run(stop)`` that blocks until ``stop`` is set, and an optional
``interrupt()`` that makes ``run`` return sooner (closing a server socket). When ``run`` raises
or returns while the kiosk is not stopping, the supervisor logs it and starts it again after a
delay that doubles up to a ceiling, and drops back to the first delay once a run has lasted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

LOG = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0
HEALTHY_AFTER_S = 60.0


@dataclass
class Service:
    """One supervised piece of the kiosk."""

    name: str
    run: Callable[[threading.Event], None]
    interrupt: Callable[[], None] | None = None
    restarts: int = 0
    last_error: str = ""
    running: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    """Starts services in threads, restarts the ones that die, and stops them all."""

    def __init__(self, *, first_delay_s: float = FIRST_DELAY_S, max_delay_s: float = MAX_DELAY_S,
                 healthy_after_s: float = HEALTHY_AFTER_S) -> None:
        self.stopping = threading.Event()
        self.services: list[Service] = []
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.healthy_after_s = healthy_after_s

    def add(self, name: str, run: Callable[[threading.Event], None],
            interrupt: Callable[[], None] | None = None) -> Service:
        """Register a service (started by :meth:`start`)."""
        service = Service(name, run, interrupt)
        self.services.append(service)
        return service

    def start(self) -> None:
        """Start every registered service in its own thread."""
        for service in self.services:
            service.thread = threading.Thread(target=self._keep_running, args=(service,),
                                              name=f"kiosk-{service.name}", daemon=True)
            service.thread.start()

    def _keep_running(self, service: Service) -> None:
        """Run the service until the kiosk stops, restarting it with backoff."""
        delay = self.first_delay_s
        while not self.stopping.is_set():
            started = time.monotonic()
            service.running = True
            try:
                service.run(self.stopping)
                outcome = "returned"
            except Exception as exc:  # a service must never take the kiosk down with it
                outcome = f"crashed: {exc!r}"
                LOG.exception("service %s crashed", service.name)
            finally:
                service.running = False
            if self.stopping.is_set():
                return
            if time.monotonic() - started >= self.healthy_after_s:
                delay = self.first_delay_s
            service.restarts += 1
            service.last_error = outcome
            LOG.error("service %s %s; restart %d in %.0f s", service.name, outcome,
                      service.restarts, delay)
            if self.stopping.wait(delay):
                return
            delay = min(delay * 2, self.max_delay_s)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask every service to stop, interrupt the blocking ones, and wait for them."""
        self.stopping.set()
        for service in self.services:
            if service.interrupt is not None:
                try:
                    service.interrupt()
                except Exception:  # stopping must go on for the others
                    LOG.exception("stopping %s failed", service.name)
        deadline = time.monotonic() + timeout_s
        for service in self.services:
            if service.thread is not None:
                service.thread.join(timeout=max(0.1, deadline - time.monotonic()))
                if service.thread.is_alive():
                    LOG.warning("service %s did not stop within %.0f s", service.name, timeout_s)

    def status(self) -> list[dict[str, object]]:
        """Each service: name, running, restarts, last error (for the admin page and logs)."""
        return [{"name": s.name, "running": s.running, "restarts": s.restarts,
                 "last_error": s.last_error} for s in self.services]
