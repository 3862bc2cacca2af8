"""A small fault-injecting TCP proxy on 127.0.0.1 (toxiproxy and tc netem are not available).

Each accepted connection is forwarded to the upstream peer, or suffers one fault drawn at
random: ``refuse`` (accepted, then reset before a byte is read), ``drop`` (the request reaches
the peer and is processed, but the peer's answer is thrown away and the client reset),
``stall`` (the answer is held back longer than the client waits) or ``reset`` (the connection
is reset mid-request). ``down()`` closes the listening socket, so connections are refused by
the kernel, until ``up()`` opens it again on the same port.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import struct
import threading
from collections import Counter

FAULTS = ("refuse", "drop", "stall", "reset")


def _hard_close(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:port to the upstream, injecting faults with the given odds."""

    def __init__(self, upstream: tuple[str, int], *, odds: dict[str, float] | None = None,
                 seed: int = 0, stall_s: float = 3.0, first: tuple[str, ...] = ()):
        self.upstream = upstream
        self.odds = dict(odds or {})
        self.first = list(first)  # faults forced on the first connections, then random ones
        self.rng = random.Random(seed)
        self.stall_s = stall_s
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0
        self.up()

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect."""
        return "127.0.0.1", self.port

    def up(self) -> None:
        """Listen (again, on the same port) and forward."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Stop listening: new connections are refused by the kernel."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not on Linux
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _draw(self) -> str:
        with self._lock:
            if self.first:
                fault = self.first.pop(0)
                self.injected[fault] += 1
                return fault
            roll = self.rng.random()
            for fault in FAULTS:
                roll -= self.odds.get(fault, 0.0)
                if roll < 0:
                    self.injected[fault] += 1
                    return fault
            self.injected["pass"] += 1
            return "pass"

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, self._draw()), daemon=True).start()

    def _serve(self, client: socket.socket, fault: str) -> None:
        if fault == "refuse":
            _hard_close(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _hard_close(client)
            return
        try:
            self._pump(client, upstream, fault)
        except OSError:  # either side reset or vanished (e.g. a client killed with kill -9)
            pass
        finally:
            _hard_close(client)
            _hard_close(upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket, fault: str) -> None:
        answers_to_pass = self.rng.randint(0, 2)  # e.g. the DICOM association accept first
        reset_after = self.rng.randint(1, 2048)
        forwarded = 0
        while True:
            readable, _, _ = select.select([client, upstream], [], [], 30)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is client:
                    if fault == "reset" and forwarded + len(data) >= reset_after:
                        upstream.sendall(data[: max(0, reset_after - forwarded)])
                        return
                    forwarded += len(data)
                    upstream.sendall(data)
                elif fault in ("drop", "stall") and answers_to_pass == 0:
                    if fault == "stall":
                        threading.Event().wait(self.stall_s)
                    return
                else:
                    answers_to_pass -= 1
                    client.sendall(data)
