"""Messages made below web/ are shown in the reader's language (issue 14.11): every error code, quality
reason code and result-warning code the kiosk produces has words in web/messages.py (and so in
the catalogues, which tests/test_web_i18n.py checks), while results stay English."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.screening_setup import model_settings, open_pipeline
from browser.web_support import add_user, login, make_app, web_config
from flask import Flask
from flask_babel import force_locale
from test_web_flow import CHECKED, _chest, _register, _upload

from kiosk import messages as kiosk_messages
from kiosk.decide import population_warning
from kiosk.quality import chest, fundus
from kiosk.store import Store
from kiosk.tasks import Population
from web import checks, create_app, messages

ROOT = Path(__file__).resolve().parent.parent
KIOSK = ROOT / "kiosk"


def _codes_in_the_kiosk() -> tuple[set[str], set[str]]:
    """(error codes, quality reason codes) written anywhere below web/, found in the source."""
    errors: set[str] = set()
    reasons: set[str] = set(fundus.REASONS) | set(chest.REASONS)
    for path in KIOSK.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                for keyword in node.keywords:
                    if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                        errors.add(str(keyword.value.value))
                if name.endswith("QualityReason") and node.args and isinstance(
                        node.args[0], ast.Constant):
                    reasons.add(str(node.args[0].value))
            if isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant)
                            and any(getattr(t, "id", "") == "code" for t in statement.targets)):
                        errors.add(str(statement.value.value))
    return errors, reasons


def _as_percent(template: str) -> str:
    """A str.format template in gettext's %-style ("{side}" -> "%(side)s")."""
    return re.sub(r"\{(\w+)\}", r"%(\1)s", template)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return create_app(web_config(tmp_path_factory.mktemp("messages")))


@pytest.fixture
def screening_kiosk(tmp_path: Path) -> Iterator[tuple[Flask, Store]]:
    """The app with the real pipeline over the test bundles, and its store."""
    config = web_config(tmp_path, **model_settings(tmp_path / "models"))
    pipeline = open_pipeline(config)
    app, store = make_app(config, pipeline=pipeline)
    add_user(store, "nurse", "operator")
    yield app, store
    pipeline.close()
    store.close()


def test_every_error_code_made_below_web_has_words() -> None:
    errors, _reasons = _codes_in_the_kiosk()
    assert len(errors) > 50  # the scan really reads the kiosk
    assert sorted(errors - set(messages.ERRORS)) == []


def test_every_quality_reason_code_has_words_matching_the_kiosks_english() -> None:
    _errors, reasons = _codes_in_the_kiosk()
    assert "not_a_fundus_photo" in reasons and "rotated" in reasons
    assert sorted(reasons - set(messages.QUALITY)) == []
    english = {**fundus.REASONS, **chest.REASONS}
    for code, template in english.items():  # the English shown is the kiosk's own sentence
        assert messages.QUALITY[code] == _as_percent(template), code


def test_every_warning_code_has_words_matching_the_kiosks_english() -> None:
    assert sorted(set(kiosk_messages.TEMPLATES) - set(messages.WARNINGS)) == []
    for code, template in kiosk_messages.TEMPLATES.items():
        assert messages.WARNINGS[code] == _as_percent(template), code


def test_warnings_reasons_and_errors_are_said_in_french_and_kept_in_english(app: Flask) -> None:
    population = Population(1.0, 5.0, "children aged 1 to 5")
    kept = population_warning(population, 68.0)
    assert kept is not None and kept.startswith("This model was trained on")  # stored English
    note = kiosk_messages.say("eye_not_photographed", eye="Right eye",
                              reason="the patient declined")
    with app.test_request_context(), force_locale("fr"):
        shown = messages.warning(kept)
        assert "68" in shown and "children aged 1 to 5" in shown and "This model" not in shown
        assert messages.warning(note) == "Œil droit non photographié : le patient a refusé"
        rotated = {"code": "rotated", "message": chest.REASONS["rotated"].format(side="left")}
        assert "gauche" in messages.quality_reason(rotated)
        assert messages.error("too_large") != messages.ERRORS["too_large"]
        assert messages.error("incomplete_visit", params={"eyes": "R"}).startswith("Photographiez")
        # a code the table does not know keeps the kiosk's own words
        assert "the kiosk's English" in messages.error("new_code", "the kiosk's English")
        assert messages.warning("A decoder's own note") == "A decoder's own note"


def test_a_confirmed_identity_warning_is_kept_in_english_and_shown_translated(app: Flask) -> None:
    with app.test_request_context(), force_locale("en"):
        english = str(checks.OTHER_ID % {"name": "film.dcm", "theirs": "X-9", "ours": "P-1"})
    kept = kiosk_messages.say("identity_confirmed", user="nurse", warning=english)
    with app.test_request_context(), force_locale("es"):
        shown = messages.warning(kept)
    assert "nurse" in shown and "X-9" in shown and "film.dcm" in shown
    assert "Checked by" not in shown and "Check that" not in shown


def test_a_french_nurses_confirmation_is_kept_in_english_and_read_in_french(
        screening_kiosk: tuple[Flask, Store]) -> None:
    app, store = screening_kiosk
    client = app.test_client()
    login(client, "nurse")
    client.get("/?lang=fr")
    patient_id = _register(client, "FR-ID-1")
    answer = _upload(client, patient_id, fields=CHECKED, chest=(_chest(), "siim.dcm"))
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    screening = store.get_screening(int(answer.headers["Location"].rsplit("/", 1)[1]))
    kept = [w for r in screening.results for w in r["warnings"] if w.startswith("Checked by")]
    assert kept and all("The file siim.dcm" in w for w in kept)  # English, as FHIR/HL7 carry it
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Vérifié par nurse" in page and "Checked by" not in page


def _shipped_model_words() -> set[str]:
    """Titles, populations and finding names of the bundles shipped under models/."""
    found: set[str] = set()
    for manifest in (ROOT / "models").glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        found |= {str(data["title"])} if data.get("title") else set()
        found |= {str((data.get("population") or {}).get("description") or "")} - {""}
        found |= {str(f["display"]) for f in data.get("findings", []) if f.get("display")}
    return found


def test_the_shipped_models_words_are_said_in_the_readers_language(app: Flask) -> None:
    shipped = _shipped_model_words()
    assert shipped, "no shipped manifest found under models/"
    assert sorted(shipped - set(messages.MODEL_WORDS)) == []
    with app.test_request_context(), force_locale("es"):
        assert messages.model_word("Chest X-ray (children)") == "Radiografía de tórax (niños)"
        assert messages.model_word("A third party's own title") == "A third party's own title"
