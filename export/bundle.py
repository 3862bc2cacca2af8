"""Write a bundle folder: files, manifest (sorted keys, 2-space indent) and its signature."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engines.bundle import sha256_file
from export.errors import ExportError
from export.signing import public_key_text, sign

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The exact bytes that are signed: UTF-8 JSON, keys sorted, 2-space indent, final newline."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def seal(folder: Path, manifest: dict[str, Any], key: Ed25519PrivateKey, key_id: str) -> Path:
    """List every file's sha256 in the manifest, write it, and sign it; returns the manifest path."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in (MANIFEST, SIGNATURE))
    if not any(p.suffix == ".onnx" for p in files):
        raise ExportError(f"{folder} holds no ONNX model to seal")
    manifest = {**manifest, "key_id": key_id, "files": {p.name: sha256_file(p) for p in files}}
    raw = manifest_bytes(manifest)
    (folder / MANIFEST).write_bytes(raw)
    (folder / SIGNATURE).write_text(sign(raw, key) + "\n")
    return folder / MANIFEST


def fresh_folder(folder: Path) -> Path:
    """An empty bundle folder (an older bundle of the same name is replaced)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def verify_with_kiosk(folder: Path, key: Ed25519PrivateKey, key_id: str) -> None:
    """Load the new bundle with the kiosk's own verifier, trusting only this key."""
    from engines.bundle import load_bundle

    with tempfile.TemporaryDirectory() as trusted:
        (Path(trusted) / f"{key_id}.pub").write_text(public_key_text(key) + "\n")
        load_bundle(folder, Path(trusted))
