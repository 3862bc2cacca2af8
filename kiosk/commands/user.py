"""``kiosk user``: create accounts (the first admin) and reset passwords; never a default one.

The password is asked for twice without echo (getpass), or read from the first line of
standard input with ``--password-stdin`` (for scripts); it is stored as an Argon2id hash.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from kiosk import accounts
from kiosk.config import Config
from kiosk.errors import AuthError


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a user with a role")
    add.add_argument("name", help="user name (letters, digits, . or -)")
    add.add_argument("--role", choices=accounts.ROLES, required=True, help="what the user may do")
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
        name = accounts.check_user_name(args.name)  # before asking for a password
        password = _new_password(args.password_stdin)
        if args.action == "add":
            accounts.create_user(store, name, password, args.role, actor="system")
            print(f"created {args.role} {name}")
        else:
            accounts.set_password(store, name, password)
            print(f"password changed for {name}")
        return 0
    finally:
        store.close()


def _new_password(from_stdin: bool) -> str:
    """Ask for the password (twice, no echo) or read the first line of stdin."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise AuthError("the two passwords differ", code="password_mismatch")
    return password
