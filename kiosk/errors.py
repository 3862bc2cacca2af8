"""One error hierarchy for the whole kiosk.

Every error carries a stable machine-readable ``code``, a message a person can act on, the HTTP
status it maps to, and whether retrying the same operation later may succeed. ``params`` name
what the message is about (a file, an eye), so web/ can say it in the reader's language by the
code; the message itself stays English (logs, the API, what is stored). Mapping to HTTP,
JSON, HTML and DICOM statuses happens in one place per interface, never by catching ``Exception``.
"""

from __future__ import annotations


class KioskError(Exception):
    """Base of every error the kiosk raises on purpose."""

    code = "kiosk_error"
    http_status = 500
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None,
                 params: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.params = dict(params or {})
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict[str, str]:
        """The error as the JSON object every interface returns."""
        return {"code": self.code, "message": self.message}


class ConfigError(KioskError):
    """A setting is missing, malformed or inconsistent."""

    code = "config_error"


class IntakeError(KioskError):
    """The bytes offered are not an image the kiosk can screen (never retryable as is)."""

    code = "intake_error"
    http_status = 422


class QualityError(KioskError):
    """An image could not be assessed for gradability."""

    code = "quality_error"
    http_status = 422


class BundleError(KioskError):
    """A model bundle is unsigned, tampered with, or does not match what the code expects."""

    code = "bundle_error"


class EngineError(KioskError):
    """An inference back-end could not be loaded or failed to run."""

    code = "engine_error"
    http_status = 503


class StoreError(KioskError):
    """The local store could not save or read something."""

    code = "store_error"
    http_status = 503


class DiskFullError(StoreError):
    """Not enough free disk space to save a capture safely."""

    code = "disk_full"
    http_status = 507


class SignOffError(KioskError):
    """A clinician's sign-off that breaks the rule (kiosk/store/records.py: ``check_sign_off``)."""

    code = "bad_sign_off"
    http_status = 400


class AlreadySignedError(SignOffError):
    """A second sign-off of a screening: a signed result is never rewritten."""

    code = "already_signed"
    http_status = 409


class NotFoundError(KioskError):
    """The patient, screening or item asked for does not exist."""

    code = "not_found"
    http_status = 404


class SyncError(KioskError):
    """A destination refused or could not be reached; ``retryable`` says which."""

    code = "sync_error"
    retryable = True


class AuthError(KioskError):
    """Log-in failed, the session expired, or the role does not allow the action."""

    code = "auth_error"
    http_status = 401
