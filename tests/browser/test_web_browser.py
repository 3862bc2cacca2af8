"""The kiosk in real headless Chromium: log in, register, capture real images, see verdicts,
retake an ungradable photo, sign off, sync status; a screenshot of every page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import shared

from browser.screening_setup import darkened
from browser.web_support import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Any, live_kiosk: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1024, "height": 768}, base_url=live_kiosk.url)
    opened = context.new_page()
    opened.on("console", lambda m: m.type == "error" and live_kiosk.console_errors.append(m.text))
    opened.on("pageerror", lambda e: live_kiosk.console_errors.append(str(e)))
    yield opened
    context.close()


def _unexpected(errors: list[str]) -> list[str]:
    """Console errors other than the retake page's own 422 (CSP violations, script errors, 404s)."""
    return [e for e in errors if "status of 422" not in e]


def _shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def _log_in(page: Any, username: str) -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))


def _register(page: Any, identifier: str, name: str) -> None:
    page.goto("/patients")
    page.fill("form[action='/patients'] input[name=identifier]", identifier)
    given, family = name.rsplit(" ", 1)
    page.fill("input[name=family_name]", family)
    page.fill("input[name=given_names]", given)
    page.fill("input[name=birth_date]", "1958-07-14")
    page.check("input[name=sex][value=female]")
    page.click("text=Register and capture")
    page.wait_for_url(re.compile(r".*/patients/\d+/capture$"))


def test_nurse_registers_captures_retakes_and_reads_the_verdict(
    page: Any, live_kiosk: Any, artifacts: Path, tmp_path: Path
) -> None:
    photos = shared("fundus", "eyepacs-fullres")
    dark = tmp_path / "dark_right.jpg"
    dark.write_bytes(darkened((photos / "13_right.jpeg").read_bytes()))

    page.goto("/worklist")
    assert "/login" in page.url
    _shot(page, artifacts, "01-login")
    _log_in(page, "nurse")
    _shot(page, artifacts, "02-home")
    _register(page, "EYE-2026-001", "Adjoa Owusu")
    _shot(page, artifacts, "03-capture")

    # the instant gate answers as soon as the photo is chosen
    page.set_input_files("input[name=right_eye]", str(dark))
    page.wait_for_selector(".gate.bad")
    assert "too dark" in page.inner_text("label:has(input[name=right_eye]) .gate")
    page.set_input_files("input[name=left_eye]", str(photos / "13_left.jpeg"))
    page.wait_for_selector("label:has(input[name=left_eye]) .gate.ok")
    _shot(page, artifacts, "04-capture-gate")
    page.click("text=Check and screen")
    page.wait_for_selector(".verdict.retake")
    assert "Retake the photo: the photograph is too dark" in page.inner_text(".verdict")
    _shot(page, artifacts, "05-retake")

    assert "13_left.jpeg" in page.inner_text(".kept")  # the good eye is kept: retake only one
    page.set_input_files("input[name=right_eye]", str(photos / "13_right.jpeg"))
    page.click("text=Check and screen")
    page.wait_for_url(re.compile(r".*/screenings/\d+$"))
    verdict = page.inner_text("#verdict h1")
    assert verdict in ("Refer to an eye doctor", "No referral needed")
    assert "not for clinical decisions" in page.inner_text(".warning")
    assert page.locator("img.picture").count() == 2
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    _shot(page, artifacts, "06-result-fundus")
    fundus_result = page.url

    _register(page, "CXR-2026-002", "Kwame Nkrumah")
    page.set_input_files("input[name=chest]", str(shared("dicom", "SIIM-CXR-no-pneumothorax.dcm")))
    # the film's own header names another patient id: a warning, confirmed before recording
    page.wait_for_selector("label:has(input[name=chest]) .gate.warn")
    page.click("text=Check and screen")
    page.wait_for_selector("#identity-warnings")
    page.check("input[name=identity_checked]")
    page.click("text=Check and screen")
    page.wait_for_url(re.compile(r".*/screenings/\d+$"))
    assert "Chest X-ray" in page.inner_text(".images")
    # an adult's film read by the children's model: a clinician must read it
    # (a referable finding still refers; otherwise it is read, never cleared)
    heading = page.inner_text("#verdict h1")
    assert heading.startswith(("Urgent: refer to a doctor today", "Refer to a doctor",
                               "A clinician must read the film")), heading
    _shot(page, artifacts, "07-result-chest")

    page.goto("/patients?q=Owusu")
    assert "EYE-2026-001" in page.inner_text(".list")
    _shot(page, artifacts, "07b-patient-search")
    page.goto("/worklist")
    assert page.locator("table.worklist tbody tr").count() == 2
    _shot(page, artifacts, "08-worklist")
    page.set_viewport_size({"width": 480, "height": 800})
    _shot(page, artifacts, "08b-worklist-small-screen")
    page.goto(fundus_result)
    _shot(page, artifacts, "06b-result-small-screen")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert _unexpected(live_kiosk.console_errors) == []


