"""Languages (issue 14.11): every message of the web app's pages, result words and slip is in the
French and Spanish catalogues, the catalogues shipped are compiled from them, and a page follows
the user's choice or the browser's language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from browser.web_support import add_user, login, make_app, web_config

from web.i18n import LANGUAGES, TRANSLATIONS

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "gettext": None, "N_": None, "lazy_gettext": None}
METHODS = [("web/**.py", "python"), ("web/templates/**.html", "jinja2")]
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def _messages_in_the_code() -> set[str]:
    """Every message the code marks for translation, extracted afresh from the sources."""
    found = extract_from_dir(str(ROOT), METHODS, keywords=KEYWORDS)
    return {message for _file, _line, message, _comments, _context in found
            if isinstance(message, str) and message}


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_every_message_is_translated(language: str) -> None:
    folder = TRANSLATIONS / language / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as handle:
        catalogue = read_po(handle)
    translated = {m.id: m.string for m in catalogue if m.id and not m.fuzzy}
    untranslated = sorted(m for m in _messages_in_the_code() if not translated.get(m))
    assert untranslated == [], f"{language}: {len(untranslated)} untranslated: {untranslated[:5]}"
    for message, text in translated.items():
        assert set(PLACEHOLDER.findall(message)) == set(PLACEHOLDER.findall(str(text))), message
    with open(folder / "messages.mo", "rb") as handle:
        compiled = {m.id: m.string for m in read_mo(handle) if m.id}
    assert compiled == translated, "messages.mo is older than messages.po: run pybabel compile"


def test_pages_follow_the_browser_and_the_users_choice(tmp_path: Path) -> None:
    app, store = make_app(web_config(tmp_path))
    add_user(store, "nurse", "operator")
    client = app.test_client()
    login(client, "nurse")
    french = client.get("/", headers={"Accept-Language": "fr-FR,fr;q=0.9"}).get_data(as_text=True)
    assert "Nouveau dépistage" in french and 'lang="fr"' in french
    spanish = client.get("/worklist?lang=es", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Lista de trabajo" in spanish  # the user's choice wins over the browser
    assert "Ningún cribado coincide." in client.get("/worklist").get_data(as_text=True)
    store.close()


def test_a_stylesheet_fetched_with_an_older_cookie_does_not_undo_a_language_choice(
        tmp_path: Path) -> None:
    """The browser fetches the last page's stylesheet and icon while the next page, ?lang=fr,
    sets a new cookie; the static answers come last. They must not send the old cookie back, or
    the kiosk's own words (a retake's reason) come back in English (seen in CI, 2026-12-04)."""
    app, store = make_app(web_config(tmp_path))
    add_user(store, "nurse", "operator")
    client = app.test_client()
    login(client, "nurse")
    with client.get("/static/kiosk.css") as static:
        assert static.status_code == 200
        assert "Set-Cookie" not in static.headers, static.headers.get("Set-Cookie")
    chosen = client.get("/worklist?lang=fr")
    assert "kiosk_session=" in chosen.headers.get("Set-Cookie", "")  # the choice is kept
    assert 'lang="fr"' in client.get("/worklist").get_data(as_text=True)
    store.close()
