"""``kiosk user``: the first admin from the command line (no default password), then log-in."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from browser.web_support import add_user, login, make_app, page_token, web_config

from kiosk.accounts import verify_password
from kiosk.cli import main
from kiosk.store import Store


@pytest.fixture
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KIOSK_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _store(tmp_path: Path) -> Store:
    return Store.open(web_config(tmp_path))


def test_first_admin_from_stdin_can_log_in(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty, _ = make_app(web_config(data_env), store=_store(data_env))
    assert "kiosk user add --role admin" in empty.test_client().get("/login").get_data(as_text=True)
    monkeypatch.setattr("sys.stdin", io.StringIO("a good long password\n"))
    assert main(["user", "add", "--role", "admin", "Matron", "--password-stdin"]) == 0
    store = _store(data_env)
    user = store.get_user("matron")
    assert user is not None and user.role == "admin"
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, "a good long password")
    app, _ = make_app(web_config(data_env), store=store)
    client = app.test_client()
    assert login(client, "matron", "a good long password").status_code == 302
    assert client.get("/admin/").status_code == 200
    assert "kiosk user add" not in app.test_client().get("/login").get_data(as_text=True)


def test_password_is_asked_twice_without_echo(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["first long password", "other long password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["user", "add", "--role", "clinician", "doc"]) == 2  # they differ
    assert _store(data_env).get_user("doc") is None
    answers = iter(["same long password", "same long password"])
    assert main(["user", "add", "--role", "clinician", "doc"]) == 0
    assert _store(data_env).get_user("doc").role == "clinician"


def test_short_passwords_roles_and_duplicates_are_refused(
    data_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "add", "--role", "admin", "boss", "--password-stdin"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["user", "add", "--role", "superuser", "boss", "--password-stdin"])
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough password\n"))
    assert main(["user", "add", "--role", "admin", "boss", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough password\n"))
    assert main(["user", "add", "--role", "admin", "boss", "--password-stdin"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_password_reset_changes_the_hash(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("first long password\n"))
    main(["user", "add", "--role", "operator", "nurse", "--password-stdin"])
    monkeypatch.setattr("sys.stdin", io.StringIO("second long password\n"))
    assert main(["user", "password", "nurse", "--password-stdin"]) == 0
    user = _store(data_env).get_user("nurse")
    assert verify_password(user.password_hash, "second long password")
    assert not verify_password(user.password_hash, "first long password")


def test_admin_page_creates_a_user_with_one_audit_entry_naming_the_admin(tmp_path: Path) -> None:
    app, store = make_app(web_config(tmp_path))
    add_user(store, "boss", "admin")
    client = app.test_client()
    login(client, "boss")
    token = page_token(client, "/admin/")
    before = len(store.audit_entries(limit=1000))
    added = client.post("/admin/users", data={"username": " Grace ", "role": "clinician",
                                              "password": "a long password", "csrf_token": token})
    assert added.status_code == 302 and store.get_user("grace").role == "clinician"
    entries = store.audit_entries(limit=1000)  # newest first
    new = entries[: len(entries) - before]
    assert [(e.actor, e.action, e.detail) for e in new] == [("boss", "user.add", "grace as clinician")]
    for form, code in (({"username": "grace", "role": "operator"}, "user_exists"),
                       ({"username": "gr ace", "role": "operator"}, "bad_user_name"),
                       ({"username": "tom", "role": "superuser"}, "bad_role")):
        refused = client.post("/admin/users", data={**form, "password": "a long password",
                                                    "csrf_token": token})
        assert refused.status_code == 400 and code in refused.get_data(as_text=True)
    assert store.get_user("tom") is None and len(store.audit_entries(limit=1000)) == before + 1
