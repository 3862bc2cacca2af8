"""Web benchmark: how fast the kiosk's pages and API answer on loopback, as a nurse uses them.

    python -m bench.web                       # ~1 min on 2 cores; --repeats N, --out PATH

A real server (waitress, as ``kiosk serve`` runs it) on 127.0.0.1 with a fresh store and the
bundles in ``models/`` when they verify, else the tiny signed test bundles of
``tests/bundle_builder.py`` (then the inference part of the numbers is not the real model's).
Measured with ``requests`` over HTTP, per request: median and 95th percentile of the log-in
page, worklist, result page, heat-map, referral slip PDF, ``/api/health``, the instant gate
(``/api/check``) on a full-size fundus JPEG, and whole captures: two full-size fundus
photographs, and one chest DICOM, from upload to the recorded screening.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
PASSWORD = "bench password 123"


def _settings(root: Path) -> tuple[dict[str, Any], str]:
    """Config overrides for the models to use, and their description."""
    from kiosk.config import load_config
    from kiosk.errors import KioskError
    from kiosk.pipeline import Pipeline

    try:
        Pipeline.from_config(load_config(env={}, data_dir=root / "probe")).close()
        return {}, "models/ (real bundles)"
    except KioskError:  # no verified bundle yet: the test bundles stand in
        sys.path.insert(0, str(ROOT / "tests"))
        from bundle_builder import build_bundle, make_keys

        keys = make_keys(root)
        build_bundle(root / "models", keys, kind="fundus")
        build_bundle(root / "models", keys, kind="cxr")
        return {"models_dir": root / "models", "trusted_keys": keys.trusted_dir}, "tiny test bundles"


def _serve(root: Path, overrides: dict[str, Any]) -> tuple[str, Callable[[], None]]:
    """Start the kiosk web app under waitress on a free loopback port."""
    from waitress import create_server

    from kiosk.accounts import hash_password
    from kiosk.config import load_config
    from kiosk.store import Store
    from web import create_app

    config = load_config(env={}, data_dir=root / "data", secure_cookies=False, **overrides)
    store = Store.open(config)
    store.add_user("nurse", hash_password(PASSWORD), "operator")
    app = create_app(config, store=store)
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def stop() -> None:
        server.close()
        thread.join(timeout=5)
        store.close()

    return f"http://127.0.0.1:{server.effective_port}", stop


def _token(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found
    return found.group(1)


def _timed(repeats: int, call: Callable[[], requests.Response]) -> dict[str, float]:
    """Median and p95 milliseconds of ``repeats`` calls (each must answer 2xx/3xx)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code < 400, (response.status_code, response.text[:300])
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return {"median_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1), "n": repeats}


def run(repeats: int) -> dict[str, Any]:
    """Every measurement, as JSON-ready data."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        overrides, models = _settings(root)
        base, stop = _serve(root, overrides)
        try:
            return {"models": models, "results": _measure(base, repeats)}
        finally:
            stop()


def _measure(base: str, repeats: int) -> dict[str, dict[str, float]]:
    """Log in, register, capture, then time each page and API call."""
    web = requests.Session()
    token = _token(web.get(f"{base}/login").text)
    web.post(f"{base}/login", data={"username": "nurse", "password": PASSWORD, "csrf_token": token})
    token = _token(web.get(f"{base}/").text)
    answer = web.post(f"{base}/patients", allow_redirects=False,
                      data={"identifier": "B-1", "name": "Bench Patient", "csrf_token": token})
    capture = base + answer.headers["Location"]
    photos = SHARED / "fundus" / "eyepacs-fullres"
    right, left = (photos / "15_right.jpeg").read_bytes(), (photos / "15_left.jpeg").read_bytes()
    chest = (SHARED / "dicom" / "SIIM-CXR-no-pneumothorax.dcm").read_bytes()

    def eyes() -> requests.Response:
        return web.post(capture, data={"csrf_token": token}, allow_redirects=False,
                        files={"right_eye": ("15_right.jpeg", right), "left_eye": ("15_left.jpeg", left)})

    def film() -> requests.Response:
        # the SIIM film's own PatientID is not the patient's: confirmed, as a nurse would
        return web.post(capture, data={"csrf_token": token, "identity_checked": "yes"},
                        allow_redirects=False, files={"chest": ("siim.dcm", chest)})

    out = {"capture two fundus photos": _timed(max(3, repeats // 4), eyes),
           "capture one chest DICOM": _timed(max(3, repeats // 4), film)}
    result = base + eyes().headers["Location"]
    headers = {"X-CSRFToken": token}
    pages: dict[str, Callable[[], requests.Response]] = {
        "log-in page": lambda: requests.get(f"{base}/login"),
        "worklist": lambda: web.get(f"{base}/worklist"),
        "result page": lambda: web.get(result),
        "heat-map PNG": lambda: web.get(f"{result}/images/0/heatmap"),
        "referral slip PDF": lambda: web.get(f"{result}/slip.pdf"),
        "API health": lambda: web.get(f"{base}/api/health"),
        "API instant gate (fundus JPEG)": lambda: web.post(
            f"{base}/api/check", headers=headers, files={"image": ("15_left.jpeg", left)}),
    }
    for name, call in pages.items():
        out[name] = _timed(repeats, call)
    return out


def main() -> int:
    """Run, print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "web.json")
    args = parser.parse_args()
    report = run(args.repeats)
    print(f"models: {report['models']}")
    print(f"{'request':38} {'median ms':>10} {'p95 ms':>8} {'n':>4}")
    for name, row in report["results"].items():
        print(f"{name:38} {row['median_ms']:>10} {row['p95_ms']:>8} {row['n']:>4}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
