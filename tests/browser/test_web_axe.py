"""Accessibility (issue 14.12): axe-core (tests/peers/axe, installed by scripts/setup.sh) over every
page of the kiosk in headless Chromium; no serious or critical violation is allowed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import shared

from browser.web_support import PASSWORD

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parent.parent / "peers" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = {"serious", "critical"}


def _axe(page: Any) -> list[dict[str, Any]]:
    """The serious and critical violations axe-core finds on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => (await axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}
    })).violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                               nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))""")
    return [v for v in found if v["impact"] in SERIOUS]


def _log_in(page: Any, username: str) -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))


def _a_screening(page: Any) -> tuple[str, str]:
    """Register a patient and screen both eyes; (the capture page's path, the result's)."""
    page.goto("/patients")
    page.fill("form[action='/patients'] input[name=identifier]", "AXE-1")
    page.fill("input[name=family_name]", "Owusu")
    page.fill("input[name=given_names]", "Adjoa")
    page.fill("input[name=birth_date]", "1958-07-14")
    page.check("input[name=sex][value=female]")
    page.click("text=Register and capture")
    page.wait_for_url(re.compile(r".*/capture$"))
    capture = "/" + page.url.split("//", 1)[1].split("/", 1)[1]
    photos = shared("fundus", "eyepacs-fullres")
    for slot, name in (("right_eye", "13_right.jpeg"), ("left_eye", "13_left.jpeg")):
        page.set_input_files(f"input[name={slot}]", str(photos / name))
        page.wait_for_selector(f"label:has(input[name={slot}]) .gate.ok")
    page.click("text=Check and screen")
    page.wait_for_url(re.compile(r".*/screenings/\d+$"))
    return capture, "/" + page.url.split("//", 1)[1].split("/", 1)[1]


def test_no_serious_accessibility_violation_on_any_page(
        browser: Any, live_kiosk: Any, artifacts: Path) -> None:
    if not AXE.exists():
        pytest.skip(f"{AXE} is missing: run scripts/setup.sh (npm ci in tests/peers/axe)")
    # the kiosk's CSP forbids inline script, which is how axe-core is put into the page
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  base_url=live_kiosk.url, bypass_csp=True)
    page = context.new_page()
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        page.goto("/login")
        found["/login"] = _axe(page)
        _log_in(page, "nurse")
        capture, result = _a_screening(page)
        patient_pages = ["/", "/patients", "/patients?q=Owusu", "/patients?q=nobody-here",
                         capture, result, "/worklist", "/sync", "/account", "/no-such-page",
                         "/screenings/999999",  # a kiosk error: its words and the IT details
                         f"{result}?lang=fr", "/worklist?lang=es", "/?lang=en"]
        for path in patient_pages:
            page.goto(path)
            found[path] = _axe(page)
        page.goto("about:blank")  # no response in flight sets the old session's cookie again
        page.context.clear_cookies()
        _log_in(page, "doctor")
        page.goto(result)
        found[f"{result} (clinician)"] = _axe(page)
        page.goto("about:blank")
        page.context.clear_cookies()
        _log_in(page, "boss")
        for path in ("/admin/", "/admin/audit", "/admin/monitoring/"):
            page.goto(path)
            found[path] = _axe(page)
    finally:
        context.close()
    (artifacts / "axe-violations.json").write_text(json.dumps(found, indent=2))
    bad = {path: violations for path, violations in found.items() if violations}
    assert bad == {}, json.dumps(bad, indent=1)[:3000]
