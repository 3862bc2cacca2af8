"""The sync page with a parked fleet report: it names the report by its key (there is no
screening to link to), and a clinician can put it back in the queue like any item."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from browser.web_support import add_user, login, make_app, page_token, web_config

from kiosk.lifecycle import fleet


def test_a_parked_fleet_report_shows_on_the_sync_page_and_is_retried(tmp_path: Path) -> None:
    config = web_config(tmp_path, fhir_url="http://127.0.0.1:9/fhir", min_free_disk_mb=1)
    app, store = make_app(config)
    add_user(store, "doctor", "clinician")
    report, _ = fleet.queue(store, fleet.Period(date(2026, 11, 30), date(2026, 11, 30)))
    [item] = store.due_items()
    store.park_item(item.id, "fhir refused the item: HTTP 400: invalid at MeasureReport.group")
    client = app.test_client()
    login(client, "doctor")
    page = client.get("/sync")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"fleet.{report.kiosk}.2026-11-30.2026-11-30.fhir" in text
    assert "MeasureReport.group" in text
    token = page_token(client, "/sync")
    assert client.post(f"/sync/items/{item.id}/retry", data={"csrf_token": token}).status_code == 302
    assert store.parked_items() == []
    store.close()
