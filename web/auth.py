"""Log-in, log-out, the home screen and the user's own account page."""

from __future__ import annotations

import time
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from kiosk.accounts import hash_password, needs_rehash, verify_password
from web.security import (
    LoginThrottle,
    SessionUser,
    api_token,
    audit,
    end_sessions,
    is_disabled,
    safe_next,
)
from web.services import services

bp = Blueprint("auth", __name__)

#: A fixed hash to verify against when the user does not exist (same time either way).
_DUMMY_HASH: list[str] = []


@bp.get("/")
def home() -> ResponseReturnValue:
    """The home screen: big buttons for what each role does."""
    return render_template("home.html")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The log-in form; failed attempts are throttled per user name and per address."""
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(safe_next(request.args.get("next")))
        first_run = not services().store.list_users()
        return render_template("login.html", next=request.args.get("next", ""), first_run=first_run)
    username = request.form.get("username", "").strip().lower()
    password = request.form.get("password", "")
    keys = (f"user:{username}", f"addr:{request.remote_addr}")
    wait = _throttle().wait_s(*keys)
    if wait > 0:
        minutes = int(wait // 60) + 1
        flash(_("Too many failed log-ins. Try again in %(minutes)d minute(s).", minutes=minutes),
              "error")
        return render_template("login.html", next=request.form.get("next", "")), 429
    user = _check_credentials(username, password)
    if user is None:
        _throttle().failed(*keys)
        services().store.audit(username or "-", "login_failed", detail=str(request.remote_addr))
        flash(_("Wrong user name or password."), "error")
        return render_template("login.html", next=request.form.get("next", "")), 401
    _throttle().succeeded(keys[0])  # the address keeps its count: no spraying between good log-ins
    if is_disabled(int(user.id)):
        services().store.audit(username, "login_disabled", detail=str(request.remote_addr))
        flash(_("This account is disabled: ask an administrator."), "error")
        return render_template("login.html", next=""), 403
    _start_session(user)
    return redirect(safe_next(request.form.get("next")))


def _check_credentials(username: str, password: str) -> Any | None:
    """The store user when the password matches, else None."""
    store = services().store
    user = store.get_user(username) if username else None
    if user is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_password("not-a-real-password"))
        verify_password(_DUMMY_HASH[0], password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        store.set_password_hash(user.username, hash_password(password))
    return user


def _start_session(user: Any) -> None:
    """Log the user in with a fresh session that expires after inactivity."""
    session.clear()
    session.permanent = True
    session["seen"] = time.time()
    login_user(SessionUser.from_store(user))
    audit("login", detail=str(request.remote_addr))


def _throttle() -> LoginThrottle:
    """The app's failed log-in counter."""
    throttle = current_app.extensions.get("kiosk_throttle")
    if throttle is None:  # kept in the store: a restart does not reset the counts
        throttle = current_app.extensions["kiosk_throttle"] = LoginThrottle(state=services().store)
    assert isinstance(throttle, LoginThrottle)
    return throttle


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session (the screen sends reason=idle when nobody touched it)."""
    idle = request.form.get("reason") == "idle"
    audit("logout", detail="idle" if idle else "")
    if current_user.is_authenticated:
        end_sessions(current_user)
    logout_user()
    session.clear()
    minutes = int(current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() // 60)
    flash(_("You were logged off after %(minutes)d minutes without activity.", minutes=minutes)
          if idle else _("You are logged off."), "info")
    return redirect(url_for("auth.login"))


@bp.get("/account")
def account() -> ResponseReturnValue:
    """The user's role and API bearer token (for other clients on the clinic's network)."""
    user = services().store.get_user(current_user.username)
    token = api_token(user) if user is not None else ""
    audit("view_api_token")
    return render_template("account.html", token=token)
