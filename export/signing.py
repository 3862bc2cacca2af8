"""Ed25519 keys and signatures for model bundles (docs/bundle.md)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from export.errors import ExportError

KEY_ENV = "KIOSK_SIGNING_KEY"


def generate_key(private_pem: Path, public_file: Path) -> None:
    """Write a new private key (PEM, mode 0600) and its public key (raw 32 bytes, base64)."""
    if private_pem.exists():
        raise ExportError(f"{private_pem} exists: refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    private_pem.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_file.parent.mkdir(parents=True, exist_ok=True)
    public_file.write_text(public_key_text(key) + "\n")


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public half as the trusted-keys file holds it: raw bytes, base64, one line."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_private_key(path: Path | None = None) -> Ed25519PrivateKey:
    """The signing key from ``path`` or ``$KIOSK_SIGNING_KEY``; ExportError when absent."""
    if path is None:
        value = os.environ.get(KEY_ENV, "")
        if not value:
            raise ExportError(f"set ${KEY_ENV} to the Ed25519 private key (PEM) that signs bundles")
        path = Path(value)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read the signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ExportError(f"{path} is not an Ed25519 private key")
    return key


def sign(message: bytes, key: Ed25519PrivateKey) -> str:
    """Detached signature, base64, one line."""
    return base64.b64encode(key.sign(message)).decode("ascii")
