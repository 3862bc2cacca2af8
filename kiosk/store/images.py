"""Content-addressed image files: temp file → fsync → rename → fsync of the folder.

A file is either absent or whole under its sha256 name; a crash mid-write leaves at most a
``.tmp-*`` file that is never referenced. Free space is checked before writing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from kiosk.errors import DiskFullError, NotFoundError, StoreError

_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
MIB = 2**20


def check_free_space(folder: Path, needed_bytes: int, min_free_mb: int) -> None:
    """Raise DiskFullError when writing ``needed_bytes`` would leave less than the minimum free."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free - needed_bytes < min_free_mb * MIB:
        raise DiskFullError(
            f"The kiosk's disk is almost full ({free // MIB} MiB free, at least {min_free_mb} "
            "MiB must stay free): nothing was saved. Send waiting results, back up and "
            "remove old data, then try again."
        )


def _shard(root: Path, sha256: str) -> Path:
    return root / sha256[:2]


def sweep_partial(root: Path, older_than_s: float = 3600.0) -> int:
    """Remove temp files a crash left behind (never referenced); returns how many."""
    cutoff = time.time() - older_than_s
    removed = 0
    for path in root.glob("*/.tmp-*"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def find(root: Path, sha256: str) -> Path:
    """The file holding the image with this sha256 (NotFoundError when absent)."""
    if not _SHA.match(sha256):
        raise NotFoundError(f"{sha256!r} is not an image reference")
    for path in sorted(_shard(root, sha256).glob(sha256 + "*")):
        if path.name == sha256 or path.name[64:65] == ".":
            return path
    raise NotFoundError(f"image {sha256[:12]}… is not in the store")


def save(root: Path, data: bytes, suffix: str, min_free_mb: int) -> str:
    """Write the bytes under their sha256 (once), durably; returns the sha256."""
    suffix = suffix.lower()
    if not _SUFFIX.match(suffix):
        raise StoreError(f"unsupported image file suffix {suffix!r}", code="bad_suffix")
    sha256 = hashlib.sha256(data).hexdigest()
    folder = _shard(root, sha256)
    target = folder / (sha256 + suffix)
    if target.exists() and target.stat().st_size == len(data):
        return sha256
    check_free_space(root, len(data), min_free_mb)
    new_folder = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _write_durably(folder, target, data)
        if new_folder:
            fsync_dir(root)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                "The kiosk's disk filled up while saving the image: nothing was saved. "
                "Free some space and try again."
            ) from exc
        raise StoreError(f"could not save the image: {exc}") from exc
    return sha256


def _write_durably(folder: Path, target: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """Make a rename or new entry in the folder durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
