"""Simulated power loss: build the undo-journal shim, run a process under it, drop unsynced writes.

    shim = build(Path("/tmp/pl"))
    env = environment(shim, root=data_dir, journal=journal)      # LD_PRELOAD + settings
    ... run the workload with env, kill it with SIGKILL ...
    undone = power_cut(journal)                                    # files as a power cut leaves them

See ``powerloss.c`` for what is modelled: file contents that were not fsync-ed are rolled back to
their last synced state (a never-synced new file is left empty); directory entries are durable.
The same shim simulates a full disk: writes under the root fail with ENOSPC past a byte budget.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "powerloss.c"


def build(folder: Path) -> Path:
    """Compile the shim into ``folder`` (once per source version); returns the .so path."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    target = folder / f"powerloss-{digest}.so"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(target), str(SOURCE), "-ldl", "-lpthread"],
                       check=True, capture_output=True)
    return target


def environment(shim: Path, *, root: Path, journal: Path | None = None,
                enospc_after: int | None = None, cut_at_write: int | None = None,
                cut_after_rename_to: str | None = None) -> dict[str, str]:
    """The environment of a process whose writes under ``root`` go through the shim."""
    env = dict(os.environ, LD_PRELOAD=str(shim), KIOSK_PL_ROOT=str(root.resolve()))
    if journal is not None:
        env["KIOSK_PL_JOURNAL"] = str(journal)
    if enospc_after is not None:
        env["KIOSK_PL_ENOSPC_AFTER"] = str(enospc_after)
    if cut_at_write is not None:
        env["KIOSK_PL_CUT_AT_WRITE"] = str(cut_at_write)
    if cut_after_rename_to is not None:
        env["KIOSK_PL_CUT_AFTER_RENAME_TO"] = cut_after_rename_to
    return env


@dataclass
class _Undo:
    offset: int
    old_size: int
    old: bytes


@dataclass
class PowerCut:
    """What the simulated power cut rolled back."""

    undone_writes: int = 0
    files: set[str] = field(default_factory=set)


def _records(data: bytes) -> list[tuple[str, tuple[object, ...]]]:
    """The journal's records in order (a torn last record is ignored)."""
    found: list[tuple[str, tuple[object, ...]]] = []
    at = 0

    def path() -> str:
        nonlocal at
        (length,) = struct.unpack_from("<I", data, at)
        text = data[at + 4: at + 4 + length].decode("utf-8", "surrogateescape")
        if at + 4 + length > len(data):
            raise struct.error("torn path")
        at += 4 + length
        return text

    try:
        while at < len(data):
            kind = chr(data[at])
            at += 1
            if kind == "W":
                name = path()
                offset, old_size, old_len = struct.unpack_from("<QQI", data, at)
                at += 20
                old = data[at: at + old_len]
                if len(old) != old_len:
                    break
                at += old_len
                found.append((kind, (name, _Undo(offset, old_size, old))))
            elif kind in "SU":
                found.append((kind, (path(),)))
            elif kind == "R":
                found.append((kind, (path(), path())))
            else:
                break
    except struct.error:
        pass
    return found


def journal_records(journal: Path) -> list[tuple[str, tuple[object, ...]]]:
    """The file operations the shim journalled so far (to show it was loaded and saw writes)."""
    return _records(journal.read_bytes() if journal.exists() else b"")


def power_cut(journal: Path) -> PowerCut:
    """Undo every write the journal shows was not fsync-ed (call after the process is dead)."""
    pending: dict[str, list[_Undo]] = {}
    for kind, args in _records(journal.read_bytes() if journal.exists() else b""):
        if kind == "W":
            name, undo = args
            assert isinstance(undo, _Undo)
            pending.setdefault(str(name), []).append(undo)
        elif kind in ("S", "U"):  # synced: durable from here; unlinked: nothing left to undo
            pending.pop(str(args[0]), None)
        elif kind == "R":
            old, new = str(args[0]), str(args[1])
            pending[new] = pending.pop(old, [])
            for name in [n for n in pending if n.startswith(old + "/")]:  # a folder renamed:
                pending[new + name[len(old):]] = pending.pop(name)  # its files' writes follow
    cut = PowerCut()
    for name, undos in pending.items():
        if not undos or not os.path.exists(name):
            continue
        with open(name, "r+b") as handle:
            for undo in reversed(undos):
                handle.seek(undo.offset)
                handle.write(undo.old)
                handle.truncate(undo.old_size)
        cut.undone_writes += len(undos)
        cut.files.add(name)
    journal.unlink(missing_ok=True)
    return cut
