"""Log-in, roles, bearer tokens, CSRF, inactivity log-off, throttling and security headers.

Every route needs a logged-in user unless its endpoint is listed in ``PUBLIC_ENDPOINTS``
(default deny): a new route cannot be left open by forgetting a decorator.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Protocol, TypeVar, cast

from flask import Flask, current_app, flash, g, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import LoginManager, UserMixin, current_user, logout_user
from flask_wtf.csrf import CSRFProtect

from kiosk.errors import AuthError
from web.services import services

PUBLIC_ENDPOINTS = frozenset({"auth.login", "static"})
#: The time a user was last seen is written back at most this often (or a tenth of the idle
#: limit, if less). A request inside a burst (a page, its image checks, its heat-maps) then
#: changes nothing in the session and sends no cookie, so an answer that arrives late cannot put
#: an older session back (a language just chosen, a log-in). The idle log-off is that much less
#: exact.
SEEN_EVERY_S = 30.0

#: Content Security Policy: everything from this kiosk only, no inline script or style.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

login_manager = LoginManager()
csrf = CSRFProtect()

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class SessionUser(UserMixin):
    """The logged-in person as Flask-Login sees them."""

    id: int
    username: str
    role: str
    generation: str = "0"

    def get_id(self) -> str:
        """The session key: the user and their session generation (bumped at log-out)."""
        return f"{self.id}:{self.generation}"

    @classmethod
    def from_store(cls, user: Any) -> SessionUser:
        """Wrap a store ``User``."""
        return cls(id=int(user.id), username=str(user.username), role=str(user.role),
                   generation=session_generation(int(user.id)))


def session_generation(user_id: int) -> str:
    """The user's current session generation: cookies of older generations are refused."""
    return services().store.get_setting(f"session_generation.{user_id}", "0") or "0"


def disabled_setting(user_id: int) -> str:
    """The store setting that marks an account disabled by an admin."""
    return f"user_disabled.{user_id}"


def is_disabled(user_id: int) -> bool:
    """Whether an admin disabled this account (no log-in, no session, no API token)."""
    return services().store.get_setting(disabled_setting(user_id)) == "1"


def end_sessions(user: SessionUser) -> None:
    """Invalidate every session cookie of this user, including copies taken before log-out."""
    following = str(int(session_generation(user.id)) + 1)
    services().store.set_setting(f"session_generation.{user.id}", following, actor=user.username)


def init_app(app: Flask) -> None:
    """Attach log-in, CSRF, the default-deny check and the security headers to the app."""
    login_manager.init_app(app)
    login_manager.session_protection = "strong"
    login_manager.user_loader(_load_session_user)
    login_manager.request_loader(_load_token_user)
    login_manager.unauthorized_handler(_unauthorized)
    csrf.init_app(app)
    app.before_request(_guard)
    app.after_request(_headers)


def _load_session_user(session_key: str) -> SessionUser | None:
    """The user of a session cookie, if the account exists and the session was not ended."""
    user_id, _, generation = session_key.partition(":")
    try:
        user = services().store.get_user_by_id(int(user_id))
    except ValueError:
        return None
    if user is None or is_disabled(int(user.id)):
        return None
    found = SessionUser.from_store(user)
    return found if found.generation == generation else None


def _load_token_user(req: Any) -> SessionUser | None:
    """The user of an ``Authorization: Bearer <token>`` header (API clients)."""
    header = req.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    user = user_for_token(header[len("Bearer ") :].strip())
    if user is not None:
        g.via_token = True
    return user


def api_token(user: Any) -> str:
    """The bearer token of a store ``User``; it changes when the password changes."""
    return f"{user.id}.{_token_mac(user)}"


def user_for_token(token: str) -> SessionUser | None:
    """The user a bearer token belongs to, or None when it is not valid."""
    user_id, _, mac = token.partition(".")
    if not (user_id.isascii() and user_id.isdigit()) or not mac:
        return None
    user = services().store.get_user_by_id(int(user_id))
    if user is None or not hmac.compare_digest(mac.encode(), _token_mac(user).encode()):
        return None
    if is_disabled(int(user.id)):
        return None
    return SessionUser.from_store(user)


