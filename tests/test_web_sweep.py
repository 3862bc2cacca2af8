"""Every route without a session: a redirect to log-in (pages) or 401 (API), with CSRF off so
that a CSRF refusal cannot hide a missing log-in check. Then every admin route as an operator."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser.web_support import add_user, login, make_app, web_config
from flask import Flask
from werkzeug.routing import AnyConverter, IntegerConverter, Map, Rule

from web.security import PUBLIC_ENDPOINTS


def _url(rule: Rule) -> str:
    """A concrete URL for the rule, with a sample value for each argument."""
    values = {}
    for name, converter in rule._converters.items():
        if isinstance(converter, AnyConverter):
            values[name] = sorted(converter.items)[0]
        elif isinstance(converter, IntegerConverter):
            values[name] = "1"
        else:
            values[name] = "x"
    return Map([Rule(rule.rule, endpoint="x")]).bind("localhost").build("x", values)


def _routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every route but the public ones."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, _url(rule)))
    return found


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    made, store = make_app(web_config(tmp_path))
    made.config["WTF_CSRF_ENABLED"] = False
    add_user(store, "nurse", "operator")
    return made


def test_every_route_needs_a_log_in(app: Flask) -> None:
    routes = _routes(app)
    assert len(routes) >= 25, routes  # the sweep really sees the app's routes
    client = app.test_client()
    for endpoint, method, url in routes:
        response = client.open(url, method=method)
        response.close()
        if url.startswith("/api/"):
            assert response.status_code == 401, (endpoint, method, url, response.status_code)
            assert response.get_json()["code"] == "login_required"
        else:
            assert response.status_code == 302, (endpoint, method, url, response.status_code)
            assert response.headers["Location"].startswith("/login"), (endpoint, url)


def test_a_stale_or_forged_session_is_no_log_in(app: Flask) -> None:
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = "999"
    assert client.get("/worklist").status_code == 302
    assert client.get("/api/health").status_code == 401


def test_admin_routes_refuse_an_operator(app: Flask) -> None:
    client = app.test_client()
    login(client, "nurse")
    admin = [(e, m, u) for e, m, u in _routes(app) if e.startswith("admin.")]
    assert len(admin) >= 4
    for endpoint, method, url in admin:
        response = client.open(url, method=method)
        assert response.status_code == 403, (endpoint, url, response.status_code)


@pytest.mark.parametrize("role", ["operator", "clinician", "admin"])
def test_no_route_fails_with_a_500_on_junk_input(tmp_path: Path, role: str) -> None:
    made, store = make_app(web_config(tmp_path, models_dir=tmp_path / "no-models"))
    made.config["WTF_CSRF_ENABLED"] = False
    add_user(store, "someone", role)
    client = made.test_client()
    login(client, "someone")
    junk = {"q": "\x00é' OR 1=1 --", "decision": "overrule", "verdict": "<b>", "note": "x" * 5000,
            "identifier": "../../etc", "name": "\u202e", "birth_date": "31/02/2020", "sex": "?",
            "role": "root", "username": "é", "password": "", "eye": "Z", "reason": "idle",
            "prevalence:fundus-dr": "nan", "patient_id": "-1"}
    for endpoint, method, url in _routes(made):
        if endpoint == "auth.logout":
            continue
        response = client.open(url, method=method, data=junk, query_string={"q": junk["q"]})
        response.close()
        assert response.status_code < 500, (role, endpoint, method, url, response.status_code)
