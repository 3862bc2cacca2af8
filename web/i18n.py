"""Languages: the words of the nurse's and the clinician's pages, the result words and the slip
in English, French and Spanish (Flask-Babel catalogues under ``web/translations``).

The language is the user's choice (``?lang=fr`` from the menu, kept in the session), else the
browser's (Accept-Language), else English. ``tests/test_web_i18n.py`` fails on any message of
the catalogue template that a language leaves untranslated.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request, session
from flask_babel import Babel, get_locale

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
#: The languages shipped, as the menu names them (in their own words).
LANGUAGES = {"en": "English", "fr": "Français", "es": "Español"}


def N_(message: str) -> str:
    """Mark a message for the catalogues; it is translated where it is shown."""
    return message


def select_locale() -> str:
    """The language of this request: chosen, else the browser's best match, else English."""
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(list(LANGUAGES)) or "en"


def _remember_choice() -> None:
    """``?lang=xx`` on any page sets the user's language for the rest of the session."""
    wanted = request.args.get("lang")
    if wanted in LANGUAGES:
        session["lang"] = wanted


def init_app(app: Flask) -> None:
    """Attach Flask-Babel and the language choice to the app."""
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    Babel(app, locale_selector=select_locale)
    app.before_request(_remember_choice)
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    app.jinja_env.globals["current_locale"] = lambda: str(get_locale() or "en")
