"""Power-cut style faults on the store: a capture killed mid-write (kill -9, >= 50 times) loses
nothing acknowledged; a full disk gives a clear error and shows nothing as saved that was not.

kill -9 stops the process but not the kernel, so it proves the write order (temp file → fsync →
rename → fsync of the folder; the SQLite commit after the files) and SQLite's atomic commit; a
real power cut additionally relies on synchronous=FULL and the disk honouring fsync.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import png_bytes, result

from kiosk.config import Config, load_config
from kiosk.errors import DiskFullError
from kiosk.store import Store

pytestmark = pytest.mark.slow  # crash tests: kill -9 of a capture, dozens of times

TESTS = Path(__file__).resolve().parent
KILLS = int(os.environ.get("KIOSK_CAPTURE_KILLS", "50"))

CAPTURE = """
import itertools, os, sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from kiosk.config import load_config
from kiosk.store import Store
from store_helpers import result
store = Store.open(load_config(env={}, data_dir=Path(sys.argv[1]), min_free_disk_mb=1,
                               fhir_url="http://127.0.0.1:9/fhir", hl7_address="127.0.0.1:9"))
print("ready", flush=True)
for n in itertools.count():
    photo = store.save_image(os.urandom(200_000), ".jpg")
    heatmap = store.save_image(os.urandom(30_000), ".png")
    patient = store.upsert_patient(f"K{sys.argv[2]}-{n}", "Kill Test", None, None, actor="nurse")
    screening = store.record_screening(patient.id, [result()], actor="nurse",
                                       image_shas=[photo], heatmap_shas=[heatmap])
    print("ack", screening.id, screening.uid, photo, heatmap, flush=True)
"""


def _capture_until_killed(data_dir: Path, round_no: int, delay_s: float) -> list[list[str]]:
    child = subprocess.Popen([sys.executable, "-c", CAPTURE, str(data_dir), str(round_no),
                              str(TESTS)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(delay_s)
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate()
    return [line.split()[1:] for line in out.splitlines() if line.startswith("ack ")]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_capture_killed_mid_write_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random(50)
    acked: list[list[str]] = []
    for round_no in range(KILLS):
        acked += _capture_until_killed(data_dir, round_no, rng.uniform(0.02, 0.25))
    store = Store.open(load_config(env={}, data_dir=data_dir, min_free_disk_mb=1))
    for screening_id, uid, photo, heatmap in acked:
        screening = store.get_screening(int(screening_id))
        assert screening.uid == uid and screening.image_shas == [photo]
        assert _sha256(store.image_path(photo)) == photo
        assert _sha256(store.image_path(heatmap)) == heatmap
    with store.db.read() as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        screenings = conn.execute("SELECT COUNT(*) FROM screenings").fetchone()[0]
        rows = conn.execute("SELECT image_sha, heatmap_sha FROM results").fetchall()
        unqueued = conn.execute("SELECT COUNT(*) FROM screenings s WHERE (SELECT COUNT(*)"
                                " FROM outbox o WHERE o.screening_id = s.id) != 2").fetchone()[0]
    for image_sha, heatmap_sha in rows:  # nothing saved refers to a file that is not whole
        assert _sha256(store.image_path(image_sha)) == image_sha
        assert _sha256(store.image_path(heatmap_sha)) == heatmap_sha
    assert unqueued == 0 and store.verify_audit() == (True, None)
    leftovers = len(list((data_dir / "images").rglob(".tmp-*")))
    print(f"\n[capture kill -9] {KILLS} kills, {len(acked)} screenings acknowledged, "
          f"{screenings} in the store, all acknowledged found whole; integrity_check ok; "
          f"{leftovers} unreferenced temp files left by kills")
    assert len(acked) > 0 and screenings >= len(acked)
    store.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_low_disk_is_refused_before_writing(tiny_disk: Path) -> None:
    store = Store.open(load_config(env={}, data_dir=tiny_disk / "data", min_free_disk_mb=1))
    with pytest.raises(DiskFullError) as caught:
        store.save_image(os.urandom(1_500_000), ".jpg")
    assert "at least 1 MiB must stay free" in caught.value.message
    assert not list((tiny_disk / "data" / "images").rglob("*.jpg"))
    store.close()


def test_a_full_disk_mid_write_shows_nothing_as_saved(tiny_disk: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config: Config = load_config(env={}, data_dir=tiny_disk / "data", min_free_disk_mb=0,
                                 fhir_url="http://127.0.0.1:9/fhir")
    store = Store.open(config)
    patient = store.upsert_patient("FULL-1", "Disk Full", None, None, actor="nurse")
    saved = store.save_image(png_bytes(1), ".png")
    with pytest.raises(DiskFullError) as caught:  # passes the check, then hits ENOSPC
        store.save_image(os.urandom(3_000_000), ".jpg")
    assert "nothing was saved" in caught.value.message
    images = config.data_dir / "images"
    assert not list(images.rglob("*.jpg")) and not list(images.rglob(".tmp-*"))
    filler = _fill(tiny_disk)
    monkeypatch.setattr("kiosk.store.store.SCREENING_BYTES", 0)  # reach SQLite's own ENOSPC
    with pytest.raises(DiskFullError):
        store.record_screening(patient.id, [result()], actor="nurse", image_shas=[saved],
                               heatmap_shas=[None])
    filler.unlink()
    with store.db.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM screenings").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    screening = store.record_screening(patient.id, [result()], actor="nurse",
                                       image_shas=[saved], heatmap_shas=[None])
    assert store.get_screening(screening.id).image_shas == [saved]
    store.close()
    copy = sqlite3.connect(config.db_path)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    copy.close()
