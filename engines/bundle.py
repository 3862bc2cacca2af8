"""Signed model bundles: load a folder (or ``.tar``), verify it, and expose its contract.

Verification (docs/bundle.md): the Ed25519 signature over ``manifest.json`` under a trusted key,
the sha256 of every listed file, the preprocessing steps, and the ONNX graph's input/output names
and shapes against the manifest. Any failure is a :class:`BundleError` naming the bundle and the
reason; nothing half-verified is returned.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.errors import BundleError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ACTIVATIONS = ("sigmoid", "softmax")
REQUIRED_KEYS = ("format", "task", "version", "key_id", "files", "variants", "input", "outputs",
                 "findings")


@dataclass(frozen=True)
class Bundle:
    """A verified model bundle: where it lies, its manifest, and who signed it."""

    path: Path
    manifest: dict[str, Any]
    sha256: str  # of manifest.json, which lists every file's sha256: the bundle's identity
    key_id: str

    @property
    def task(self) -> str:
        """The screening task, e.g. ``fundus-dr``."""
        return str(self.manifest["task"])

    @property
    def version(self) -> str:
        """The bundle's version string."""
        return str(self.manifest["version"])

    @property
    def input_spec(self) -> dict[str, Any]:
        """The manifest's ``input`` (size, channels, steps) that preprocessing applies."""
        return dict(self.manifest["input"])

    @property
    def labels(self) -> list[str]:
        """One label per column of the logits output."""
        return [str(label) for label in self.manifest["outputs"]["labels"]]

    @property
    def input_name(self) -> str:
        """The ONNX input name."""
        return str(self.manifest["input"].get("name", "image"))

    @property
    def output_names(self) -> list[str]:
        """The ONNX outputs the kiosk reads: logits, and the class-activation maps if declared."""
        outputs = self.manifest["outputs"]
        names = [str(outputs.get("logits", "logits"))]
        if outputs.get("cam"):
            names.append(str(outputs["cam"]))
        return names

    def variant_path(self, variant: str) -> Path:
        """The ONNX file of a variant (``fp32``, ``int8``); BundleError if the bundle has none."""
        variants = self.manifest["variants"]
        if variant not in variants:
            raise BundleError(f"bundle {self.path.name} has no {variant!r} variant "
                              f"(has: {', '.join(variants)})", code="no_variant")
        return self.path / str(variants[variant]["file"])

    def prefers_int8_on_cpu(self) -> bool:
        """True when the INT8 variant exists and its manifest entry says it is faster."""
        variants = self.manifest["variants"]
        if "int8" not in variants or "fp32" not in variants:
            return False
        int8, fp32 = variants["int8"], variants["fp32"]
        faster = float(int8.get("latency_ms_cpu", 1e9)) < float(fp32.get("latency_ms_cpu", 0.0))
        auc_kept = float(fp32.get("auc", 0.0)) - float(int8.get("auc", -1.0)) < 0.005
        return faster and auc_kept


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_bundles(models_dir: Path) -> list[Path]:
    """Every bundle folder or ``.tar`` directly inside ``models_dir`` (sorted by name)."""
    if not models_dir.is_dir():
        return []
    found = [p for p in models_dir.iterdir()
             if (p.is_dir() and (p / MANIFEST).is_file()) or p.suffix == ".tar"]
    return sorted(found)


def version_key(version: str) -> tuple[int, ...]:
    """'1.10.0' -> (1, 10, 0), for ordering versions."""
    return tuple(int(part) if part.isdigit() else 0 for part in re.split(r"[.\-+]", version))


def load_all(models_dir: Path, trusted_keys: Path) -> tuple[list[Bundle], dict[Path, BundleError]]:
    """Every verified bundle in ``models_dir`` (by path), and why the others were refused."""
    found: list[Bundle] = []
    refused: dict[Path, BundleError] = {}
    for path in find_bundles(models_dir):
        try:
            found.append(load_bundle(path, trusted_keys))
        except BundleError as exc:
            log.error("%s", exc.message)
            refused[path] = exc
    return found, refused


def load_newest(models_dir: Path, trusted_keys: Path) -> tuple[dict[str, Bundle], dict[Path, BundleError]]:
    """The newest verified bundle per task in ``models_dir``, and why the others were refused."""
    bundles: dict[str, Bundle] = {}
    found, refused = load_all(models_dir, trusted_keys)
    for bundle in found:
        known = bundles.get(bundle.task)
        if known is None or version_key(bundle.version) > version_key(known.version):
            bundles[bundle.task] = bundle
    return bundles, refused


