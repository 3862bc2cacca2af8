"""The one place that maps errors to HTTP answers: JSON for the API, a page for people."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from kiosk.errors import BundleError, KioskError
from web import messages
from web.i18n import N_
from web.security import is_api_request

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the error handlers."""
    app.register_error_handler(KioskError, _kiosk_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)


def answer(code: str, message: str, status: int, detail: str = "") -> ResponseReturnValue:
    """An error as JSON (API: the kiosk's English ``message``, and ``words`` in the reader's
    language for a page's script to show) or as the error page (people; the kiosk's own
    technical words, when they differ, under the details for the IT contact)."""
    if is_api_request():
        english = detail or message
        return jsonify({"code": code, "message": english, "words": message}), status
    return render_template("error.html", message=message, code=code, status=status,
                           detail=detail if detail != message else ""), status


def _kiosk_error(exc: KioskError) -> ResponseReturnValue:
    # no usable model bundle: the kiosk cannot screen now, which is 503 to a client
    status = 503 if isinstance(exc, BundleError) else exc.http_status
    if status >= 500:
        log.warning("request failed: %s [%s]", exc.message, exc.code)
    return answer(exc.code, shown(exc), status, exc.message)


def shown(exc: KioskError) -> str:
    """What a person reads: web/'s own form errors are worded for them already; the kiosk's
    (English, technical) are said by their code in the reader's language."""
    if type(exc).__module__.startswith("web."):
        return exc.message
    return messages.error(exc.code, exc.message, exc.params)


def _csrf_error(exc: CSRFError) -> ResponseReturnValue:
    message = _("This form has expired or was not sent from the kiosk. Go back, reload and try "
                "again.")
    return answer("csrf_failed", message, 400)


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    said = {
        404: N_("This page does not exist."),
        405: N_("This action is not allowed here."),
        413: N_("The file is too large to screen."),
    }
    message = _(said[status]) if status in said else (exc.description or exc.name)
    return answer((exc.name or "error").lower().replace(" ", "_"), message, status)
