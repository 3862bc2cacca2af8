"""Shared fixtures: where the real data lives, a fresh configuration, a fresh data folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.config import Config, load_config

pytest_plugins = ["peers.fixtures"]

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A path in ../shared/data, skipping the calling test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (see ../shared/data/README.md)")
    return path


def new_shot(jpeg: bytes) -> bytes:
    """A JPEG photograph as a new shot: other pixels where nothing is read (an 8x8 patch of
    random dark values in the top-left corner, outside the eye's disc), re-encoded at quality
    97. The kiosk screens a photograph it has seen before only once (the browser re-encodes a
    large photograph, so only new pixels make new bytes), so a test that screens one photograph
    again, in one store, takes a new shot of it."""
    pixels = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    pixels[:8, :8] = np.random.default_rng().integers(0, 24, (8, 8, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 97])
    assert ok
    return encoded.tobytes()


@pytest.fixture
def shared_data() -> Path:
    """The real clinical images folder (skips the test when absent)."""
    return shared()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A configuration whose data folder is a fresh temporary directory."""
    return load_config(env={}, data_dir=tmp_path / "data", engine_cache_dir=tmp_path / "engines")


#: Fixtures that start a real peer (Orthanc, the FHIR server, the MLLP listener, Triton): a test
#: that uses one, directly or through another fixture (``world``), is marked ``peers``.
#: ``strict_orthanc`` (test_sync_refusals) and ``served`` (test_engines_triton) start their own.
PEER_FIXTURES = frozenset({"fhir_peer", "mllp_peer", "orthanc_pair", "strict_orthanc", "served"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need the real peers or Chromium, so the fast tier can leave them out."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if PEER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.peers)
        if "browser" in fixtures:  # tests/browser/conftest.py: headless Chromium
            item.add_marker(pytest.mark.browser)
