"""The app factory: configuration, security, blueprints, error pages."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from typing import Any

from flask import Flask

from kiosk.config import Config, load_config
from web import (
    admin,
    api,
    auth,
    errors,
    i18n,
    models_admin,
    monitoring,
    patients,
    results,
    security,
    sync,
    validation,
    words,
    worklist,
)
from web.script_words import script_words
from web.services import Services


def create_app(
    config: Config | None = None,
    *,
    store: Any | None = None,
    pipeline: Any | None = None,
    camera: Any | None = None,
) -> Flask:
    """Build the kiosk web app around a store, a screening pipeline and an optional camera.

    Whatever is not passed is made from ``config``: the store is opened now, the pipeline and
    the camera when first needed (so a log-in page answers while the models load). ``pipeline``
    may be a loaded Pipeline or a ``kiosk.visit.LazyPipeline`` shared with the DICOM listener.
    """
    config = config or load_config()
    app = Flask(__name__)
    app.config.update(_flask_settings(config))
    app.extensions["kiosk"] = Services(config, store=store, pipeline=pipeline, camera=camera)
    i18n.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    _register_blueprints(app)
    app.jinja_env.globals["clinic_name"] = config.clinic_name
    app.jinja_env.globals["idle_seconds"] = config.session_timeout_min * 60
    words.register(app.jinja_env)
    app.jinja_env.globals["script_words"] = script_words
    return app


def _flask_settings(config: Config) -> dict[str, Any]:
    """Flask's own settings derived from the kiosk configuration."""
    # several images per capture, each up to max_upload_mb; intake checks each one again
    return {
        "SECRET_KEY": config.secret_key or _stored_secret(config),
        "SESSION_COOKIE_SECURE": config.secure_cookies,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Strict",
        "SESSION_COOKIE_NAME": "kiosk_session",
        "REMEMBER_COOKIE_SECURE": config.secure_cookies,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "PERMANENT_SESSION_LIFETIME": timedelta(minutes=config.session_timeout_min),
        # The cookie is sent back only when the session changes (every page and API call notes
        # the time it was seen): a stylesheet or icon fetched with an older cookie, and answered
        # after a newer one was set (a language chosen, a log-in), must not put the old one back.
        "SESSION_REFRESH_EACH_REQUEST": False,
        "MAX_CONTENT_LENGTH": config.max_upload_mb * 2**20 * 4,
        "WTF_CSRF_CHECK_DEFAULT": False,  # checked in security.before_request (bearer exempt)
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "WTF_CSRF_HEADERS": ["X-CSRFToken", "X-CSRF-Token"],
    }


def _stored_secret(config: Config) -> str:
    """The session signing key kept in the data folder, made on first start."""
    path = config.data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _register_blueprints(app: Flask) -> None:
    """One blueprint per screen area."""
    for module in (auth, patients, results, worklist, sync, admin, models_admin, validation,
                   monitoring, api):
        app.register_blueprint(module.bp)
