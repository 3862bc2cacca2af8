"""What every camera source shares: the Camera and FrameSource protocols and the camera errors.

Kept apart from ``hardware.camera`` (which opens sources by URI) so that a source such as
``hardware.mjpeg`` can raise these errors without importing the module that imports it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from kiosk.errors import KioskError


class CameraError(KioskError):
    """The camera cannot give a frame; the message says what to check."""

    code = "camera_error"
    http_status = 503
    retryable = True


class CameraURIError(CameraError):
    """The camera URI is malformed or names an unknown kind of source."""

    code = "camera_bad_uri"
    retryable = False


class CameraUnavailable(CameraError):
    """The camera could not be opened (unplugged, busy, or the stream is down)."""

    code = "camera_unavailable"


class CameraDisconnected(CameraError):
    """The camera was open but stopped sending frames."""

    code = "camera_disconnected"


class Camera(Protocol):
    """A source of RGB frames."""

    uri: str

    def read(self) -> np.ndarray:
        """The newest frame, RGB uint8 (H, W, 3); raises a :class:`CameraError`."""
        ...

    def close(self) -> None:
        """Release the device or stream; safe to call twice."""
        ...


class FrameSource(Protocol):
    """A blocking source of frames for :class:`LiveCamera`."""

    def open(self) -> None:
        """Connect; raise :class:`CameraUnavailable` when that fails."""
        ...

    def grab(self) -> np.ndarray:
        """Block until the next frame (RGB); raise :class:`CameraDisconnected` when it stops."""
        ...

    def close(self) -> None:
        """Disconnect."""
        ...
