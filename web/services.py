"""The objects made once at start-up that every request reaches: store, pipeline, camera."""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app

from hardware.camera import open_camera
from kiosk.config import Config
from kiosk.errors import KioskError
from kiosk.pipeline import Pipeline
from kiosk.store import Store
from kiosk.visit import LazyPipeline


class Services:
    """The store (opened now), the pipeline and the camera (opened when first needed)."""

    def __init__(
        self, config: Config, *, store: Store | None = None,
        pipeline: Pipeline | LazyPipeline | None = None, camera: Any = None
    ) -> None:
        self.config = config
        self.store = store if store is not None else Store.open(config)
        self.lazy_pipeline = pipeline if isinstance(pipeline, LazyPipeline) else LazyPipeline(
            config, self.store, pipeline)
        self._camera = camera
        self._lock = threading.Lock()

    @property
    def pipeline(self) -> Pipeline:
        """The screening pipeline, loaded (bundles verified, engines warmed) on first use."""
        return self.lazy_pipeline()

    @property
    def pipeline_loaded(self) -> bool:
        """True once the pipeline exists (health reports without forcing a load)."""
        return self.lazy_pipeline.loaded

    @property
    def camera(self) -> Any | None:
        """The configured camera, or None when ``KIOSK_CAMERA_URI`` is empty."""
        with self._lock:
            if self._camera is None and self.config.camera_uri:
                self._camera = open_camera(self.config.camera_uri)
            return self._camera

    @property
    def has_camera(self) -> bool:
        """True when a camera was given or one is configured."""
        return self._camera is not None or bool(self.config.camera_uri)


def services() -> Services:
    """The services of the running app."""
    found = current_app.extensions.get("kiosk")
    if not isinstance(found, Services):
        raise KioskError("the kiosk services are not set up", code="not_configured")
    return found
