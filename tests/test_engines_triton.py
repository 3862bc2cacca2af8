"""The Triton back-end against a real Triton server on loopback (nvidia-pytriton's tritonserver).

The server runs in its own environment, ``.venv-triton`` (made by scripts/setup.sh from
tests/peers/triton-requirements.txt), from tests/peers/triton/serve.py; the tests skip with the
reason when that environment is absent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bundle_builder import build_bundle, make_keys
from conftest import shared

from engines.base import open_engine
from engines.bundle import Bundle, load_bundle
from engines.triton_engine import split_url
from kiosk.config import load_config
from kiosk.errors import EngineError
from kiosk.pipeline import Model, Pipeline

ROOT = Path(__file__).resolve().parent.parent
TRITON_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
SERVE = ROOT / "tests" / "peers" / "triton" / "serve.py"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bundle, str, Path]]:
    """A tiny fundus bundle, and a Triton server on loopback serving its model.onnx."""
    if not TRITON_PYTHON.exists():
        pytest.skip(f"Triton peer not installed: {TRITON_PYTHON} is absent (scripts/setup.sh "
                    "makes it from tests/peers/triton-requirements.txt)")
    root = tmp_path_factory.mktemp("triton")
    keys = make_keys(root)
    bundle = load_bundle(build_bundle(root / "models", keys), keys.trusted_dir)
    http, grpc, metrics = _free_ports(3)
    log = root / "triton.log"  # a file, not a pipe: an unread pipe would stall the server
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(TRITON_PYTHON), str(SERVE), str(bundle.path / "model.onnx"), "--name", bundle.task,
             "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(process, log)
        yield bundle, f"http://127.0.0.1:{http}", keys.trusted_dir
    finally:
        process.send_signal(signal.SIGTERM)  # serve.py stops Triton cleanly (~3 s)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the server and its stubs
            process.wait()


def _wait_ready(process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    """Wait until the server prints READY (fail with its log if it dies or takes too long)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if b"READY" in log.read_bytes():
            return
        time.sleep(0.2)
    pytest.fail("the Triton peer did not start:\n" + log.read_text(errors="replace")[-4000:])


def _config(tmp_path: Path, url: str, **overrides: object):
    values: dict[str, object] = {"data_dir": tmp_path / "data", "engine_cache_dir": tmp_path / "e",
                                 "backends": "triton", "triton_url": url, "sandbox_workers": 0}
    values.update(overrides)
    return load_config(env={}, **values)


def test_triton_serves_the_same_numbers_as_onnxruntime(served, tmp_path: Path) -> None:
    bundle, url, _ = served
    engine = open_engine(bundle, _config(tmp_path, url))
    assert engine.name == "triton" and engine.skipped == []
    assert engine.describe()["server"] == split_url(url)[0]
    reference = open_engine(bundle, _config(tmp_path, url, backends="onnxruntime-cpu"))
    batch = np.random.default_rng(1).normal(size=(5, 3, 32, 32)).astype(np.float32)
    expected, got = reference.infer(batch), engine.infer(batch)
    engine.close()
    assert set(got) == {"logits", "cam"}
    np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["cam"], expected["cam"], rtol=1e-5, atol=1e-6)


def test_a_real_photograph_gets_the_same_verdict_through_triton(served, tmp_path: Path) -> None:
    bundle, url, _ = served
    data = shared("fundus", "eyepacs-fullres", "16_left.jpeg").read_bytes()
    results = []
    for backend in ("triton", "onnxruntime-cpu"):
        config = _config(tmp_path, url, backends=backend)
        pipeline = Pipeline(config, {bundle.task: Model(bundle, open_engine(bundle, config))})
        results.append(pipeline.screen(data, source="16_left.jpeg")[0].result)
        pipeline.close()
    via_triton, local = results
    assert via_triton["backend"] == "triton" and local["backend"] == "onnxruntime-cpu"
    assert via_triton["verdict"] == local["verdict"] and via_triton["error"] is None
    assert via_triton["score"] == pytest.approx(local["score"], abs=1e-4)


def test_a_served_model_that_does_not_match_the_bundle_is_refused(served, tmp_path: Path) -> None:
    _, url, _ = served
    keys = make_keys(tmp_path)
    other = load_bundle(build_bundle(tmp_path / "models", keys, size=64), keys.trusted_dir)
    with pytest.raises(EngineError) as caught:
        open_engine(other, _config(tmp_path, url))
    assert "does not match" in caught.value.message and "image" in caught.value.message


def test_an_unreachable_server_falls_to_the_next_back_end_and_says_why(served, tmp_path) -> None:
    bundle, _, _ = served
    [port] = _free_ports(1)
    config = _config(tmp_path, f"http://127.0.0.1:{port}", backends="triton,onnxruntime-cpu")
    engine = open_engine(bundle, config)
    assert engine.name == "onnxruntime-cpu"
    assert engine.skipped and engine.skipped[0].startswith("triton") and str(port) in engine.skipped[0]


@pytest.mark.parametrize(("url", "address", "tls"), [
    ("http://10.0.0.5:8000", "10.0.0.5:8000", False), ("https://triton.clinic", "triton.clinic:443", True),
    ("triton.local", "triton.local:8000", False)])
def test_triton_urls(url: str, address: str, tls: bool) -> None:
    assert split_url(url) == (address, tls)


def test_a_bad_triton_url_is_a_clear_error() -> None:
    with pytest.raises(EngineError):
        split_url("ftp://triton:21")
