"""No folder name breaks the kiosk, and a film the kiosk failed by its own fault is never lost
(issue 18.7).

- A folder named ``kiosk`` in the working directory (``KIOSK_DATA_DIR=./kiosk``) used to be
  imported by the decode workers' forkserver in place of an editable install's ``kiosk``: every
  worker died on start and every pushed film was refused for good as ``decode_failed``.
- Films acknowledged to the X-ray unit that fail because of the kiosk (its decoder cannot start)
  stay in the spool, are retried, and raise an alarm (``held/``, the log, ``kiosk doctor``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hardware.spool import Spool, SpoolWorker
from kiosk.commands.doctor import check_disk
from kiosk.config import load_config
from kiosk.errors import IntakeError
from kiosk.sandbox import SandboxedIntake
from tests.conftest import shared

ROOT = Path(__file__).resolve().parent.parent
#: Like the ``kiosk`` console script: the main module imports the package itself, which each
#: worker re-imports (multiprocessing runs the parent's main module in the child).
MAIN = """
import sys
from kiosk import __version__
from kiosk.sandbox import SandboxedIntake

if __name__ == "__main__":
    with SandboxedIntake(workers=1, timeout_s=60) as box:
        image = box.read_image(open(sys.argv[1], "rb").read(), target_size=256)
    print(__version__, image.pixels.shape, image.kind)
"""


def test_a_folder_named_kiosk_in_the_working_directory_does_not_stop_the_decoders(tmp_path: Path) -> None:
    film = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm")
    work = tmp_path / "clinic"
    (work / "kiosk" / "spool").mkdir(parents=True)  # KIOSK_DATA_DIR=./kiosk, as reported
    (tmp_path / "bin").mkdir()  # the script elsewhere, as the console script is in the venv
    script = tmp_path / "bin" / "main.py"
    script.write_text(MAIN)
    env = {**os.environ, "KIOSK_DATA_DIR": "./kiosk"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, str(script), str(film)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cxr" in done.stdout, done.stdout


def _held_worker(spool: Spool, screen: object) -> tuple[SpoolWorker, threading.Event, threading.Thread]:
    worker = SpoolWorker(spool, screen, retry_s=0.05)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    return worker, stop, thread


def test_an_acknowledged_film_is_kept_with_an_alarm_while_the_decoder_cannot_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    film = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm")
    config = load_config(env={}, data_dir=tmp_path / "data")
    spool = Spool(config.data_dir / "spool")
    path = spool.put(film.read_bytes())
    broken = SandboxedIntake(workers=1, decoder="kiosk_no_such_module:read_image")  # cannot start
    outcomes: list[str] = []

    def screen(spooled: Path) -> None:
        decoder = broken if len(outcomes) < 3 else SandboxedIntake(workers=0)
        try:
            image = decoder.read_image(spooled.read_bytes(), target_size=256)
        except IntakeError as exc:  # as hardware/pushed.py re-raises a refusal: code kept
            outcomes.append(exc.code)
            raise IntakeError(exc.message, code=exc.code) from exc
        outcomes.append(str(image.kind))

    caplog.set_level(logging.ERROR)
    _worker, stop, thread = _held_worker(spool, screen)
    try:
        deadline = time.monotonic() + 120
        while len(outcomes) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        (alarm,) = spool.held()
        assert alarm[0] == path.name and alarm[1]["code"] == "decoder_unavailable"
        (doctor,) = [c for c in check_disk(config) if c.name == "pushed films"]
        assert doctor.status == "FAIL" and "kept for retry" in doctor.detail
        while spool.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
        broken.close()
    assert outcomes[:3] == ["decoder_unavailable"] * 3 and outcomes[3] == "cxr"
    assert spool.pending() == [] and spool.refused() == [] and spool.held() == []
    assert any("ALARM" in record.getMessage() for record in caplog.records)
    assert [c for c in check_disk(config) if c.status == "FAIL"] == []


def test_a_film_refused_for_its_own_sake_is_still_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.put(b"DICM but not really a film")

    def screen(spooled: Path) -> None:
        SandboxedIntake(workers=0).read_image(spooled.read_bytes())

    _worker, stop, thread = _held_worker(spool, screen)
    try:
        deadline = time.monotonic() + 30
        while spool.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    ((refused, reason),) = spool.refused()
    assert refused.name == path.name and reason["code"] == "not_an_image"
    assert spool.held() == []


@pytest.mark.parametrize("code", ["codec_missing", "no_model", "infer_failed", "cuda_error"])
def test_other_faults_of_the_kiosk_keep_the_film_too(tmp_path: Path, code: str) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.put(b"a film the X-ray unit was told is stored")
    attempts: list[Path] = []

    def screen(spooled: Path) -> None:
        attempts.append(spooled)
        if len(attempts) < 2:  # as hardware/pushed.py re-raises the pipeline's refusal
            raise IntakeError("the kiosk could not screen it", code=code)

    _worker, stop, thread = _held_worker(spool, screen)
    try:
        deadline = time.monotonic() + 30
        while spool.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert attempts == [path, path] and spool.refused() == [] and spool.held() == []
