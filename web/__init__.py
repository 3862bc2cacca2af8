"""The kiosk web application: log-in, patients and capture, results, worklist, sync, admin, API.

``create_app`` builds the Flask app around objects made once at start-up (the store, the
screening pipeline, the camera); blueprints reach them through :func:`web.services.services`.
"""

from __future__ import annotations

from web.app import create_app

__all__ = ["create_app"]
