"""kiosk.accounts: the one place for roles, user-name and password rules, hashing, new users."""

from __future__ import annotations

import pytest

from kiosk import accounts
from kiosk.accounts import AccountRuleError


class Book:
    """Users in memory, shaped like the Store's user methods."""

    def __init__(self) -> None:
        self.users: dict[str, tuple[str, str]] = {}
        self.added_by: list[str] = []

    def get_user(self, username: str) -> object | None:
        return self.users.get(username)

    def add_user(self, username: str, password_hash: str, role: str, *, actor: str) -> object:
        self.users[username] = (password_hash, role)
        self.added_by.append(actor)
        return self.users[username]

    def set_password_hash(self, username: str, password_hash: str) -> None:
        self.users[username] = (password_hash, self.users[username][1])


@pytest.mark.parametrize(("raw", "kept"), [(" Nurse.One-2 ", "nurse.one-2"), ("DR", "dr")])
def test_user_names_are_kept_in_lower_case(raw: str, kept: str) -> None:
    assert accounts.check_user_name(raw) == kept


@pytest.mark.parametrize("raw", ["", "  ", "two words", "rené", "a_b", "x@y", "..", "-"])
def test_other_user_names_are_refused(raw: str) -> None:
    with pytest.raises(AccountRuleError) as refused:
        accounts.check_user_name(raw)
    assert refused.value.code == "bad_user_name" and refused.value.http_status == 400


def test_a_user_is_created_once_with_a_hash_and_the_actor_named() -> None:
    book = Book()
    assert accounts.create_user(book, "Grace", "a long password", "clinician", actor="boss") == "grace"
    password_hash, role = book.users["grace"]
    assert role == "clinician" and password_hash.startswith("$argon2id$")
    assert accounts.verify_password(password_hash, "a long password")
    assert not accounts.verify_password(password_hash, "a long passworD")
    assert not accounts.needs_rehash(password_hash) and accounts.needs_rehash("not a hash")
    assert book.added_by == ["boss"]
    for name, password, role, code in (("grace", "a long password", "operator", "user_exists"),
                                       ("tom", "short", "operator", "weak_password"),
                                       ("tom", "a long password", "superuser", "bad_role")):
        with pytest.raises(AccountRuleError) as refused:
            accounts.create_user(book, name, password, role, actor="boss")
        assert refused.value.code == code
    assert set(book.users) == {"grace"} and book.added_by == ["boss"]


def test_a_new_password_replaces_the_hash() -> None:
    book = Book()
    accounts.create_user(book, "nurse", "first long password", "operator", actor="system")
    accounts.set_password(book, "Nurse", "second long password")
    assert accounts.verify_password(book.users["nurse"][0], "second long password")
    with pytest.raises(AccountRuleError):
        accounts.set_password(book, "nurse", "short")
