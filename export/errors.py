"""Errors of the offline tooling, in the kiosk's one hierarchy."""

from __future__ import annotations

from kiosk.errors import KioskError


class ExportError(KioskError):
    """Exporting, checking, quantising or signing a model failed; the bundle is not written."""

    code = "export_error"