def _token_mac(user: Any) -> str:
    """HMAC of the user's id and password hash under the app's secret key."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    message = f"kiosk-api:{user.id}:{user.password_hash}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def is_api_request() -> bool:
    """True for the JSON API, which answers errors in JSON and 401 instead of redirects."""
    return request.path.startswith("/api/")


def _unauthorized() -> ResponseReturnValue:
    """401 for the API, a redirect to the log-in page for pages."""
    if is_api_request():
        body = jsonify(AuthError("Log in or send a bearer token.", code="login_required").to_dict())
        return body, 401, {"WWW-Authenticate": 'Bearer realm="kiosk"'}
    target = request.full_path if request.method == "GET" else None
    return redirect(url_for("auth.login", next=target.rstrip("?") if target else None))


def _guard() -> ResponseReturnValue | None:
    """Before every request: CSRF (unless a bearer token), log-in required, inactivity."""
    if request.endpoint == "static":
        return None
    authenticated = bool(current_user.is_authenticated)
    if current_app.config.get("WTF_CSRF_ENABLED", True) and not g.get("via_token"):
        csrf.protect()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not authenticated:
        return _unauthorized()
    if not g.get("via_token"):
        return _check_inactivity(current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds())
    return None


def _check_inactivity(limit_s: float) -> ResponseReturnValue | None:
    """Log the user off after the configured time without a request."""
    now = time.time()
    seen = float(session.get("seen", now))
    if now - seen > limit_s:
        logout_user()
        session.clear()
        flash(_("You were logged off after %(minutes)d minutes without activity.",
                minutes=int(limit_s // 60)), "info")
        return _unauthorized()
    if "seen" not in session or now - seen >= min(SEEN_EVERY_S, limit_s / 10):
        session["seen"] = now
    return None


def _headers(response: Any) -> Any:
    """Security headers on every response; no caching of pages with patient data."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def requires(*roles: str) -> Callable[[F], F]:
    """Allow the view only to users holding one of the roles (403 otherwise)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                raise Forbidden(f"This needs the {' or '.join(roles)} role.")
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorate


class Forbidden(AuthError):
    """The user is logged in but their role does not allow the action."""

    code = "forbidden"
    http_status = 403


def audit(action: str, *, patient_id: int | None = None, detail: str = "") -> None:
    """Write an audit entry for the current user (page views and exports of patient data)."""
    services().store.audit(current_user.username, action, patient_id=patient_id, detail=detail)


class ThrottleState(Protocol):
    """Where a throttle keeps each key's failure times and lock-out end (the store, or memory)."""

    def throttle_state(self, key: str) -> tuple[list[float], float]: ...

    def set_throttle_state(self, key: str, failures: list[float], locked_until: float) -> None: ...


class MemoryThrottleState:
    """Throttle state in memory (tests, tools): forgotten when the process ends."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[list[float], float]] = {}

    def throttle_state(self, key: str) -> tuple[list[float], float]:
        """Failure times and lock-out end of ``key``."""
        failures, locked_until = self._rows.get(key, ([], 0.0))
        return list(failures), locked_until

    def set_throttle_state(self, key: str, failures: list[float], locked_until: float) -> None:
        """Remember ``key``'s state."""
        self._rows[key] = (list(failures), locked_until)


class LoginThrottle:
    """Failed log-ins per key ("user:NAME", "addr:IP"); too many lock log-in for a while.

    The address limit is higher: on a kiosk everyone logs in from the same screen. The app keeps
    the counts in the store, so restarting the kiosk (or pulling its plug) unlocks nothing.
    """

    def __init__(
        self,
        limits: dict[str, int] | None = None,
        window_s: float = 15 * 60,
        lockout_s: float = 5 * 60,
        clock: Callable[[], float] = time.time,
        state: ThrottleState | None = None,
    ) -> None:
        self.limits = limits or {"user": 5, "addr": 20}
        self.window_s, self.lockout_s, self.clock = window_s, lockout_s, clock
        self.state: ThrottleState = state if state is not None else MemoryThrottleState()

    def wait_s(self, *keys: str) -> float:
        """Seconds until log-in is allowed again for any of the keys (0 when allowed)."""
        now = self.clock()
        return max([self.state.throttle_state(k)[1] - now for k in keys] + [0.0])

    def failed(self, *keys: str) -> None:
        """Count one failed log-in against each key, locking those over the limit."""
        now = self.clock()
        for key in keys:
            failures, locked_until = self.state.throttle_state(key)
            recent = [t for t in failures if 0 <= now - t < self.window_s] + [now]
            if len(recent) >= self.limits.get(key.partition(":")[0], 5):
                recent, locked_until = [], now + self.lockout_s
            self.state.set_throttle_state(key, recent, locked_until)

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of these keys after a good log-in (never the address's)."""
        for key in keys:
            _, locked_until = self.state.throttle_state(key)
            self.state.set_throttle_state(key, [], locked_until if locked_until > self.clock() else 0.0)


def safe_next(target: str | None) -> str:
    """Where to go after log-in: a path on this site only (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("auth.home")
