"""An MJPEG-over-HTTP reader (``multipart/x-mixed-replace``), as IP cameras send it.

Written with ``http.client`` rather than OpenCV's FFmpeg back-end so that every limit is ours: a
connect/read timeout, a ceiling on the bytes of one frame and on its pixels (a hostile or broken
stream cannot exhaust memory), and errors that say what happened.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import logging
import socket
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
from PIL import Image as PILImage

from hardware.sources import CameraDisconnected, CameraUnavailable

LOG = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 2**20
MAX_FRAME_PIXELS = 40_000_000
MAX_LINE = 1024
MAX_SKIPPED_LINES = 2000
MAX_BAD_FRAMES = 10


class MjpegStream:
    """One HTTP connection to an MJPEG stream; ``grab()`` returns frame after frame (RGB)."""

    def __init__(self, uri: str, *, timeout_s: float = 5.0, max_frame_bytes: int = MAX_FRAME_BYTES):
        self.uri = uri
        self.timeout_s = timeout_s
        self.max_frame_bytes = max_frame_bytes
        self._conn: http.client.HTTPConnection | None = None
        self._body: http.client.HTTPResponse | None = None
        self._boundary = b""
        self._at_part = False

    def open(self) -> None:
        """Connect and check that the answer is an MJPEG stream."""
        parts = urlsplit(self.uri)
        if not parts.hostname:
            raise CameraUnavailable(f"no host in camera URI {self.uri!r}", retryable=False)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._conn = kind(parts.hostname, parts.port, timeout=self.timeout_s)
        headers = {"Accept": "multipart/x-mixed-replace, image/jpeg"}
        if parts.username is not None:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            self._conn.request("GET", path, headers=headers)
            response = self._conn.getresponse()
        except OSError as exc:
            self.close()
            raise CameraUnavailable(f"camera stream {self._safe_uri()} unreachable: {exc}") from exc
        self._body = response
        self._boundary = self._check_response(response)

    def _safe_uri(self) -> str:
        """The URI without its password, for messages and logs."""
        parts = urlsplit(self.uri)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"

    def _check_response(self, response: http.client.HTTPResponse) -> bytes:
        """The multipart boundary, or :class:`CameraUnavailable` for any other answer."""
        if response.status != 200:
            self.close()
            raise CameraUnavailable(
                f"camera stream {self._safe_uri()} answered HTTP {response.status} {response.reason}"
            )
        content_type = response.getheader("Content-Type", "")
        if not content_type.lower().startswith("multipart/x-mixed-replace"):
            self.close()
            raise CameraUnavailable(
                f"{self._safe_uri()} is not an MJPEG stream (Content-Type {content_type!r})",
                retryable=False,
            )
        for param in content_type.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.lower() == "boundary" and value:
                return value.strip('"').encode("latin-1").lstrip(b"-")
        self.close()
        raise CameraUnavailable(f"{self._safe_uri()}: MJPEG stream without a boundary", retryable=False)

    def grab(self) -> np.ndarray:
        """The next decodable frame, RGB uint8."""
        for _ in range(MAX_BAD_FRAMES):
            rgb = _decode_jpeg(self._next_part())
            if rgb is not None:
                return rgb
            LOG.warning("camera %s sent an undecodable frame; skipped", self._safe_uri())
        raise CameraDisconnected(f"camera {self._safe_uri()} sends only undecodable frames")

    def _readline(self) -> bytes:
        """One line of the stream; end of stream or a timeout is a disconnection."""
        if self._body is None:
            raise CameraDisconnected(f"camera {self._safe_uri()} is closed")
        try:
            line = self._body.readline(MAX_LINE)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise CameraDisconnected(f"camera {self._safe_uri()} stopped: {exc}") from exc
        if not line:
            raise CameraDisconnected(f"camera {self._safe_uri()} closed the stream")
        return line

    def _is_boundary(self, line: bytes) -> bool:
        """Whether the line opens (or closes) a part."""
        return line.startswith(b"--") and line.strip().strip(b"-") == self._boundary.rstrip(b"-")

    def _next_part(self) -> bytes:
        """The payload of the next part of the multipart stream."""
        if not self._at_part:
            for _ in range(MAX_SKIPPED_LINES):
                if self._is_boundary(self._readline()):
                    break
            else:
                raise CameraDisconnected(f"camera {self._safe_uri()}: no multipart boundary found")
        self._at_part = False
        length = self._part_length()
        if length is not None:
            return self._read_exactly(length)
        return self._read_to_boundary()

    def _part_length(self) -> int | None:
        """Read the part's headers; its Content-Length when given."""
        length: int | None = None
        for _ in range(64):
            line = self._readline().strip()
            if not line:
                return length
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = None
                if length is not None and not 0 < length <= self.max_frame_bytes:
                    raise CameraDisconnected(
                        f"camera {self._safe_uri()} sent a {length}-byte frame (limit "
                        f"{self.max_frame_bytes})"
                    )
        raise CameraDisconnected(f"camera {self._safe_uri()}: part headers never end")

    def _read_exactly(self, length: int) -> bytes:
        """``length`` payload bytes."""
        assert self._body is not None
        try:
            data = self._body.read(length)
        except (OSError, http.client.HTTPException) as exc:
            raise CameraDisconnected(f"camera {self._safe_uri()} stopped: {exc}") from exc
        if len(data) < length:
            raise CameraDisconnected(f"camera {self._safe_uri()} closed the stream mid-frame")
        return data

    def _read_to_boundary(self) -> bytes:
        """Payload lines up to the next boundary (streams that send no Content-Length)."""
        payload = io.BytesIO()
        while True:
            line = self._readline()
            if self._is_boundary(line):
                self._at_part = True
                return payload.getvalue().removesuffix(b"\r\n")
            payload.write(line)
            if payload.tell() > self.max_frame_bytes:
                raise CameraDisconnected(f"camera {self._safe_uri()} sent a frame over the limit")

    def close(self) -> None:
        """Close the connection (this also unblocks a read waiting in another thread)."""
        body, self._body = self._body, None
        if self._conn is not None:
            sock = self._conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed by the peer
                    sock.shutdown(socket.SHUT_RDWR)
            self._conn.close()
        if body is not None:
            with contextlib.suppress(OSError, ValueError):  # a read in another thread may hold it
                body.close()
        self._conn = None


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    """RGB pixels of a JPEG frame; None when it is not a decodable image of sane size."""
    try:
        with PILImage.open(io.BytesIO(data)) as header:
            width, height = header.size
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return None
    if width * height > MAX_FRAME_PIXELS:
        return None
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
