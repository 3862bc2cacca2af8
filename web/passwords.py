"""Password hashing with Argon2id (no Flask here, so the ``kiosk user`` command can use it)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from kiosk.errors import AuthError

_HASHER = PasswordHasher()

#: Shortest password accepted for any account.
MIN_LENGTH = 10

ROLES = ("operator", "clinician", "admin")


def hash_password(password: str) -> str:
    """An Argon2id hash of the password, refusing one that is too short."""
    check_password_rules(password)
    return _HASHER.hash(password)


class PasswordRuleError(AuthError):
    """A new password or role does not meet the rules (a form error, not a failed log-in)."""

    code = "bad_password"
    http_status = 400


def check_password_rules(password: str) -> None:
    """Raise AuthError when the password is too weak to accept."""
    if len(password) < MIN_LENGTH:
        raise PasswordRuleError(
            f"The password must have at least {MIN_LENGTH} characters.", code="weak_password"
        )


def verify_password(password_hash: str, password: str) -> bool:
    """True when the password matches the stored hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def check_role(role: str) -> str:
    """The role if it is one of operator, clinician, admin; AuthError otherwise."""
    if role not in ROLES:
        raise PasswordRuleError(f"Unknown role {role!r}; use one of {', '.join(ROLES)}.", code="bad_role")
    return role