def load_bundle(path: Path, trusted_keys: Path) -> Bundle:
    """Verify the bundle at ``path`` against the keys in ``trusted_keys``; BundleError if not.

    A ``.tar`` is unpacked once into a folder named by its content (see :func:`_unpack`); a
    refused archive leaves nothing behind.
    """
    path = Path(path)
    if not (path.suffix == ".tar" and path.is_file()):
        try:
            return _verify(path, trusted_keys)
        except BundleError as exc:
            raise BundleError(f"model bundle {path.name} refused: {exc.message}", code=exc.code) from exc
    folder = _unpack(path)
    try:
        return _verify(folder, trusted_keys)
    except BundleError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise BundleError(f"model bundle {path.name} refused: {exc.message}", code=exc.code) from exc


def _verify(folder: Path, trusted_keys: Path) -> Bundle:
    """All checks of docs/bundle.md, in order of cost."""
    manifest_path, signature_path = folder / MANIFEST, folder / SIGNATURE
    if not manifest_path.is_file():
        raise BundleError(f"{MANIFEST} is missing", code="bundle_incomplete")
    if not signature_path.is_file():
        raise BundleError(f"{SIGNATURE} is missing: the bundle is unsigned", code="bundle_unsigned")
    raw = manifest_path.read_bytes()
    manifest = _parse_manifest(raw)
    key_id = str(manifest.get("key_id", ""))
    verify_signature(raw, signature_path.read_text().strip(), key_id, trusted_keys)
    _check_manifest(manifest)
    _check_files(folder, manifest)
    _check_graphs(folder, manifest)
    return Bundle(folder, manifest, hashlib.sha256(raw).hexdigest(), key_id)


def _parse_manifest(raw: bytes) -> dict[str, Any]:
    """The manifest as a dict; BundleError if it is not a JSON object."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{MANIFEST} is not valid JSON: {exc}", code="bad_manifest") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST} is not a JSON object", code="bad_manifest")
    return manifest


def verify_signature(message: bytes, signature_b64: str, key_id: str, trusted_keys: Path) -> None:
    """Check an Ed25519 signature under the trusted key ``key_id``; BundleError if it fails."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not KEY_ID.match(key_id):
        raise BundleError(f"key_id {key_id!r} is not a valid key name", code="untrusted_key")
    key_file = Path(trusted_keys) / f"{key_id}.pub"
    if not key_file.is_file():
        raise BundleError(f"signed with key {key_id!r}, which is not in the trusted keys "
                          f"({trusted_keys})", code="untrusted_key")
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key_file.read_text().strip()))
        key.verify(base64.b64decode(signature_b64, validate=True), message)
    except InvalidSignature as exc:
        raise BundleError(f"the signature does not match {MANIFEST} under key {key_id!r}: "
                          "the bundle was altered or signed by someone else",
                          code="bad_signature") from exc
    except ValueError as exc:  # malformed base64 or key length
        raise BundleError(f"malformed signature or key {key_id!r}: {exc}",
                          code="bad_signature") from exc


def _check_manifest(manifest: dict[str, Any]) -> None:
    """The manifest has what the kiosk reads, with sane values."""
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"manifest lacks {', '.join(missing)}", code="bad_manifest")
    if manifest["format"] != 1:
        raise BundleError(f"manifest format {manifest['format']!r} is not supported (only 1)",
                          code="bad_manifest")
    from kiosk.preprocess import check_spec

    check_spec(manifest["input"])
    outputs = manifest["outputs"]
    labels = outputs.get("labels") or []
    if outputs.get("activation", "sigmoid") not in ACTIVATIONS:
        raise BundleError(f"unknown activation {outputs.get('activation')!r}", code="bad_manifest")
    temperature = float(manifest.get("calibration", {}).get("temperature", 1.0))
    if temperature <= 0:
        raise BundleError("calibration temperature must be positive", code="bad_manifest")
    for finding in manifest["findings"]:
        if finding.get("label") not in labels:
            raise BundleError(f"finding {finding.get('label')!r} is not an output label",
                              code="bad_manifest")
        if not 0.0 <= float(finding.get("threshold", -1)) <= 1.0:
            raise BundleError(f"finding {finding['label']!r} needs a threshold in [0, 1]",
                              code="bad_manifest")
    for name, variant in manifest["variants"].items():
        if variant.get("file") not in manifest["files"]:
            raise BundleError(f"variant {name!r} file is not listed in files", code="bad_manifest")
    if "fp32" not in manifest["variants"]:
        raise BundleError("manifest has no fp32 variant", code="bad_manifest")


