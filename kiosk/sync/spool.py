"""The PACS spool: each outbox item's DICOM objects rendered once, durably, checked before sending.

Both PACS routes (C-STORE, STOW-RS) and every retry send the same rendering. A rendering is
written into a fresh ``.partial-*`` folder, each file fsync-ed, with a manifest of every file's
size and sha256 (fsync-ed too), then the folder is fsync-ed and renamed into place and the spool
folder fsync-ed. Before each send the rendering is checked against its manifest: one that a
power cut emptied or cut short (or a missing manifest) is discarded and rendered again, never
sent and never a reason to park the item. ``.partial-*`` folders that kills leave behind are
swept when a worker starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from kiosk.config import Config
from kiosk.errors import SyncError
from kiosk.sync.base import Delivery
from kiosk.sync.dicom_objects import datasets

PACS_ROUTES = ("dicom", "dicomweb")
MANIFEST = "manifest.json"
PARTIAL = ".partial-"

#: One rendering at a time in this process: the two PACS threads share each item's rendering.
_lock = threading.Lock()


def spool_root(config: Config) -> Path:
    """The folder every rendering lives in."""
    return config.data_dir / "spool" / "dicom"


def _folder(delivery: Delivery, config: Config) -> Path:
    return spool_root(config) / f"{delivery.screening.uid}-{delivery.item.report_status}"


def spooled(delivery: Delivery, config: Config) -> list[Path]:
    """The item's objects as whole DICOM files (SR last): the rendering in the spool when it
    matches its manifest, else a new one."""
    folder = _folder(delivery, config)
    with _lock:
        files = verified(folder)
        if files is None:
            if folder.exists():  # damaged (a power cut, a full disk): render it again
                discard(folder)
            try:
                files = _render(delivery, config, folder)
            except OSError as exc:  # the kiosk's own disk, not the item: retry later
                raise SyncError(f"could not write the DICOM rendering: {exc}",
                                code="spool", retryable=True) from exc
    return files


def verified(folder: Path) -> list[Path] | None:
    """The rendering's files in sending order when each matches the manifest, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
        files = []
        for entry in manifest["files"]:
            path = folder / str(entry["name"])
            data = path.read_bytes()
            if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                return None
            files.append(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files or None


def _render(delivery: Delivery, config: Config, folder: Path) -> list[Path]:
    partial = Path(tempfile.mkdtemp(prefix=PARTIAL, dir=_mkdirs(folder.parent)))
    entries = []
    for number, dataset in enumerate(datasets(delivery, config)):
        name = f"{number:03d}_{dataset.SOPInstanceUID}.dcm"
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        _write_durably(partial / name, data)
        entries.append({"name": name, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    _write_durably(partial / MANIFEST, json.dumps({"files": entries}).encode())
    _fsync_folder(partial)
    try:
        partial.rename(folder)
    except OSError:  # another process rendered it first: use theirs if it is whole
        shutil.rmtree(partial, ignore_errors=True)
        files = verified(folder)
        if files is None:
            raise
        return files
    _fsync_folder(folder.parent)
    return [folder / str(entry["name"]) for entry in entries]


def _write_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdirs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def discard(folder: Path) -> None:
    """Remove a rendering: renamed to a ``.partial-*`` name first, so that a kill halfway
    through the removal leaves something the next sweep removes, never a half rendering."""
    doomed = folder.parent / f"{PARTIAL}discarded-{os.urandom(6).hex()}"
    try:
        folder.rename(doomed)
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def release_spool(delivery: Delivery, config: Config) -> None:
    """Remove the item's rendering once no PACS route still needs it (called after the item
    is marked sent, so of two routes finishing together the second always sees the first)."""
    if not delivery.store.unsent_siblings(delivery.item, PACS_ROUTES):
        with _lock:
            discard(_folder(delivery, config))


def sweep_partials(config: Config) -> int:
    """Remove the ``.partial-*`` folders that kills left behind (call with the sync lock held
    and before the first rendering); returns how many."""
    root = spool_root(config)
    if not root.is_dir():
        return 0
    swept = 0
    with _lock:
        for leftover in root.glob(PARTIAL + "*"):
            shutil.rmtree(leftover, ignore_errors=True)
            swept += 1
    return swept
