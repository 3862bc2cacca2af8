"""``kiosk screen`` as a user runs it: a real process, real files, tiny signed bundles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_builder import build_bundle, make_keys
from conftest import shared

REQUIRED = {"input", "task", "verdict", "score", "findings", "quality", "model", "backend",
            "timings_ms", "error"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    keys = make_keys(tmp_path)
    build_bundle(tmp_path / "models", keys, kind="fundus")
    build_bundle(tmp_path / "models", keys, kind="cxr")
    values = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    values.update(KIOSK_MODELS_DIR=str(tmp_path / "models"),
                  KIOSK_TRUSTED_KEYS=str(keys.trusted_dir), KIOSK_DATA_DIR=str(tmp_path / "data"),
                  KIOSK_SANDBOX_WORKERS="0", KIOSK_BATCH_SIZE="2")
    return values


def _kiosk(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiosk.cli", "screen", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_one_json_line_per_input_and_exit_1_when_one_is_refused(env, tmp_path: Path) -> None:
    fundus = shared("fundus", "eyepacs-fullres", "17_right.jpeg")
    film = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm")
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    done = _kiosk(env, "--json", str(fundus), str(film), str(junk))
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["input"] for r in lines] == [str(fundus), str(film), str(junk)]
    for result in lines:
        assert set(result) >= REQUIRED
        assert set(result["timings_ms"]) == {"decode", "quality", "preprocess", "infer", "total"}
    eye, chest, refused = lines
    assert eye["task"] == "fundus-dr" and eye["verdict"] in ("referable", "non_referable")
    assert eye["model"]["id"] == "fundus-dr" and len(eye["model"]["sha256"]) == 64
    assert eye["backend"] == "onnxruntime-cpu" and eye["error"] is None
    assert eye["quality"]["gradable"] is True and eye["quality"]["reasons"] == []
    assert chest["task"] == "cxr-pneumonia"  # from the DICOM modality, no --task needed
    assert refused["verdict"] is None and refused["error"]["code"] == "not_an_image"
    assert "it/s" not in done.stderr and "image/s" not in done.stderr  # no bar off a terminal


def test_exit_0_when_every_input_gets_a_verdict_and_folders_expand(env, tmp_path: Path) -> None:
    folder = tmp_path / "clinic"
    folder.mkdir()
    for name in ("10_left.jpeg", "10_right.jpeg", "13_left.jpeg"):
        (folder / name).write_bytes(shared("fundus", "eyepacs-fullres", name).read_bytes())
    done = _kiosk(env, "--json", "--task", "fundus-dr", str(folder), "--heatmaps",
                  str(tmp_path / "maps"))
    assert done.returncode == 0, done.stdout + done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == 3 and all(r["verdict"] is not None for r in results)
    assert [r["laterality"] for r in results] == ["L", "R", "L"]
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "10_left.jpeg.heatmap.png", "10_right.jpeg.heatmap.png", "13_left.jpeg.heatmap.png"]


def test_readable_lines_without_json(env) -> None:
    fundus = shared("fundus", "eyepacs-fullres", "13_right.jpeg")
    done = _kiosk(env, str(fundus))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{fundus}: ") and "fundus-dr" in done.stdout


def test_an_unknown_task_is_a_clear_error(env) -> None:
    done = _kiosk(env, "--task", "glaucoma", str(shared("fundus", "eyepacs-fullres", "13_right.jpeg")))
    assert done.returncode == 2
    assert "glaucoma" in done.stderr and "fundus-dr" in done.stderr and done.stdout == ""


def test_a_missing_file_is_refused_not_a_crash(env, tmp_path: Path) -> None:
    done = _kiosk(env, "--json", str(tmp_path / "gone.jpg"))
    assert done.returncode == 1
    [result] = [json.loads(line) for line in done.stdout.splitlines()]
    assert result["error"]["code"] == "unreadable" and result["verdict"] is None


def test_a_progress_bar_on_a_terminal(env) -> None:
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # a new pty is 0 columns wide, where tqdm draws nothing: size it like a small terminal
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    files = [str(shared("fundus", "eyepacs-fullres", n)) for n in ("10_left.jpeg", "10_right.jpeg")]
    process = subprocess.Popen([sys.executable, "-m", "kiosk.cli", "screen", "--json", *files],
                               env=env, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    seen = b""
    try:
        while chunk := os.read(leader, 65536):  # read while it runs: a pty keeps no backlog
            seen += chunk
    except OSError:  # EIO once the process has closed the terminal
        pass
    os.close(leader)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    assert b"2/2" in seen and b"image" in seen
    assert len(stdout.splitlines()) == 2  # the bar never mixes into the JSON
