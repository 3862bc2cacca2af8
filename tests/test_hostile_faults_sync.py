"""Power cuts during sync: the sync process runs under the undo-journal shim (fuzz/powerloss.c) and
is cut right after a random write (the shim kills it there); every write it had not fsync-ed is
rolled back before the next start. Then the outbox is drained and every peer must hold every
result exactly once.

Needs the real peers (FHIR, MLLP, two Orthancs), so it runs inside the private network namespace:
    unshare -n env KIOSK_TEST_NETNS=1 bash -c 'ip link set lo up && \
        python -m pytest tests/test_hostile_faults_sync.py -q -s'
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers.fixtures import FhirPeer, OrthancPeer
from peers.mllp import MllpPeer
from peers.world import World, baseline, census, copy_template, open_world, record_template

from kiosk.config import Config, load_config
from kiosk.store import Store
from kiosk.sync import make_worker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import powerloss  # noqa: E402

pytestmark = pytest.mark.slow  # fault tests: power cuts during sync, against the real peers

N = int(os.environ.get("KIOSK_POWERCUT_N", "20"))
CUTS = int(os.environ.get("KIOSK_POWERCUT_CUTS", "5"))


@pytest.fixture
def world(fhir_peer: FhirPeer, mllp_peer: MllpPeer,
          orthanc_pair: tuple[OrthancPeer, OrthancPeer]) -> Iterator[World]:
    opened = open_world(fhir_peer, mllp_peer, orthanc_pair)
    yield opened
    opened.close()


def _sync_process(config: Config, env: dict[str, str]) -> subprocess.Popen:
    settings = {"KIOSK_DATA_DIR": str(config.data_dir), "KIOSK_FHIR_URL": config.fhir_url,
                "KIOSK_HL7_ADDRESS": config.hl7_address, "KIOSK_PACS_ADDRESS": config.pacs_address,
                "KIOSK_DICOMWEB_URL": config.dicomweb_url, "KIOSK_SYNC_INTERVAL_S": "1",
                "KIOSK_SYNC_TIMEOUT_S": "5", "KIOSK_MIN_FREE_DISK_MB": "1"}
    return subprocess.Popen([sys.executable, "-m", "kiosk.cli", "sync", "--watch"], cwd=ROOT,
                            env=env | settings, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)


def _clock_jumps(store: Store) -> None:
    with store.db.write() as conn:
        conn.execute("UPDATE outbox SET next_attempt = 0 WHERE state = 'waiting'")


def test_power_cuts_during_sync_deliver_exactly_once(tmp_path: Path, world: World) -> None:
    try:
        shim = powerloss.build(tmp_path / "shim")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no C compiler to build the power-loss shim: {exc}")
    template = record_template(load_config(env={}, data_dir=tmp_path / "template"), N)
    copy_template(template, tmp_path / "kiosk")
    config = world.config(load_config(env={}, data_dir=(tmp_path / "kiosk").resolve()))
    before = baseline(world)
    rng, journal, undone, logged = random.Random(20261130), tmp_path / "journal", 0, 0
    for _ in range(CUTS):
        # a cut right after a random write of the sync process (or at 10 s if it has gone idle)
        env = powerloss.environment(shim, root=config.data_dir, journal=journal,
                                    cut_at_write=rng.randrange(1, 60))
        process = _sync_process(config, env)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        logged += len(powerloss.journal_records(journal))
        undone += powerloss.power_cut(journal).undone_writes  # before anything else opens the store
        store = Store.open(config)
        _clock_jumps(store)
        store.close()
    store = Store.open(config)
    with store.db.read() as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    worker = make_worker(store)
    for _ in range(60):
        worker.run_once()
        if not sum(s.waiting for s in store.outbox_status()):
            break
        _clock_jumps(store)
    result = census(world, store, before)
    print(f"\n[power cut during sync] N={N} x 4 destinations, {CUTS} cuts, {logged} journalled file "
          f"operations, {undone} unsynced writes dropped; exactly once: {result.exactly_once()}; "
          f"extra: {result.extra}")
    assert logged > 0, "the shim saw no write: it was not loaded"
    assert result.exactly_once(), result
    assert not store.parked_items()  # a rendering damaged by a cut is rendered again, not parked
    spool = config.data_dir / "spool" / "dicom"
    assert not list(spool.iterdir()) if spool.exists() else True  # no .partial-* left by cuts
    assert store.verify_audit()[0]
    store.close()
