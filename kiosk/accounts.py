"""Accounts: the roles, the rules for user names and passwords, Argon2id hashes, new users.

The ``kiosk user`` command and the admin page both create users through :func:`create_user`, so
they refuse the same names and passwords and write the same single audit entry. No Flask and no
database here: the store is passed in, and the store itself imports ``ROLES`` from this module.
"""

from __future__ import annotations

from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from kiosk.errors import AuthError

#: What a user may do, from least to most: screen, sign off, administer.
ROLES = ("operator", "clinician", "admin")
#: Shortest password accepted for any account.
MIN_LENGTH = 10

_HASHER = PasswordHasher()


class AccountRuleError(AuthError):
    """A new user name, role or password does not meet the rules (a form error, not a failed log-in)."""

    code = "bad_account"
    http_status = 400


class UserBook(Protocol):
    """Where users are kept (the Store)."""

    def get_user(self, username: str) -> object | None: ...

    def add_user(self, username: str, password_hash: str, role: str, *, actor: str) -> object: ...

    def set_password_hash(self, username: str, password_hash: str) -> None: ...


def check_user_name(name: str) -> str:
    """The user name in lower case, if it is made of letters, digits, . and -."""
    name = name.strip().lower()
    if not name or not name.isascii() or not name.replace(".", "").replace("-", "").isalnum():
        raise AccountRuleError("User names are letters and digits (with . or -).",
                               code="bad_user_name")
    return name


def check_role(role: str) -> str:
    """The role if it is one of operator, clinician, admin; AccountRuleError otherwise."""
    if role not in ROLES:
        raise AccountRuleError(f"Unknown role {role!r}; use one of {', '.join(ROLES)}.", code="bad_role")
    return role


def check_password_rules(password: str) -> None:
    """Raise AccountRuleError when the password is too weak to accept."""
    if len(password) < MIN_LENGTH:
        raise AccountRuleError(
            f"The password must have at least {MIN_LENGTH} characters.", code="weak_password"
        )


def hash_password(password: str) -> str:
    """An Argon2id hash of the password, refusing one that is too short."""
    check_password_rules(password)
    return _HASHER.hash(password)


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


def create_user(users: UserBook, name: str, password: str, role: str, *, actor: str) -> str:
    """Check the name, role and password, then add the user (one audit entry, by ``actor``).

    Returns the user name as stored (lower case).
    """
    name = check_user_name(name)
    check_role(role)
    password_hash = hash_password(password)
    if users.get_user(name) is not None:
        raise AccountRuleError(f"The user {name} already exists.", code="user_exists")
    users.add_user(name, password_hash, role, actor=actor)
    return name


def set_password(users: UserBook, name: str, password: str) -> None:
    """Give an existing user a new password (NotFoundError from the store for an unknown user)."""
    users.set_password_hash(check_user_name(name), hash_password(password))
