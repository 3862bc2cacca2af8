"""Issue 14 in real headless Chromium, the last points: what the kiosk says below web/ (the gate's
answer, quality reasons, warnings) in the nurse's language, the gate saying in plain words what
passed, and a DICOM film's heat-map toggling with the film itself; screenshots at 1280x800 and
800x1280."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import shared

from browser.screening_setup import darkened
from browser.test_web_safety import _choose, _close, _log_in, _photo, _register, _shots

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Any, live_kiosk: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  base_url=live_kiosk.url)
    opened = context.new_page()
    opened.on("pageerror", lambda e: live_kiosk.console_errors.append(str(e)))
    yield opened
    _close(context)


def test_the_gate_says_what_passed_and_what_to_retake_in_french(
        page: Any, live_kiosk: Any, artifacts: Path, tmp_path: Path) -> None:
    _log_in(page, "nurse")
    _register(page, "EYE-14-FR", "Diallo", "Awa")
    page.wait_for_url(re.compile(r".*/capture$"))
    page.goto(page.url + "?lang=fr")
    dark = tmp_path / "13_left_dark.jpeg"
    dark.write_bytes(darkened(Path(_photo("13_left.jpeg")).read_bytes()))
    _choose(page, "right_eye", _photo("13_right.jpeg"))
    _choose(page, "left_eye", str(dark))
    good = page.inner_text("label:has(input[name=right_eye]) .gate")
    assert "La photo est assez nette pour le dépistage" in good, good
    bad = page.inner_text("label:has(input[name=left_eye]) .gate")
    assert "Refaire la photo" in bad and "trop sombre" in bad, bad  # the kiosk's reason, in French
    assert "retake" not in (good + bad).lower() and "good" not in (good + bad).lower()
    _shots(page, artifacts, "22-french-gate")
    page.click("#capture-form button[type=submit]")
    page.wait_for_selector("text=Rien n'a été enregistré")
    retake = page.inner_text("main")
    assert "photo est trop sombre" in retake and "too dark" not in retake
    assert "assez nette pour le dépistage" in page.inner_text(".kept")  # the right eye, kept
    _shots(page, artifacts, "23-french-retake")


def test_a_films_heat_map_toggles_with_the_film_itself(
        page: Any, live_kiosk: Any, artifacts: Path) -> None:
    _log_in(page, "nurse")
    born = (date.today() - timedelta(days=3 * 366)).isoformat()
    _register(page, "CXR-14-FILM", "Mensah", "Kofi", born=born, sex="male")
    page.wait_for_url(re.compile(r".*/capture$"))
    _choose(page, "chest", str(shared("dicom", "SIIM-CXR-no-pneumothorax.dcm")))
    page.click("text=Check and screen")
    page.wait_for_selector("#identity-warnings")
    page.check("input[name=identity_checked]")
    page.click("text=Check and screen")
    page.wait_for_url(re.compile(r".*/screenings/\d+$"))
    picture = page.locator("figure.viewer img").first
    assert "/heatmap" in (picture.get_attribute("src") or "")
    picture.evaluate("img => img.decode()")
    heat_size = picture.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    page.locator("text=Show the X-ray").first.click()
    assert (picture.get_attribute("src") or "").endswith("/film")
    picture.evaluate("img => img.decode()")  # the film really loads, as a picture
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == heat_size
    tools = page.locator(".viewer-tools").first
    tools.locator("label:has-text('Zoom') input").fill("2")
    tools.locator("label:has-text('Level') input").fill("150")
    style = picture.get_attribute("style") or ""
    assert "scale(2)" in style and "brightness(150%)" in style
    _shots(page, artifacts, "24-film-original")
    page.locator("text=Show the heat-map").first.click()  # a zoomed picture covers no tool
    assert "/heatmap" in (picture.get_attribute("src") or "")
    assert live_kiosk.store.audit_entries("view_original")  # seeing the film is audited
