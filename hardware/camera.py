"""Cameras opened by URI, so one capture loop runs on a laptop, in CI and on the device.

``open_camera(uri)`` gives a :class:`Camera` whose ``read()`` returns the newest frame as an RGB
uint8 array and whose ``close()`` releases the device. Supported URIs:

- ``v4l2:///dev/video0``: a USB camera through OpenCV's V4L2 back-end;
- ``csi://0``: a Jetson CSI camera through GStreamer (``?width=&height=&fps=``);
- ``file:///path/photo.jpg``: one image, returned on every read (an uploaded still);
- ``file:///path/folder/`` or ``file:///path/frame_%04d.png``: an image sequence, looped;
- ``file:///path/clip.avi``: a video clip, looped;
- ``http://host/stream.mjpg``: an MJPEG stream (``multipart/x-mixed-replace``), as sent by IP
  cameras and ``mjpg-streamer``.

Live sources (V4L2, CSI, HTTP) are read by a background thread that keeps only the newest frame, so
the frame a nurse captures is the one on screen, not one queued seconds ago.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import cv2
import numpy as np

from hardware.mjpeg import MjpegStream
from hardware.sources import (
    Camera,
    CameraDisconnected,
    CameraError,
    CameraUnavailable,
    CameraURIError,
    FrameSource,
)

LOG = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
CLIP_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".mjpg", ".mjpeg", ".webm")


def open_camera(uri: str, *, timeout_s: float = 5.0) -> Camera:
    """Open the camera named by ``uri`` (see the module docstring for the schemes)."""
    parts = urlsplit(uri)
    if parts.scheme == "v4l2":
        return LiveCamera(uri, _v4l2_source(parts), timeout_s=timeout_s)
    if parts.scheme == "csi":
        return LiveCamera(uri, _csi_source(parts), timeout_s=timeout_s)
    if parts.scheme in ("http", "https"):
        return LiveCamera(uri, MjpegStream(uri, timeout_s=timeout_s), timeout_s=timeout_s)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise CameraURIError(f"{uri!r}: a file URI needs an absolute path, file:///folder/file")
        return _open_file(uri, _file_path(parts.path))
    raise CameraURIError(
        f"unknown camera URI {uri!r}: use v4l2:///dev/videoN, csi://N, file:///path or "
        "http://host/stream"
    )


def _file_path(raw: str) -> Path:
    """The path of a file URI; a bare printf pattern (``%04d``, not ``%2504d``) is kept as typed."""
    path = unquote(raw)
    if any(ord(char) < 32 for char in path):
        return Path(raw)
    return Path(path)


def _open_file(uri: str, path: Path) -> Camera:
    """A still image, an image sequence or a clip, chosen by what the path is."""
    if "%" in path.name:
        return SequenceCamera(uri, _pattern_files(path))
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return SequenceCamera(uri, files)
    if not path.is_file():
        raise CameraUnavailable(f"camera file {path} does not exist", retryable=False)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return StillCamera(uri, path)
    if path.suffix.lower() in CLIP_SUFFIXES:
        return ClipCamera(uri, path)
    raise CameraURIError(f"{path.name}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a clip")


def _pattern_files(pattern: Path) -> list[Path]:
    """The files of a printf-style sequence (``frame_%04d.png``), from index 0 or 1 upwards."""
    files: list[Path] = []
    for index in range(0, 1_000_000):
        candidate = pattern.with_name(pattern.name % index)
        if candidate.is_file():
            files.append(candidate)
        elif index > 0 or files:
            break
    return files


def _read_image_file(path: Path) -> np.ndarray:
    """Decode one image file to RGB uint8, or raise :class:`CameraDisconnected`."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CameraDisconnected(f"cannot decode camera frame {path.name}", retryable=False)
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


class StillCamera:
    """One image file, returned on every read."""

    def __init__(self, uri: str, path: Path) -> None:
        self.uri = uri
        self._frame = _read_image_file(path)

    def read(self) -> np.ndarray:
        """A copy of the image."""
        return self._frame.copy()

    def close(self) -> None:
        """Nothing to release."""


class SequenceCamera:
    """Image files read in order, starting again after the last one."""

    def __init__(self, uri: str, files: list[Path]) -> None:
        if not files:
            raise CameraUnavailable(f"no image files for {uri}", retryable=False)
        self.uri = uri
        self._files = files
        self._next = 0
        self._lock = threading.Lock()  # web requests read from several threads

    def read(self) -> np.ndarray:
        """The next image of the sequence."""
        with self._lock:
            path = self._files[self._next]
            self._next = (self._next + 1) % len(self._files)
        return _read_image_file(path)

    def close(self) -> None:
        """Nothing to release."""


class ClipCamera:
    """A video file read frame by frame, rewound at its end."""

    def __init__(self, uri: str, path: Path) -> None:
        self.uri = uri
        self._lock = threading.Lock()  # VideoCapture is not thread-safe
        self._capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise CameraUnavailable(f"cannot open video clip {path.name}", retryable=False)

    def read(self) -> np.ndarray:
        """The next frame; after the last one, the first again."""
        with self._lock:
            ok, bgr = self._capture.read()
            if not ok:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._capture.read()
        if not ok or bgr is None:
            raise CameraDisconnected(f"no frame from {self.uri}", retryable=False)
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        """Release the file."""
        with self._lock:
            self._capture.release()


