"""Log-in, roles, throttling, inactivity log-off, CSRF, cookies and security headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser.web_support import PASSWORD, add_user, csrf_from, login, make_app, page_token, web_config
from flask import Flask
from flask.testing import FlaskClient

from kiosk.store import Store
from web.security import LoginThrottle, api_token


@pytest.fixture
def app_store(tmp_path: Path) -> tuple[Flask, Store]:
    app, store = make_app(web_config(tmp_path))
    add_user(store, "nurse", "operator")
    add_user(store, "doctor", "clinician")
    add_user(store, "boss", "admin")
    return app, store


@pytest.fixture
def client(app_store: tuple[Flask, Store]) -> FlaskClient:
    return app_store[0].test_client()


def test_pages_need_a_log_in_and_come_back_after(client: FlaskClient) -> None:
    response = client.get("/worklist")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/worklist"
    page = client.get("/login?next=/worklist")
    answer = client.post("/login", data={"username": "nurse", "password": PASSWORD,
                                         "next": "/worklist",
                                         "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert answer.status_code == 302 and answer.headers["Location"] == "/worklist"
    assert client.get("/worklist").status_code == 200


def test_next_cannot_leave_the_site(client: FlaskClient) -> None:
    page = client.get("/login")
    answer = client.post("/login", data={"username": "nurse", "password": PASSWORD,
                                         "next": "//evil.example/x",
                                         "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert answer.headers["Location"] == "/"


def test_wrong_password_is_refused_and_audited(
    client: FlaskClient, app_store: tuple[Flask, Store]
) -> None:
    response = login(client, "nurse", "wrong password!")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)
    assert client.get("/worklist").status_code == 302
    assert [e.action for e in app_store[1].audit_entries("login_failed")] == ["login_failed"]


def test_failed_log_ins_are_throttled_even_for_the_right_password(client: FlaskClient) -> None:
    for _ in range(5):
        assert login(client, "nurse", "wrong password!").status_code == 401
    locked = login(client, "nurse")
    assert locked.status_code == 429
    assert "Too many failed log-ins" in locked.get_data(as_text=True)
    # another user on the same kiosk can still log in
    assert login(client, "doctor").status_code == 302


def test_a_restart_does_not_unlock_a_locked_user(tmp_path: Path) -> None:
    """The counts live in the store: a new app (a restarted kiosk) on the same data still refuses."""
    app, store = make_app(web_config(tmp_path))
    add_user(store, "nurse", "operator")
    client = app.test_client()
    for _ in range(5):
        assert login(client, "nurse", "wrong password!").status_code == 401
    store.close()
    again, _ = make_app(web_config(tmp_path))
    locked = login(again.test_client(), "nurse")
    assert locked.status_code == 429 and "Too many failed log-ins" in locked.get_data(as_text=True)


def test_throttle_unlocks_after_the_lockout() -> None:
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(5):
        throttle.failed("user:a")
    assert throttle.wait_s("user:a") == pytest.approx(300)
    now[0] += 301
    assert throttle.wait_s("user:a") == 0


def test_the_kiosk_address_locks_only_after_many_names_fail() -> None:
    throttle = LoginThrottle(clock=lambda: 0.0)
    for n in range(19):
        throttle.failed(f"user:{n}", "addr:10.0.0.5")
    assert throttle.wait_s("user:new", "addr:10.0.0.5") == 0
    throttle.failed("user:19", "addr:10.0.0.5")
    assert throttle.wait_s("user:new", "addr:10.0.0.5") > 0
    throttle.succeeded("user:3")
    assert throttle.wait_s("user:new", "addr:10.0.0.6") == 0


def test_inactivity_logs_off(client: FlaskClient) -> None:
    login(client, "nurse")
    assert client.get("/worklist").status_code == 200
    with client.session_transaction() as session:
        session["seen"] = session["seen"] - 16 * 60  # default timeout is 15 minutes
    response = client.get("/worklist")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert client.get("/worklist").status_code == 302  # really logged off
    assert "without activity" in client.get("/login").get_data(as_text=True)


def test_a_burst_of_requests_sends_no_cookie_until_the_seen_time_is_due(client: FlaskClient) -> None:
    """Only a request that changes the session sends the cookie back: within a burst none does,
    so a late answer cannot restore an older session (a language just chosen, say)."""
    login(client, "nurse")
    client.get("/worklist")  # the first page after log-in makes the session's form token
    for path in ("/worklist", "/", "/patients", "/worklist"):
        response = client.get(path)
        assert response.status_code == 200 and "Set-Cookie" not in response.headers, path
    with client.session_transaction() as session:
        session["seen"] = session["seen"] - 31  # half a minute later
        before = session["seen"]
    response = client.get("/worklist")
    assert "kiosk_session=" in response.headers.get("Set-Cookie", "")  # the expiry slides on
    with client.session_transaction() as session:
        assert session["seen"] > before + 30


def test_timeout_setting_is_used(tmp_path: Path) -> None:
    app, store = make_app(web_config(tmp_path, session_timeout_min=3))
    add_user(store, "nurse", "operator")
    client = app.test_client()
    login(client, "nurse")
    with client.session_transaction() as session:
        session["seen"] = session["seen"] - 4 * 60
    assert client.get("/worklist").status_code == 302


def test_forms_without_csrf_token_are_refused(client: FlaskClient) -> None:
    client.get("/login")
    assert client.post("/login", data={"username": "nurse", "password": PASSWORD}).status_code == 400
    login(client, "nurse")
    response = client.post("/patients", data={"identifier": "P1", "name": "A B"})
    assert response.status_code == 400
    assert "form has expired" in response.get_data(as_text=True)


def test_api_writes_need_the_csrf_header_with_a_session(client: FlaskClient) -> None:
    login(client, "nurse")
    body = {"identifier": "P-9", "name": "Kofi Boateng"}
    refused = client.post("/api/patients", json=body)
    assert refused.status_code == 400 and refused.get_json()["code"] == "csrf_failed"
    token = client.get("/api/csrf").get_json()["csrf_token"]
    created = client.post("/api/patients", json=body, headers={"X-CSRFToken": token})
    assert created.status_code == 201 and created.get_json()["identifier"] == "P-9"


def test_bearer_token_authenticates_api_without_cookies(app_store: tuple[Flask, Store]) -> None:
    app, store = app_store
    user = store.get_user("nurse")
    with app.test_request_context():
        token = api_token(user)
    client = app.test_client(use_cookies=False)
    headers = {"Authorization": f"Bearer {token}"}
    created = client.post("/api/patients", json={"identifier": "P-7", "name": "Esi"},
                          headers=headers)
    assert created.status_code == 201
    assert client.get("/api/patients?q=P-7", headers=headers).get_json()["patients"][0]["name"] == "Esi"
    bad = client.get("/api/patients?q=P-7", headers={"Authorization": f"Bearer {token}x"})
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"].startswith("Bearer")
    for forged in ("1.\u00e9t\u00e9", "\u00b2.abc", ".", "1", "99.abc", "Basic x"):
        header = {"Authorization": f"Bearer {forged}".encode().decode("latin-1")}
        assert client.get("/api/csrf", headers=header).status_code == 401, forged
    # a token is not a page log-in
    assert client.get("/worklist", headers=headers).status_code == 200
    assert client.get("/worklist").status_code == 302


def test_token_changes_with_the_password(app_store: tuple[Flask, Store]) -> None:
    app, store = app_store
    with app.test_request_context():
        old = api_token(store.get_user("nurse"))
        store.set_password_hash("nurse", "$argon2id$v=19$m=65536,t=3,p=4$x$y")
        assert api_token(store.get_user("nurse")) != old
    client = app.test_client(use_cookies=False)
    assert client.get("/api/csrf", headers={"Authorization": f"Bearer {old}"}).status_code == 401


def test_roles_guard_admin_and_sign_off(client: FlaskClient) -> None:
    login(client, "nurse")
    assert client.get("/admin/").status_code == 403
    assert client.get("/admin/audit").status_code == 403
    token = page_token(client)
    denied = client.post("/screenings/1/sign-off", data={"decision": "confirm", "csrf_token": token})
    assert denied.status_code == 403


def test_security_headers_on_every_answer(client: FlaskClient) -> None:
    for path in ("/login", "/static/kiosk.css", "/nowhere"):
        response = client.get(path)
        response.close()
        headers = response.headers
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
    assert client.get("/login").headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in client.get("/login").headers  # plain http here
    assert "max-age" in client.get("/login", base_url="https://localhost").headers[
        "Strict-Transport-Security"]


def test_session_cookie_flags(tmp_path: Path) -> None:
    app, _store = make_app(web_config(tmp_path, secure_cookies=True))
    cookie = app.test_client().get("/login").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_no_inline_script_or_style_in_templates() -> None:
    templates = Path(__file__).resolve().parent.parent / "web" / "templates"
    for template in templates.glob("*.html"):
        text = template.read_text()
        assert "<script>" not in text and "<style" not in text, template.name
        assert " style=" not in text and " onclick=" not in text, template.name


def test_logout_ends_the_session(client: FlaskClient) -> None:
    login(client, "nurse")
    token = page_token(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/worklist").status_code == 302
