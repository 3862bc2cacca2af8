"""Cameras by URI, on real fundus photographs: an image, a sequence, a clip, and an MJPEG stream
served over HTTP on loopback by a real server started here (no camera can be attached)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared

from hardware.camera import LiveCamera, open_camera
from hardware.mjpeg import MjpegStream
from hardware.sources import CameraDisconnected, CameraError, CameraUnavailable, CameraURIError

FULLRES = ("10_left.jpeg", "15_right.jpeg", "16_left.jpeg")


def _fundus(name: str, width: int = 640) -> np.ndarray:
    """A real full-resolution fundus photograph, downscaled to ``width``, RGB."""
    bgr = cv2.imread(str(shared("fundus", "eyepacs-fullres", name)), cv2.IMREAD_COLOR)
    height = round(bgr.shape[0] * width / bgr.shape[1]) // 2 * 2  # codecs want even sizes
    small = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


def _close_to(a: np.ndarray, b: np.ndarray, tol: float = 6.0) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(float) - b.astype(float)).mean()) < tol


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [_fundus(name) for name in FULLRES]


# --- file:// -----------------------------------------------------------------------------------


def test_still_image_returns_the_photograph(photos: list[np.ndarray], tmp_path: Path) -> None:
    path = shared("fundus", "eyepacs-fullres", "13_right.jpeg")
    camera = open_camera(path.as_uri())
    try:
        frame = camera.read()
        again = camera.read()
    finally:
        camera.close()
    expected = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert frame.dtype == np.uint8 and frame.shape == expected.shape
    assert np.array_equal(frame, expected)  # RGB, not OpenCV's BGR
    assert np.array_equal(frame, again) and frame is not again


def test_folder_sequence_reads_in_order_and_loops(photos: list[np.ndarray], tmp_path: Path) -> None:
    for index, rgb in enumerate(photos):
        cv2.imwrite(str(tmp_path / f"eye_{index:02d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    camera = open_camera(tmp_path.as_uri() + "/")
    frames = [camera.read() for _ in range(len(photos) + 1)]
    camera.close()
    for frame, rgb in zip(frames, [*photos, photos[0]], strict=True):
        assert np.array_equal(frame, rgb)  # PNG is lossless


def test_printf_pattern_sequence(photos: list[np.ndarray], tmp_path: Path) -> None:
    for index, rgb in enumerate(photos, start=1):
        cv2.imwrite(str(tmp_path / f"frame_{index:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    encoded = (tmp_path / "frame_%04d.png").as_uri()  # "%" percent-encoded as "%25"
    for uri in (encoded, encoded.replace("%25", "%")):  # and as a person types it
        camera = open_camera(uri)
        assert [np.array_equal(camera.read(), rgb) for rgb in [*photos, photos[0]]] == [True] * 4
        camera.close()


def test_clip_written_with_videowriter_plays_and_loops(photos: list[np.ndarray], tmp_path: Path) -> None:
    clip = tmp_path / "exam.avi"
    height, width = photos[0].shape[:2]
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (width, height))
    assert writer.isOpened()
    sequence = [cv2.resize(rgb, (width, height)) for rgb in photos]
    for rgb in sequence:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    camera = open_camera(clip.as_uri())
    frames = [camera.read() for _ in range(len(sequence) + 1)]
    camera.close()
    for frame, rgb in zip(frames, [*sequence, sequence[0]], strict=True):
        assert _close_to(frame, rgb)
    assert not _close_to(frames[0], frames[1])  # really different photographs, in order


def test_missing_and_unknown_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraUnavailable, match="does not exist"):
        open_camera((tmp_path / "nothing.jpg").as_uri())
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(CameraURIError):
        open_camera((tmp_path / "notes.txt").as_uri())
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(CameraDisconnected, match="cannot decode"):
        open_camera((tmp_path / "broken.jpg").as_uri())
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraUnavailable, match="no image files"):
        open_camera((tmp_path / "empty").as_uri())


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(CameraURIError, match="v4l2:///dev/videoN"):
        open_camera("rtsp://10.0.0.5/stream")


def test_v4l2_without_a_device_says_what_to_check() -> None:
    if list(Path("/dev").glob("video*")):
        pytest.skip("a V4L2 device exists here; this test is for machines without one")
    for uri in ("v4l2:///dev/video0", "v4l2://0", "v4l2://dev/video0"):
        with pytest.raises(CameraUnavailable, match="no camera at /dev/video0") as excinfo:
            open_camera(uri)
        assert excinfo.value.retryable and excinfo.value.http_status == 503


def test_csi_camera_without_jetpack_fails_cleanly() -> None:
    if Path("/etc/nv_tegra_release").exists():
        pytest.skip("a Jetson: a CSI camera may really be there")
    with pytest.raises(CameraUnavailable, match="CSI camera 0"):
        open_camera("csi://0?width=1280&height=720&fps=30")
    with pytest.raises(CameraURIError):
        open_camera("csi://front")
    with pytest.raises(CameraURIError):
        open_camera("csi://0?width=wide")


def test_relative_file_uri_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CameraURIError, match="absolute path"):
        open_camera("file://clip.avi")


# --- http:// MJPEG -------------------------------------------------------------------------------


class _Mjpeg:
    """A real MJPEG server on 127.0.0.1 sending the given JPEG frames in a loop."""

    def __init__(self, frames: list[bytes], *, content_length: bool = True, stop_after: int = 0,
                 max_streams: int = 0):
        self.frames = frames
        self.content_length = content_length
        self.stop_after = stop_after
        self.max_streams = max_streams
        self.streams = 0
        self.sent = 0
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/still.jpg":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.end_headers()
                    self.wfile.write(peer.frames[0])
                    return
                if self.path != "/stream.mjpg":
                    self.send_error(404)
                    return
                peer.streams += 1
                if peer.max_streams and peer.streams > peer.max_streams:
                    self.send_error(503, "camera busy")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=kioskframe")
                self.end_headers()
                index = 0
                try:
                    while not peer.stop_after or index < peer.stop_after:
                        frame = peer.frames[index % len(peer.frames)]
                        head = b"--kioskframe\r\nContent-Type: image/jpeg\r\n"
                        if peer.content_length:
                            head += f"Content-Length: {len(frame)}\r\n".encode()
                        self.wfile.write(head + b"\r\n" + frame + b"\r\n")
                        self.wfile.flush()
                        index += 1
                        peer.sent = index
                        time.sleep(0.02)
                except (BrokenPipeError, ConnectionResetError):
                    return

        return Handler

    def __enter__(self) -> _Mjpeg:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def mjpeg_frames(photos: list[np.ndarray]) -> Iterator[list[bytes]]:
    yield [_jpeg(rgb) for rgb in photos]


@pytest.mark.parametrize("content_length", [True, False])
def test_mjpeg_stream_delivers_the_photographs(
    photos: list[np.ndarray], mjpeg_frames: list[bytes], content_length: bool
) -> None:
    with _Mjpeg(mjpeg_frames, content_length=content_length) as server:
        camera = open_camera(server.url + "/stream.mjpg")
        try:
            frames = [camera.read() for _ in range(5)]
        finally:
            camera.close()
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.ndim == 3
        assert any(_close_to(frame, rgb) for rgb in photos)
    # a live stream: each read waits for a newer frame, so the photographs change
    shown = {next(i for i, rgb in enumerate(photos) if _close_to(frame, rgb)) for frame in frames}
    assert len(shown) >= 2


def test_mjpeg_stream_that_stops_is_a_disconnection(mjpeg_frames: list[bytes]) -> None:
    with _Mjpeg(mjpeg_frames, stop_after=3, max_streams=1) as server:
        url = server.url + "/stream.mjpg"
        camera = LiveCamera(url, MjpegStream(url, timeout_s=2.0), timeout_s=2.0, reconnect_s=0.05)
        with pytest.raises(CameraDisconnected):
            for _ in range(50):
                camera.read()
        time.sleep(0.1)
        with pytest.raises(CameraUnavailable, match="HTTP 503"):  # reconnecting, refused
            camera.read()
        camera.close()


def test_mjpeg_camera_reconnects_after_the_stream_ends(mjpeg_frames: list[bytes]) -> None:
    with _Mjpeg(mjpeg_frames, stop_after=3) as server:
        url = server.url + "/stream.mjpg"
        camera = LiveCamera(url, MjpegStream(url, timeout_s=2.0), timeout_s=2.0, reconnect_s=0.05)
        frames, failures = 0, 0
        try:
            for _ in range(200):
                try:
                    camera.read()
                    frames += 1
                except CameraError:
                    failures += 1
                    time.sleep(0.06)
                if frames >= 8:
                    break
        finally:
            camera.close()
    assert frames >= 8 and failures >= 1 and server.streams >= 2


def test_mjpeg_errors_say_what_is_wrong(mjpeg_frames: list[bytes]) -> None:
    with _Mjpeg(mjpeg_frames) as server:
        with pytest.raises(CameraUnavailable, match="HTTP 404"):
            open_camera(server.url + "/nothing")
        with pytest.raises(CameraUnavailable, match="not an MJPEG stream"):
            open_camera(server.url + "/still.jpg")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CameraUnavailable, match="unreachable"):
        open_camera(f"http://127.0.0.1:{port}/stream.mjpg", timeout_s=1.0)


def test_oversized_mjpeg_frame_is_refused(mjpeg_frames: list[bytes]) -> None:
    with _Mjpeg(mjpeg_frames) as server:
        stream = MjpegStream(server.url + "/stream.mjpg", max_frame_bytes=1000)
        stream.open()
        try:
            with pytest.raises(CameraError, match="limit"):
                stream.grab()
        finally:
            stream.close()