class _OpenCvSource:
    """A camera OpenCV opens itself (V4L2 device, GStreamer pipeline), one-frame buffer."""

    def __init__(self, target: str, api: int, label: str, hint: str) -> None:
        self.target, self.api, self.label, self.hint = target, api, label, hint
        self._capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        """Open the camera."""
        if self.api == cv2.CAP_V4L2 and not Path(self.target).exists():
            raise CameraUnavailable(
                f"no camera at {self.target}: check the USB cable and that the camera is powered",
                retryable=True,
            )
        capture = cv2.VideoCapture(self.target, self.api)
        if not capture.isOpened():
            capture.release()
            raise CameraUnavailable(f"cannot open {self.label}: {self.hint}")
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture

    def grab(self) -> np.ndarray:
        """The next frame from the driver."""
        if self._capture is None:
            raise CameraDisconnected(f"{self.label} is not open")
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            raise CameraDisconnected(f"{self.label} stopped sending frames: check the cable")
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        """Release the device."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _v4l2_source(parts: SplitResult) -> _OpenCvSource:
    """``v4l2:///dev/video0`` (also ``v4l2://0``): a USB camera through V4L2."""
    device = unquote(parts.netloc + parts.path)
    if device.isdigit():
        device = f"/dev/video{device}"
    elif not device.startswith("/"):
        device = "/" + device
    return _OpenCvSource(device, cv2.CAP_V4L2, device, "is another program using it, or is "
                         "the kiosk user missing from the 'video' group?")


def _csi_source(parts: SplitResult) -> _OpenCvSource:
    """``csi://0``: a Jetson CSI camera through GStreamer's nvarguscamerasrc (JetPack)."""
    sensor = (parts.netloc or parts.path.strip("/")) or "0"
    if not sensor.isdigit():
        raise CameraURIError(f"csi://{sensor}: the sensor id must be a number, e.g. csi://0")
    query = parse_qs(parts.query)
    width, height = query.get("width", ["1920"])[0], query.get("height", ["1080"])[0]
    fps = query.get("fps", ["30"])[0]
    if not (width.isdigit() and height.isdigit() and fps.isdigit()):
        raise CameraURIError(f"csi://{sensor}: width, height and fps must be numbers")
    pipeline = (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},"
        f"height={height},framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )
    return _OpenCvSource(pipeline, cv2.CAP_GSTREAMER, f"CSI camera {sensor}",
                         "needs JetPack's nvarguscamerasrc and an OpenCV built with GStreamer "
                         "(check the ribbon cable and 'nvgstcapture-1.0')")


class LiveCamera:
    """A live source read continuously by a thread that keeps only the newest frame.

    When the source fails, the next ``read`` raises the failure once; later reads reconnect
    (at most every ``reconnect_s``), so a camera plugged back in works without a restart.
    """

    def __init__(self, uri: str, source: FrameSource, *, timeout_s: float = 5.0,
                 reconnect_s: float = 2.0) -> None:
        self.uri = uri
        self._source = source
        self._timeout_s = timeout_s
        self._reconnect_s = reconnect_s
        self._lock = threading.Condition()
        self._frame: np.ndarray | None = None
        self._serial = 0
        self._delivered = 0
        self._failure: CameraError | None = None
        self._reported = False
        self._last_attempt = time.monotonic()
        self._stopping = threading.Event()
        source.open()
        self._thread = self._start_pump()

    def _start_pump(self) -> threading.Thread:
        """Start the reading thread."""
        thread = threading.Thread(target=self._pump, name=f"camera {self.uri}", daemon=True)
        thread.start()
        return thread

    def _pump(self) -> None:
        """Read frames until closed or the source fails; remember the failure for ``read``."""
        try:
            while not self._stopping.is_set():
                frame = self._source.grab()
                with self._lock:
                    self._frame, self._serial = frame, self._serial + 1
                    self._lock.notify_all()
        except CameraError as exc:
            if not self._stopping.is_set():
                LOG.warning("camera %s failed: %s", self.uri, exc.message)
            with self._lock:
                self._failure = exc
                self._lock.notify_all()

    def _reconnect(self) -> None:
        """Reopen a failed source (lock held); raise the failure when it is too soon or fails."""
        assert self._failure is not None
        if not self._reported or time.monotonic() - self._last_attempt < self._reconnect_s:
            self._reported = True
            raise self._failure
        self._last_attempt = time.monotonic()
        self._thread.join(timeout=self._timeout_s)
        self._source.close()
        try:
            self._source.open()
        except CameraError as exc:
            self._failure = exc
            raise
        LOG.info("camera %s reconnected", self.uri)
        self._failure, self._reported, self._frame = None, False, None
        self._delivered = self._serial
        self._thread = self._start_pump()

    def read(self) -> np.ndarray:
        """The newest frame not yet returned, waiting up to the timeout for one."""
        with self._lock:
            if self._failure is not None:
                self._reconnect()
            fresh = self._lock.wait_for(
                lambda: self._serial > self._delivered or self._failure is not None,
                timeout=self._timeout_s,
            )
            if self._failure is not None:
                self._reported = True
                raise self._failure
            if not fresh or self._frame is None:
                raise CameraDisconnected(
                    f"no frame from {self.uri} for {self._timeout_s:g} s: check the camera"
                )
            self._delivered = self._serial
            return self._frame.copy()

    def close(self) -> None:
        """Stop the reading thread, then release the source (which unblocks a stalled read)."""
        self._stopping.set()
        self._thread.join(timeout=self._timeout_s)
        self._source.close()
        self._thread.join(timeout=self._timeout_s)
