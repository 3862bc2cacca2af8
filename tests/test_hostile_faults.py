"""Kills, power cuts and a full disk during capture: 0 acknowledged screenings lost, 0 duplicated.

A workload process (``fuzz/capture_workload.py``) records screenings through the real store and
prints ``ACK`` only after ``record_screening`` returned. It is killed with SIGKILL at random
moments; for the power-cut rounds it runs under the ``fuzz/powerloss.c`` LD_PRELOAD shim and,
after the kill, every write that was not fsync-ed is rolled back before the store is reopened.
For the full-disk rounds the same shim fails writes with ENOSPC past a random byte budget.
After each round the store must open, pass ``PRAGMA integrity_check`` and the audit chain check,
and hold every acknowledged screening exactly once with its images whole and one outbox row per
destination. Power cuts fall at a random moment or right after a random write (``KIOSK_PL_CUT_AT_WRITE``).
Rounds: ``KIOSK_FAULT_ROUNDS`` (default 6; docs/reliability.md reports a longer run).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kiosk.config import load_config
from kiosk.store import Store

pytestmark = pytest.mark.slow  # fault tests: kills, power cuts and a full disk during capture

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import powerloss  # noqa: E402
from capture_workload import DESTINATIONS  # noqa: E402

ROUNDS = int(os.environ.get("KIOSK_FAULT_ROUNDS", "6"))
WORKLOAD = ROOT / "fuzz" / "capture_workload.py"


@dataclass
class Run:
    """What one workload process acknowledged, and how it ended."""

    acked: dict[str, list[str]] = field(default_factory=dict)  # screening uid -> image sha256s
    refused: str = ""
    status: int | None = None
    stderr: str = ""


def _run(data_dir: Path, start: int, *, env: dict[str, str] | None = None,
         kill_after_s: float | None = None, timeout_s: float = 120.0) -> Run:
    """Run the workload from seed ``start``; SIGKILL it ``kill_after_s`` after it is ready."""
    process = subprocess.Popen([sys.executable, str(WORKLOAD), str(data_dir), "--start", str(start)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=ROOT)
    run, ready = Run(), threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "READY":
                ready.set()
            elif word == "ACK":
                uid, *shas = rest.split()
                run.acked[uid] = shas
            elif word == "REFUSED":
                run.refused = rest
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if kill_after_s is not None:
        assert ready.wait(60), "the workload did not start"
        time.sleep(kill_after_s)
        process.send_signal(signal.SIGKILL)
    run.status = process.wait(timeout=timeout_s)
    reader.join(10)
    assert process.stderr is not None
    run.stderr = process.stderr.read()
    process.stdout.close()  # type: ignore[union-attr]
    process.stderr.close()
    return run


@dataclass
class Census:
    """What the reopened store holds of the acknowledged screenings."""

    lost: list[str]
    duplicated: list[str]
    bad_images: list[str]
    bad_outbox: list[str]
    integrity: str
    audit_ok: bool
    head_unreadable: bool  # the audit.head file exists but holds no "id hash" line


def _census(data_dir: Path, acked: dict[str, list[str]]) -> Census:
    """Reopen the store as the kiosk would and count what survived."""
    config = load_config(env={}, data_dir=data_dir.resolve(), min_free_disk_mb=1, **DESTINATIONS)
    head = config.data_dir / "audit.head"
    head_unreadable = head.exists() and len(head.read_text().split()) != 2
    store = Store.open(config)
    try:
        audit_ok = store.verify_audit()[0]
        images = {sha: store.image_path(sha) for shas in acked.values() for sha in shas
                  if _has_image(store, sha)}
    finally:
        store.close()
    # Closed, not only a ``with`` block (which commits but leaves it open): a connection this
    # process kept would keep the WAL index mapped, and the next round's census would trust that
    # stale index instead of recovering from the WAL, which hid the round's commits and once
    # checkpointed over them (the test "lost" acknowledged screenings that SQLite had kept).
    conn = sqlite3.connect(config.db_path)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        counts = dict(conn.execute("SELECT uid, COUNT(*) FROM screenings GROUP BY uid").fetchall())
        outbox = dict(conn.execute("SELECT s.uid, COUNT(o.id) FROM screenings s LEFT JOIN outbox o "
                                   "ON o.screening_id = s.id GROUP BY s.uid").fetchall())
    finally:
        conn.close()
    bad_images = [sha for shas in acked.values() for sha in shas
                  if sha not in images or hashlib.sha256(images[sha].read_bytes()).hexdigest() != sha]
    return Census(
        lost=[uid for uid in acked if uid not in counts],
        duplicated=[uid for uid, n in counts.items() if n > 1],
        bad_images=bad_images,
        bad_outbox=[uid for uid, n in outbox.items() if n != len(DESTINATIONS)],
        integrity=integrity,
        audit_ok=audit_ok,
        head_unreadable=head_unreadable,
    )


def _has_image(store: Store, sha: str) -> bool:
    try:
        store.image_path(sha)
    except Exception:  # NotFoundError: counted as a bad image below
        return False
    return True


def _assert_whole(census: Census, acked: int) -> None:
    assert census.integrity == "ok"
    assert not census.head_unreadable, "audit.head was left empty (written without fsync?)"
    assert census.audit_ok, "the audit chain no longer verifies"
    assert census.lost == [], f"{len(census.lost)} of {acked} acknowledged screenings lost"
    assert census.duplicated == [] and census.bad_outbox == []
    assert census.bad_images == []


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return powerloss.build(tmp_path_factory.mktemp("shim"))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no C compiler to build the power-loss shim: {exc}")


def test_kills_during_capture_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    rng, acked = random.Random(11), {}
    for round_ in range(ROUNDS):
        run = _run(tmp_path / "data", round_ * 1000, kill_after_s=rng.uniform(0.05, 1.5))
        assert run.status == -signal.SIGKILL, run.stderr[-2000:]
        acked |= run.acked
        _assert_whole(_census(tmp_path / "data", acked), len(acked))
    assert len(acked) >= ROUNDS, "the workload hardly recorded anything before the kills"
    print(f"\nkill -9 during capture: {ROUNDS} kills, {len(acked)} acknowledged, 0 lost, 0 duplicated")


def test_power_cuts_during_capture_lose_and_duplicate_nothing(tmp_path: Path, shim: Path) -> None:
    rng, acked, undone = random.Random(12), {}, 0
    data_dir, journal = tmp_path / "data", tmp_path / "journal"
    data_dir.mkdir()
    for round_ in range(ROUNDS):
        # even rounds: a cut at a random moment; odd rounds: a cut right after a random write
        cut_at = rng.randrange(1, 300) if round_ % 2 else None
        env = powerloss.environment(shim, root=data_dir, journal=journal, cut_at_write=cut_at)
        run = _run(data_dir, round_ * 1000, env=env,
                   kill_after_s=None if cut_at else rng.uniform(0.05, 1.5))
        assert run.status == -signal.SIGKILL, run.stderr[-2000:]
        before = tmp_path / "before-cut"  # the round's journal and files as the kill left them
        shutil.rmtree(before, ignore_errors=True)
        before.mkdir()
        if journal.exists():
            shutil.copy2(journal, before / "journal")
        for name in ("kiosk.db", "kiosk.db-wal", "kiosk.db-shm", "audit.head"):
            if (data_dir / name).exists():
                shutil.copy2(data_dir / name, before / name)
        undone += powerloss.power_cut(journal).undone_writes
        acked |= run.acked
        census = _census(data_dir, acked)
        if census != _census_of_nothing_lost(census):
            _keep_evidence(tmp_path, round_, cut_at, census, run)
        _assert_whole(census, len(acked))
    assert len(acked) >= ROUNDS
    print(f"\npower cut during capture: {ROUNDS} cuts, {undone} unsynced writes dropped, "
          f"{len(acked)} acknowledged, 0 lost, 0 duplicated, audit chain and head ok")


def _census_of_nothing_lost(census: Census) -> Census:
    """The census a whole store gives (to compare with)."""
    return Census(lost=[], duplicated=[], bad_images=[], bad_outbox=[], integrity="ok",
                  audit_ok=True, head_unreadable=False)


def _keep_evidence(tmp_path: Path, round_: int, cut_at: int | None, census: Census,
                   run: Run) -> None:
    """A failed round's store, shim journal and workload output, kept for whoever looks next
    (tests/artifacts/powerloss/, git-ignored): this test failed once in a full suite on
    2026-12-04 (acknowledged screenings lost, audit chain broken) and passed 250 rounds after."""
    kept = ROOT / "tests" / "artifacts" / "powerloss" / f"round-{round_}"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(tmp_path, kept)
    (kept / "what.txt").write_text(f"round {round_}, cut_at_write {cut_at}\n{census}\n"
                                   f"stderr:\n{run.stderr[-20000:]}\n")


# Found with the shim at 11:25 (audit.head replaced without fsync, left empty by a cut: a false
# tamper alarm after every power cut); fixed in d8ebf8c.
def test_a_power_cut_right_after_the_audit_head_is_replaced_keeps_the_audit_check_green(
        tmp_path: Path, shim: Path) -> None:
    data_dir, journal = tmp_path / "data", tmp_path / "journal"
    data_dir.mkdir()
    env = powerloss.environment(shim, root=data_dir, journal=journal, cut_after_rename_to="audit.head")
    run = _run(data_dir, 0, env=env)
    assert run.status == -signal.SIGKILL, run.stderr[-2000:]
    powerloss.power_cut(journal)
    census = _census(data_dir, run.acked)
    assert census.integrity == "ok" and census.audit_ok, census


CONTROL = """
import os, sys
path = sys.argv[1]
with open(path, "wb") as handle:
    handle.write(b"acknowledged bytes")
    handle.flush()
    if sys.argv[2] == "fsync":
        os.fsync(handle.fileno())
