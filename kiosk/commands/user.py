"""``kiosk user``: create accounts (the first admin) and reset passwords; never a default one.

The password is asked for twice without echo (getpass), or read from the first line of
standard input with ``--password-stdin`` (for scripts); it is stored as an Argon2id hash.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from kiosk.config import Config
from kiosk.errors import AuthError, KioskError

ROLES = ("operator", "clinician", "admin")


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a user with a role")
    add.add_argument("name", help="user name (letters, digits, . or -)")
    add.add_argument("--role", choices=ROLES, required=True, help="what the user may do")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    reset = actions.add_parser("password", help="set a new password for a user")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    actions.add_parser("list", help="list users and their roles")


def run(args: argparse.Namespace, config: Config) -> int:
    """Create a user, reset a password, or list users."""
    from kiosk.store import Store

    store = Store.open(config)
    try:
        if args.action == "list":
            for user in store.list_users():
                print(f"{user.username}\t{user.role}")
            return 0
        name = _checked_name(args.name)
        password_hash = _new_password_hash(args.password_stdin)
        if args.action == "add":
            if store.get_user(name) is not None:
                raise KioskError(f"the user {name!r} already exists", code="user_exists")
            store.add_user(name, password_hash, args.role)
            print(f"created {args.role} {name}")
        else:
            store.set_password_hash(name, password_hash)
            print(f"password changed for {name}")
        return 0
    finally:
        store.close()


def _checked_name(name: str) -> str:
    """The user name in lower case, if it is made of letters, digits, . and -."""
    name = name.strip().lower()
    if not name or not name.isascii() or not name.replace(".", "").replace("-", "").isalnum():
        raise KioskError("user names are letters and digits (with . or -)", code="bad_user_name")
    return name


def _new_password_hash(from_stdin: bool) -> str:
    """Ask for the password (twice, no echo) or read it from stdin; return its Argon2id hash."""
    from web.passwords import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise AuthError("the two passwords differ", code="password_mismatch")
    return hash_password(password)
