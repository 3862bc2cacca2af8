"""Capture from the configured camera (hardware.camera by URI): a real photograph through a
file:// camera, the instant gate on the frame, and the page without a camera."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.screening_setup import darkened, model_settings, open_pipeline
from browser.web_support import add_user, login, make_app, page_token, web_config
from conftest import shared
from flask import Flask

from kiosk.store import Store


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return model_settings(tmp_path_factory.mktemp("models"))


def _kiosk(tmp_path: Path, models: dict[str, Any], camera_uri: str) -> tuple[Flask, Store, Any]:
    config = web_config(tmp_path, camera_uri=camera_uri, **models)
    pipeline = open_pipeline(config)
    app, store = make_app(config, pipeline=pipeline)
    add_user(store, "nurse", "operator")
    return app, store, pipeline


@pytest.fixture
def photo_camera(tmp_path: Path, models: dict[str, Any]) -> Iterator[tuple[Flask, Store]]:
    photo = shared("fundus", "eyepacs-fullres", "17_left.jpeg")
    app, store, pipeline = _kiosk(tmp_path, models, f"file://{photo}")
    yield app, store
    pipeline.close()


def _patient(store: Store) -> int:
    return store.upsert_patient("CAM-1", "Efua Sey", None, "female", actor="test").id


def test_take_photo_screens_the_camera_frame(photo_camera: tuple[Flask, Store]) -> None:
    app, store = photo_camera
    patient_id = _patient(store)
    client = app.test_client()
    login(client, "nurse")
    page = client.get(f"/patients/{patient_id}/capture").get_data(as_text=True)
    assert "Take photo" in page
    token = page_token(client, f"/patients/{patient_id}/capture")
    first = client.post(f"/patients/{patient_id}/camera", data={"eye": "L", "csrf_token": token})
    assert first.status_code == 422  # a DR screening needs both eyes: the left one is kept
    assert "Photograph the right eye too" in first.get_data(as_text=True)
    answer = client.post(f"/patients/{patient_id}/capture",
                         data={"missing_R": "absent", "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:1500]
    screening = store.get_screening(int(answer.headers["Location"].rsplit("/", 1)[1]))
    [result] = screening.results
    assert result["task"] == "fundus-dr" and result["laterality"] == "L"
    assert result["input"] == "camera.jpg" and result["quality"]["gradable"]
    assert store.image_path(screening.image_shas[0]).suffix == ".jpg"


def test_a_dark_camera_frame_asks_for_a_retake(tmp_path: Path, models: dict[str, Any]) -> None:
    dark = tmp_path / "dark.jpg"
    dark.write_bytes(darkened(shared("fundus", "eyepacs-fullres", "13_left.jpeg").read_bytes()))
    app, store, pipeline = _kiosk(tmp_path, models, f"file://{dark}")
    patient_id = _patient(store)
    client = app.test_client()
    login(client, "nurse")
    token = page_token(client, f"/patients/{patient_id}/capture")
    answer = client.post(f"/patients/{patient_id}/camera", data={"eye": "R", "csrf_token": token})
    assert answer.status_code == 422
    assert "Retake the photo: the photograph is too dark" in answer.get_data(as_text=True)
    assert store.worklist() == []
    pipeline.close()


def test_without_a_camera_there_is_no_camera_button(tmp_path: Path, models: dict[str, Any]) -> None:
    app, store, pipeline = _kiosk(tmp_path, models, "")
    patient_id = _patient(store)
    client = app.test_client()
    login(client, "nurse")
    assert "Take photo" not in client.get(f"/patients/{patient_id}/capture").get_data(as_text=True)
    token = page_token(client, f"/patients/{patient_id}/capture")
    answer = client.post(f"/patients/{patient_id}/camera", data={"eye": "R", "csrf_token": token})
    assert answer.status_code == 409 and "upload the photo" in answer.get_data(as_text=True)
    pipeline.close()