print("ACK", flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize("sync", ["fsync", "no-fsync"])
def test_the_shim_drops_exactly_what_was_not_synced(tmp_path: Path, shim: Path, sync: str) -> None:
    # The control that shows the power-cut rounds can fail: an ack given before fsync is lost.
    target, journal = tmp_path / "data" / "file", tmp_path / "journal"
    target.parent.mkdir()
    env = powerloss.environment(shim, root=target.parent, journal=journal)
    subprocess.run([sys.executable, "-c", CONTROL, str(target), sync], env=env, check=False,
                   capture_output=True)
    assert target.read_bytes() == b"acknowledged bytes"  # a plain kill keeps the page cache
    powerloss.power_cut(journal)
    assert target.read_bytes() == (b"acknowledged bytes" if sync == "fsync" else b"")


def test_a_full_disk_refuses_cleanly_and_loses_nothing(tmp_path: Path, shim: Path) -> None:
    rng, acked, refusals = random.Random(13), {}, 0
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _run(data_dir, 0, env=None, timeout_s=120, kill_after_s=0.3)  # a store with some screenings
    for round_ in range(1, ROUNDS + 1):
        env = powerloss.environment(shim, root=data_dir, enospc_after=rng.randrange(20_000, 400_000))
        run = _run(data_dir, round_ * 1000, env=env)
        assert run.status == 3 and run.refused in {"disk_full", "store_error"}, (
            run.status, run.refused, run.stderr[-3000:])
        refusals += 1
        acked |= run.acked
        _assert_whole(_census(data_dir, acked), len(acked))
    after = _run(data_dir, 99_000, kill_after_s=0.5)  # space freed: capture goes on
    assert after.acked, after.stderr[-2000:]
    print(f"\ndisk full during capture: {refusals} refusals, {len(acked)} acknowledged before them, "
          "0 lost, 0 duplicated, capture resumed after space was freed")
