"""A spool that survives a power cut (issue 18, point 5).

The DICOM objects for the PACS are rendered into ``data/spool/dicom``. Before, the files were
never fsync-ed and a rendering was reused as it was found: a power cut left it empty, both PACS
items were parked for good, and ``--retry`` parked them again. Now each rendering goes to a new
folder, is fsync-ed with a manifest of sizes and hashes, is checked before every send and
rendered again when damaged; ``.partial-*`` folders left by kills are swept.

The power cut is the project's undo-journal shim (fuzz/powerloss.c): the sync process runs under
it, and every write it had not fsync-ed is rolled back before the kiosk looks again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from peers.fixtures import OrthancPeer, free_port
from store_helpers import screen

from kiosk.config import Config
from kiosk.store import Store
from kiosk.sync import make_worker
from kiosk.sync.base import Delivery
from kiosk.sync.spool import MANIFEST, spool_root, spooled, verified

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import powerloss  # noqa: E402


def _down_pacs(config: Config) -> Config:
    """Both PACS routes configured, pointing at ports where nothing listens."""
    return replace(config, min_free_disk_mb=1, sync_timeout_s=2.0,
                   pacs_address=f"ORTHANC@127.0.0.1:{free_port()}",
                   dicomweb_url=f"http://127.0.0.1:{free_port()}/dicom-web")


def _env(config: Config) -> dict[str, str]:
    return {"KIOSK_DATA_DIR": str(config.data_dir), "KIOSK_PACS_ADDRESS": config.pacs_address,
            "KIOSK_DICOMWEB_URL": config.dicomweb_url, "KIOSK_MIN_FREE_DISK_MB": "1",
            "KIOSK_SYNC_TIMEOUT_S": "2"}


def _renderings(config: Config) -> list[Path]:
    return sorted(p for p in spool_root(config).iterdir() if not p.name.startswith("."))


def test_a_power_cut_after_rendering_leaves_renderings_that_still_send(
        config: Config, tmp_path: Path, orthanc_pair: tuple[OrthancPeer, OrthancPeer]) -> None:
    try:
        shim = powerloss.build(tmp_path / "shim")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no C compiler to build the power-loss shim: {exc}")
    down = _down_pacs(config)
    store = Store.open(down)
    screen(store, 700, identifier="CUT-700")
    store.close()
    journal = tmp_path / "journal"
    env = powerloss.environment(shim, root=config.data_dir, journal=journal) | _env(down)
    done = subprocess.run([sys.executable, "-m", "kiosk.cli", "sync"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert '"retrying": 2' in done.stdout, done.stdout + done.stderr  # rendered, PACS down
    assert powerloss.journal_records(journal), "the shim saw no write: it was not loaded"
    cut = powerloss.power_cut(journal)  # the power goes: unsynced writes are lost
    rendered = _renderings(down)
    assert len(rendered) == 1
    print(f"\n[spool power cut] {cut.undone_writes} unsynced writes dropped in "
          f"{len(cut.files)} files; renderings whole: "
          f"{sum(verified(f) is not None for f in rendered)} of {len(rendered)}")
    sops = [p.name.split("_", 1)[1][:-4] for folder in rendered for p in folder.glob("*.dcm")]
    assert len(sops) == 3  # two overlays and the SR
    cstore, stow = orthanc_pair
    store = Store.open(replace(down, pacs_address=cstore.pacs_address,
                               dicomweb_url=stow.dicomweb_url))
    with store.db.write() as conn:  # the clock jumps past the backoff
        conn.execute("UPDATE outbox SET next_attempt = 0")
    report = make_worker(store).run_once()
    assert report.sent == 2 and report.parked == 0, (report, store.parked_items())
    held_cstore, held_stow = cstore.sop_uids(), stow.sop_uids()
    assert all(held_cstore[s] == 1 and held_stow[s] == 1 for s in sops)
    assert not list(spool_root(down).iterdir())  # released once both routes sent
    store.close()


def test_a_damaged_rendering_is_rendered_again_not_sent(config: Config) -> None:
    store = Store.open(_down_pacs(config))
    screen(store, 710, identifier="DMG-710")
    item = store.due_items(1)[0]
    delivery = Delivery(item, store.get_screening(item.screening_id), store)
    first = spooled(delivery, store.config)
    whole = {p.name: p.read_bytes() for p in first}
    first[0].write_bytes(b"")  # as a power cut leaves a file that was never synced
    (first[-1].parent / MANIFEST).write_bytes(whole[first[-1].name][:10])
    again = spooled(delivery, store.config)
    assert [p.name for p in again] == [p.name for p in first]
    assert all(p.stat().st_size == len(whole[p.name]) for p in again)
    assert verified(again[0].parent) == again
    first[1].write_bytes(whole[first[1].name][:-100])  # cut short
    assert verified(first[1].parent) is None
    assert all(p.stat().st_size > 0 for p in spooled(delivery, store.config))
    store.close()


KILLED_MID_RENDER = """
import os, signal, sys
from pathlib import Path
from kiosk.config import load_config
from kiosk.store import Store
from kiosk.sync import spool
from kiosk.sync.base import Delivery
real = spool._write_durably
def write_then_die(path, data):
    real(path, data)
    os.kill(os.getpid(), signal.SIGKILL)  # the kiosk is killed halfway through a rendering
spool._write_durably = write_then_die
config = load_config(env={}, data_dir=Path(sys.argv[1]), pacs_address=sys.argv[2],
                     min_free_disk_mb=1)
store = Store.open(config)
item = store.due_items(1)[0]
spool.spooled(Delivery(item, store.get_screening(item.screening_id), store), config)
"""


@pytest.mark.slow  # kill -9 of renderings in flight
def test_partial_folders_left_by_kills_are_swept(config: Config) -> None:
    down = _down_pacs(config)
    store = Store.open(down)
    screen(store, 720, identifier="KILL-720")
    store.close()
    for _ in range(3):
        killed = subprocess.run([sys.executable, "-c", KILLED_MID_RENDER, str(down.data_dir),
                                 down.pacs_address], cwd=ROOT, capture_output=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert killed.returncode == -9, killed.stderr
    leftovers = list(spool_root(down).glob(".partial-*"))
    assert len(leftovers) == 3
    store = Store.open(down)
    make_worker(store).run_once()  # a worker starting (with the sync lock) sweeps them
    assert not list(spool_root(down).glob(".partial-*"))
    assert len(_renderings(down)) == 1  # the one rendering of the item, for its retry
    store.close()
