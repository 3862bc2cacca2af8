"""atheris harness: the upload API (``POST /api/check`` and ``POST /api/screenings``) of the web app.

Runs ``web.create_app`` with a real store, a real pipeline over tiny signed test bundles built at
start-up (``tests/bundle_builder.py``) and decoding in-process, through Flask's test client with
a bearer token. The fuzzed bytes are the uploaded file (the first byte picks the route, the
form field and the task hint). A finding is an answer of 500 or more, an exception escaping the
app, or an error answer that is not the JSON error object. Run it through ``python fuzz/run.py
upload``.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import atheris
from common import import_tree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

with atheris.instrument_imports(include=["web", "kiosk.intake", "kiosk.pipeline"]):
    import_tree("web", "kiosk.intake")
    from bundle_builder import build_bundle, make_keys

    from kiosk.accounts import hash_password
    from kiosk.config import load_config
    from kiosk.pipeline import Pipeline
    from kiosk.store import Store
    from web import create_app
    from web.security import api_token

FIELDS = ["image", "image", "left_eye", "right_eye", "chest"]
TASKS = ["", "fundus-dr", "cxr-pneumonia", "bogus"]


def _app() -> tuple[object, dict[str, str], int]:
    """The app, the bearer header of an operator, and a registered patient's id."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-upload-"))
    keys = make_keys(root)
    build_bundle(root / "models", keys, kind="fundus")
    build_bundle(root / "models", keys, kind="cxr")
    config = load_config(env={}, data_dir=root / "data", engine_cache_dir=root / "engines",
                         models_dir=root / "models", trusted_keys=keys.trusted_dir,
                         sandbox_workers=0, secure_cookies=False)
    store = Store.open(config)
    user = store.add_user("fuzzer", hash_password("fuzzing password 1"), "operator")
    patient = store.upsert_patient("FUZZ-1", "Fuzz Patient", None, None, actor="fuzzer")
    app = create_app(config, store=store, pipeline=Pipeline.from_config(config))
    app.config.update(TESTING=True, PROPAGATE_EXCEPTIONS=True)
    with app.app_context():
        token = api_token(user)
    return app, {"Authorization": f"Bearer {token}"}, int(patient.id)


APP, HEADERS, PATIENT_ID = _app()
CLIENT = APP.test_client()  # type: ignore[attr-defined]


def test_one_input(data: bytes) -> None:
    """One upload: a 2xx/4xx answer with a JSON body; 4xx answers carry code and message."""
    selector, body = (data[0], data[1:]) if data else (0, b"")
    form: dict[str, object] = {FIELDS[selector % len(FIELDS)]: (io.BytesIO(body), "upload.bin")}
    task = TASKS[(selector >> 3) % len(TASKS)]
    if task:
        form["task"] = task
    path = "/api/check"
    if selector & 0x80:
        path, form["patient_id"] = "/api/screenings", str(PATIENT_ID)
    response = CLIENT.post(path, data=form, headers=HEADERS, content_type="multipart/form-data")
    try:
        assert response.status_code < 500, (response.status_code, response.get_data()[:300])
        answer = response.get_json()
        assert isinstance(answer, dict), response.get_data()[:300]
        if response.status_code >= 400 and response.status_code != 422:
            assert {"code", "message"} <= set(answer), answer
    finally:
        response.close()


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
