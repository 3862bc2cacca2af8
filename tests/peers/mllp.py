"""An HL7 v2 MLLP receiver on 127.0.0.1 that keeps each message once by its MSH-10.

It behaves as an interface engine with duplicate detection: a message whose control id it has
already accepted is acknowledged (AA) again but not stored twice. ``deliveries`` counts every
message that arrived, so a test can see how many resends the receiver absorbed. A patient id
listed in ``answers`` gets that ACK code instead (AE/AR), to test the kiosk's handling.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

START, END = b"\x0b", b"\x1c\x0d"


@dataclass
class Inbox:
    """What the receiver kept."""

    messages: dict[str, str] = field(default_factory=dict)  # MSH-10 -> message
    deliveries: int = 0
    answers: dict[str, tuple[str, str]] = field(default_factory=dict)  # PID-3.1 -> (code, text)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fields(self, message: str, segment: str) -> list[str]:
        """The fields of the first segment of this type in a message."""
        for line in message.split("\r"):
            if line.startswith(segment + "|"):
                return line.split("|")
        return []


def _ack(control_id: str, code: str, text: str) -> bytes:
    msh = "MSH|^~\\&|EHR|EHR|KIOSK|CLINIC|20260101000000||ACK^R01^ACK|A" + control_id + "|P|2.5"
    msa = f"MSA|{code}|{control_id}|{text}"
    return START + (msh + "\r" + msa + "\r").encode() + END


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            self._serve()
        except OSError:  # the sender reset or dropped the connection: nothing to answer
            return

    def _serve(self) -> None:
        data = b""
        while True:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
            while END in data:
                frame, data = data.split(END, 1)
                self.request.sendall(self._answer(frame.lstrip(START).decode("utf-8")))

    def _answer(self, message: str) -> bytes:
        inbox: Inbox = self.server.inbox  # type: ignore[attr-defined]
        msh = inbox.fields(message, "MSH")
        control_id = msh[9] if len(msh) > 9 else ""
        patient = inbox.fields(message, "PID")[3].split("^")[0]
        with inbox.lock:
            inbox.deliveries += 1
            if patient in inbox.answers:
                code, text = inbox.answers[patient]
                return _ack(control_id, code, text)
            inbox.messages.setdefault(control_id, message)
        return _ack(control_id, "AA", "")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True)
        return conn, address


class MllpPeer:
    """The receiver, serving in a background thread until ``stop`` (over TLS with a context)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.inbox = Inbox()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.tls = tls
        self._server.inbox = self.inbox  # type: ignore[attr-defined]
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """host:port for KIOSK_HL7_ADDRESS."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
