"""The one place that maps errors to HTTP answers: JSON for the API, a page for people."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from kiosk.errors import BundleError, KioskError
from web.security import is_api_request

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the error handlers."""
    app.register_error_handler(KioskError, _kiosk_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)


def answer(code: str, message: str, status: int) -> ResponseReturnValue:
    """An error as JSON (API) or as the error page (people)."""
    if is_api_request():
        return jsonify({"code": code, "message": message}), status
    return render_template("error.html", message=message, code=code, status=status), status


def _kiosk_error(exc: KioskError) -> ResponseReturnValue:
    # no usable model bundle: the kiosk cannot screen now, which is 503 to a client
    status = 503 if isinstance(exc, BundleError) else exc.http_status
    if status >= 500:
        log.warning("request failed: %s [%s]", exc.message, exc.code)
    return answer(exc.code, exc.message, status)


def _csrf_error(exc: CSRFError) -> ResponseReturnValue:
    message = "This form has expired or was not sent from the kiosk. Go back, reload and try again."
    return answer("csrf_failed", message, 400)


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    messages = {
        404: "This page does not exist.",
        405: "This action is not allowed here.",
        413: "The file is too large to screen.",
    }
    message = messages.get(status, exc.description or exc.name)
    return answer((exc.name or "error").lower().replace(" ", "_"), message, status)
