"""Shared helpers for the web tests: a real store, accounts, logging in through the form."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder

from kiosk.accounts import hash_password
from kiosk.config import Config, load_config
from kiosk.store import Store
from web import create_app

PASSWORD = "correct horse battery"


def web_config(tmp_path: Path, **overrides: Any) -> Config:
    """A configuration for tests: fresh data folder, cookies without Secure (plain http)."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "engine_cache_dir": tmp_path / "engines",
        "secure_cookies": False,
    }
    values.update(overrides)
    return load_config(env={}, **values)


def make_app(config: Config, **services: Any) -> tuple[Flask, Store]:
    """The app around a real store (and whatever pipeline/camera the test gives)."""
    store = services.pop("store", None) or Store.open(config)
    app = create_app(config, store=store, **services)
    app.config["TESTING"] = True
    return app, store


@functools.cache
def _hash(password: str) -> str:
    """One Argon2 hash per password for the whole run (hashing is slow on purpose)."""
    return hash_password(password)


def add_user(store: Store, username: str, role: str, password: str = PASSWORD) -> Any:
    """Create an account with an Argon2 hash."""
    return store.add_user(username, _hash(password), role)


def csrf_from(html: str) -> str:
    """The CSRF token of the first form (or the meta tag) in a page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert found, "no CSRF token in the page"
    return found.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    """Log in through the real form (CSRF token included)."""
    page = client.get("/login")
    token = csrf_from(page.get_data(as_text=True))
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def page_token(client: FlaskClient, path: str = "/") -> str:
    """A CSRF token for the logged-in session."""
    return csrf_from(client.get(path).get_data(as_text=True))


def post_multipart(client: FlaskClient, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    """POST a multipart form, closing the temporary file Werkzeug's test client spools it to."""
    builder = EnvironBuilder(path=path, method="POST", data=data, **kwargs)
    environ = builder.get_environ()
    try:
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()