def test_clinician_signs_off_and_checks_sync(page: Any, live_kiosk: Any, artifacts: Path) -> None:
    store = live_kiosk.store
    rows = store.worklist()
    if not rows:
        pytest.skip("needs the screenings of the nurse's test (run the module)")
    _log_in(page, "doctor")
    page.goto("/worklist")
    page.click("table.worklist tbody tr >> nth=0 >> text=Open")
    page.wait_for_url(re.compile(r".*/screenings/\d+$"))
    screening_id = int(page.url.rsplit("/", 1)[1])
    page.check("input[name=decision][value=overrule]")
    page.select_option("select[name=verdict]", "non_referable")
    page.fill("textarea[name=note]", "Skin fold mimics a pneumothorax; lungs clear.")
    _shot(page, artifacts, "09-sign-off-form")
    page.click("text=Save sign-off")
    page.wait_for_selector("text=Sign-off saved")
    assert "overruled the kiosk" in page.inner_text("#verdict").lower()
    assert page.inner_text("#verdict h1") == "No referral needed"
    _shot(page, artifacts, "10-signed-off")
    assert store.get_screening(screening_id).sign_off.decision == "overrule"

    [item, *_] = store.due_items()
    store.park_item(item.id, "422 Unprocessable Entity: Patient.birthDate invalid")
    page.goto("/sync")
    assert "FHIR" in page.inner_text(".tiles")
    _shot(page, artifacts, "11-sync")
    page.click("text=Retry")
    page.wait_for_selector("text=back in the queue")
    assert store.parked_items() == []
    _shot(page, artifacts, "12-sync-after-retry")

    page.goto(f"/screenings/{screening_id}")
    # overruled to "no referral needed": no referral slip is offered
    assert page.locator("text=Print referral slip").count() == 0


def test_admin_pages(page: Any, live_kiosk: Any, artifacts: Path) -> None:
    _log_in(page, "boss")
    page.goto("/admin/")
    assert "verified" in page.inner_text("table")
    assert "onnxruntime-cpu" in page.inner_text("table")
    assert "median per image today" in page.inner_text("table")
    _shot(page, artifacts, "13-admin")
    page.goto("/admin/audit?q=view_result")
    assert "Tamper check passed" in page.inner_text("main")
    _shot(page, artifacts, "14-audit")
    page.goto("/account")
    _shot(page, artifacts, "15-account")
    assert _unexpected(live_kiosk.console_errors) == []


def test_an_idle_screen_logs_itself_off(page: Any, live_kiosk: Any, artifacts: Path) -> None:
    _log_in(page, "nurse")
    page.clock.install()
    page.goto("/worklist")
    page.clock.fast_forward("14:00")
    assert page.url.endswith("/worklist")
    page.clock.fast_forward("01:05")  # 15 minutes without a touch (KIOSK_SESSION_TIMEOUT_MIN)
    page.wait_for_url(re.compile(r".*/login$"))
    assert "logged off after 15 minutes without activity" in page.inner_text("main")
    _shot(page, artifacts, "16-idle-logged-off")
    page.goto("/worklist")
    assert "/login" in page.url
