"""Browser tests: a real kiosk server on 127.0.0.1 in a thread, driven by headless Chromium."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from browser.screening_setup import model_settings, open_pipeline
from browser.web_support import add_user, make_app, web_config
from kiosk.config import Config

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "web"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]


@dataclass
class LiveKiosk:
    """The running server: its base URL, store, and the console errors the pages logged."""

    url: str
    store: Any
    console_errors: list[str] = field(default_factory=list)


def serve_kiosk(config: Config, pipeline: Any) -> Iterator[LiveKiosk]:
    """Run the app around a fresh store and the pipeline on a free loopback port."""
    app, store = make_app(config, pipeline=pipeline)
    app.config["TESTING"] = False
    for name, role in (("nurse", "operator"), ("doctor", "clinician"), ("boss", "admin")):
        add_user(store, name, role)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveKiosk(f"http://127.0.0.1:{server.server_port}", store)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        pipeline.close()
        store.close()


@pytest.fixture(scope="module")
def live_kiosk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKiosk]:
    root = tmp_path_factory.mktemp("kiosk")
    config = web_config(root, fhir_url="http://127.0.0.1:9/fhir", **model_settings(root))
    yield from serve_kiosk(config, open_pipeline(config))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
