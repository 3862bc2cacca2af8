"""The CPU image, run for real: scripts/smoke-image.sh against an image scripts/build-image.sh built.

Building needs Debian's and PyPI's mirrors (mmdebstrap, pip download), which the test run's
private network namespace cannot reach, so the build is a separate step:
    scripts/build-image.sh && .venv/bin/python -m pytest tests/test_image.py
Here the smoke script starts the image with a fresh volume and checks from outside that /login
answers, `kiosk doctor` passes inside, a real chest DICOM pushed with storescu gets a verdict, and
the data survives a restart. Skips with the reason where podman, the image or storescu is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import shared

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("KIOSK_IMAGE", "localhost/kiosk:latest")


def _image_present() -> str | None:
    """Why the smoke test cannot run here, or None."""
    for tool in ("podman", "storescu", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman dcmtk curl)"
    found = subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True, check=False)
    if found.returncode != 0:
        return f"no image {IMAGE}: build it first with scripts/build-image.sh"
    return None


@pytest.mark.slow
def test_the_image_serves_screens_a_pushed_film_and_keeps_its_data(tmp_path: Path) -> None:
    why = _image_present()
    if why:
        pytest.skip(why)
    film = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm")
    env = {**os.environ, "KIOSK_SMOKE_FILM": str(film), "KIOSK_SMOKE_WEB_PORT": "18097",
           "KIOSK_SMOKE_DICOM_PORT": "11197"}
    done = subprocess.run(["bash", "scripts/smoke-image.sh", IMAGE], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    for step in ("1. /login answers", "2. kiosk doctor passes", "3. the pushed film got a verdict",
                 "4. after a restart"):
        assert step in done.stderr, done.stderr
    figures = json.loads((ROOT / "build" / "smoke.json").read_text())
    assert figures["verdict"]["task"].startswith("cxr-")
    assert figures["verdict"]["verdict"] in ("referable", "non_referable")
    assert figures["first_start_to_login_s"] < 180 and figures["size_mib"] > 0


def test_the_dockerfile_builds_from_the_official_image_or_a_local_base() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    assert text.count("FROM ${BASE_IMAGE}") == 2
    assert "pip install ${PIP_OPTIONS}" in text  # --no-index --find-links /wheels when local
    for script in ("build-image.sh", "smoke-image.sh", "container-engine.sh"):
        assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=False).returncode == 0
