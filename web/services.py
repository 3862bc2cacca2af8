"""The objects made once at start-up that every request reaches: store, pipeline, camera."""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app

from kiosk.config import Config
from kiosk.errors import KioskError


class Services:
    """The store (opened now), the pipeline and the camera (opened when first needed)."""

    def __init__(
        self, config: Config, *, store: Any = None, pipeline: Any = None, camera: Any = None
    ) -> None:
        self.config = config
        self.store = store if store is not None else _open_store(config)
        self._pipeline = pipeline
        self._camera = camera
        self._lock = threading.Lock()
        if pipeline is not None:
            apply_prevalence(self.store, pipeline)

    @property
    def pipeline(self) -> Any:
        """The screening pipeline, loaded (bundles verified, engines warmed) on first use."""
        with self._lock:
            if self._pipeline is None:
                from kiosk.pipeline import Pipeline

                self._pipeline = Pipeline.from_config(self.config)
                apply_prevalence(self.store, self._pipeline)
            return self._pipeline

    @property
    def pipeline_loaded(self) -> bool:
        """True once the pipeline exists (health reports without forcing a load)."""
        return self._pipeline is not None

    @property
    def camera(self) -> Any | None:
        """The configured camera, or None when ``KIOSK_CAMERA_URI`` is empty."""
        with self._lock:
            if self._camera is None and self.config.camera_uri:
                from hardware.camera import open_camera

                self._camera = open_camera(self.config.camera_uri)
            return self._camera

    @property
    def has_camera(self) -> bool:
        """True when a camera was given or one is configured."""
        return self._camera is not None or bool(self.config.camera_uri)


def prevalence_setting(task: str) -> str:
    """The store/config setting name of a task's prevalence: fundus-dr -> prevalence_fundus_dr."""
    return "prevalence_" + task.replace("-", "_")


def apply_prevalence(store: Any, pipeline: Any) -> None:
    """Give the pipeline the prevalence the admin set for each loaded task (if any)."""
    for task in pipeline.tasks():
        value = store.get_setting(prevalence_setting(task))
        if value is not None:
            pipeline.set_prevalence(task, float(value))


def _open_store(config: Config) -> Any:
    """Open the SQLite store named by the configuration."""
    from kiosk.store import Store

    return Store.open(config)


def services() -> Services:
    """The services of the running app."""
    found = current_app.extensions.get("kiosk")
    if not isinstance(found, Services):
        raise KioskError("the kiosk services are not set up", code="not_configured")
    return found