def _check_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists inside the bundle and has the listed sha256."""
    for name, expected in sorted(manifest["files"].items()):
        if "/" in name or "\\" in name or name.startswith("."):
            raise BundleError(f"file name {name!r} leaves the bundle folder", code="bad_manifest")
        file = folder / name
        if not file.is_file():
            raise BundleError(f"{name} is listed but missing", code="bundle_incomplete")
        actual = sha256_file(file)
        if actual != str(expected).lower():
            raise BundleError(f"{name} has sha256 {actual[:12]}…, the manifest says "
                              f"{str(expected)[:12]}…: the file was altered", code="bad_checksum")


def _check_graphs(folder: Path, manifest: dict[str, Any]) -> None:
    """Each variant's ONNX input/output names and shapes agree with the manifest."""
    for variant in manifest["variants"].values():
        check_onnx_io(folder / str(variant["file"]), manifest)


def onnx_io(model_file: Path) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The graph's inputs and outputs: name -> dims (int, or the symbolic name, or None)."""
    import onnx

    try:
        model = onnx.load(str(model_file), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a broken file
        raise BundleError(f"{model_file.name} is not a readable ONNX model: {exc}",
                          code="bad_model") from exc
    initialisers = {init.name for init in model.graph.initializer}

    def dims(value: Any) -> list[Any]:
        shape = value.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape]

    inputs = {v.name: dims(v) for v in model.graph.input if v.name not in initialisers}
    outputs = {v.name: dims(v) for v in model.graph.output}
    return inputs, outputs


def check_onnx_io(model_file: Path, manifest: dict[str, Any]) -> None:
    """BundleError unless the graph reads and writes what the manifest declares."""
    inputs, outputs = onnx_io(model_file)
    spec, declared = manifest["input"], manifest["outputs"]
    name = str(spec.get("name", "image"))
    if name not in inputs:
        raise BundleError(f"{model_file.name} has no input {name!r} (has {', '.join(inputs)})",
                          code="io_mismatch")
    size, channels = int(spec["size"]), int(spec["channels"])
    _match_dims(model_file, name, inputs[name], [None, channels, size, size])
    labels = len(declared.get("labels") or [])
    logits = str(declared.get("logits", "logits"))
    if logits not in outputs:
        raise BundleError(f"{model_file.name} has no output {logits!r} (has {', '.join(outputs)})",
                          code="io_mismatch")
    _match_dims(model_file, logits, outputs[logits], [None, labels])
    cam = declared.get("cam")
    if cam:
        if cam not in outputs:
            raise BundleError(f"{model_file.name} has no output {cam!r}", code="io_mismatch")
        _match_dims(model_file, str(cam), outputs[cam], [None, labels, None, None])


def _match_dims(model_file: Path, tensor: str, actual: list[Any], expected: list[Any]) -> None:
    """Compare dims where both sides are fixed integers (None or symbolic matches anything)."""
    if len(actual) != len(expected):
        raise BundleError(f"{model_file.name}: {tensor} has rank {len(actual)}, the manifest "
                          f"implies {len(expected)}", code="io_mismatch")
    for got, want in zip(actual, expected, strict=True):
        if isinstance(got, int) and got > 0 and want is not None and got != want:
            raise BundleError(f"{model_file.name}: {tensor} has shape {actual}, the manifest "
                              f"implies {expected}", code="io_mismatch")


#: Limits on a bundle archive: a model bundle is a handful of files of some MB.
TAR_MAX_FILES = 64
TAR_MAX_BYTES = 2 << 30


def unpack_root() -> Path:
    """Where ``.tar`` bundles are unpacked: one private folder per user under the temp dir."""
    root = Path(tempfile.gettempdir()) / f"kiosk-bundles-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def _unpack(archive: Path) -> Path:
    """Extract a bundle ``.tar`` (plain files only, no paths outside, bounded in count and size).

    The folder is named by the archive's sha256, so loading the same archive again (every start
    of the kiosk) reuses one folder instead of leaving a new copy each time; it is extracted
    afresh every time, so a stale or altered copy is never trusted.
    """
    target = unpack_root() / f"{archive.stem}-{sha256_file(archive)[:16]}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(mode=0o700)
    try:
        with tarfile.open(archive) as tar:
            _extract(tar, target, archive.name)
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise BundleError(f"model bundle {archive.name} is not a readable tar: {exc}",
                          code="bad_archive") from exc
    except BundleError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _extract(tar: tarfile.TarFile, target: Path, name: str) -> None:
    """Copy the archive's plain files (flattened) into ``target`` within the limits."""
    members = [m for m in tar.getmembers() if m.isfile() and not Path(m.name).name.startswith(".")]
    if len(members) > TAR_MAX_FILES:
        raise BundleError(f"model bundle {name} has {len(members)} files (at most {TAR_MAX_FILES})",
                          code="bad_archive")
    total = 0
    for member in members:
        total += member.size
        if total > TAR_MAX_BYTES:
            raise BundleError(f"model bundle {name} unpacks to more than {TAR_MAX_BYTES >> 20} MiB",
                              code="bad_archive")
        source = tar.extractfile(member)
        if source is not None:
            with source, (target / Path(member.name).name).open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
