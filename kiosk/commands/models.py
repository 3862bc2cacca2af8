"""``kiosk models``: list and verify model bundles, show what runs, write a Triton repository.

    kiosk models [list] [--json]        verify every bundle in KIOSK_MODELS_DIR (no engines)
    kiosk models verify PATH...         verify the given bundle folders or archives
    kiosk models describe               load the pipeline: back-end really used, warm-up latency
    kiosk models triton-repo OUTDIR     a Triton model repository for the verified bundles
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kiosk.config import Config
from kiosk.errors import BundleError


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.set_defaults(action="list", json=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="verify and list the bundles in KIOSK_MODELS_DIR")
    listing.add_argument("--json", action="store_true", help="one JSON object per bundle per line")
    verify = actions.add_parser("verify", help="verify the given bundles")
    verify.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    verify.add_argument("--json", action="store_true", help="one JSON object per bundle per line")
    actions.add_parser("describe", help="load every bundle on its back-end and describe it (JSON)")
    repo = actions.add_parser("triton-repo", help="write a Triton model repository")
    repo.add_argument("outdir", type=Path, metavar="OUTDIR")
    repo.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime",
                      help="Triton backend (tensorrt: a plan built on the server, see build-plan.sh)")
    repo.add_argument("--device", choices=["gpu", "cpu"], default="gpu", help="instance kind")
    repo.add_argument("--tensorrt-accelerator", action="store_true",
                      help="onnxruntime backend: run the graph through its TensorRT provider")
    repo.add_argument("--max-batch", type=int, default=8, help="max_batch_size of the model")


def run(args: argparse.Namespace, config: Config) -> int:
    """Run the chosen action; 1 when a bundle is refused."""
    if args.action == "describe":
        return _describe(config)
    if args.action == "triton-repo":
        return _triton_repo(args, config)
    from engines.bundle import find_bundles

    paths = list(args.paths) if args.action == "verify" else find_bundles(config.models_dir)
    if not paths:
        raise BundleError(f"no model bundle found in {config.models_dir}", code="no_model")
    refused = 0
    for path in paths:
        entry = verify_entry(path, config.trusted_keys)
        refused += entry["signature"] != "verified"
        print(json.dumps(entry) if args.json else _line(entry))
    return 1 if refused else 0


def verify_entry(path: Path, trusted_keys: Path) -> dict[str, Any]:
    """What ``kiosk models list`` says about one bundle (verified or refused, and why)."""
    from engines.bundle import load_bundle

    try:
        bundle = load_bundle(path, trusted_keys)
    except BundleError as exc:
        return {"path": str(path), "signature": "refused", "error": exc.to_dict()}
    manifest = bundle.manifest
    return {"path": str(path), "id": bundle.task, "version": bundle.version,
            "name": manifest.get("name"), "sha256": bundle.sha256, "signature": "verified",
            "key_id": bundle.key_id, "variants": sorted(manifest["variants"]),
            "labels": bundle.labels, "auc": manifest.get("metrics", {}).get("auc"),
            "intended_use": manifest.get("intended_use")}


def _line(entry: dict[str, Any]) -> str:
    """One readable line per bundle."""
    if entry["signature"] != "verified":
        return f"REFUSED  {entry['path']}: {entry['error']['message']}"
    return (f"verified {entry['id']} {entry['version']}  sha256 {entry['sha256'][:12]}  key "
            f"{entry['key_id']}  variants {','.join(entry['variants'])}  ({entry['path']})")


def _describe(config: Config) -> int:
    """Load the pipeline (engines warmed up) and print its description."""
    from kiosk.pipeline import Pipeline

    pipeline = Pipeline.from_config(config)
    try:
        for entry in pipeline.describe():
            print(json.dumps(entry))
    finally:
        pipeline.close()
    return 0


def _triton_repo(args: argparse.Namespace, config: Config) -> int:
    """Write every verified bundle into a Triton model repository."""
    from engines.bundle import find_bundles, load_bundle
    from engines.triton_repo import RepoOptions, write_model

    options = RepoOptions(backend=args.backend, device=args.device,
                          tensorrt_accelerator=args.tensorrt_accelerator,
                          max_batch_size=args.max_batch)
    paths = find_bundles(config.models_dir)
    if not paths:
        raise BundleError(f"no model bundle found in {config.models_dir}", code="no_model")
    for path in paths:
        folder = write_model(load_bundle(path, config.trusted_keys), args.outdir, options)
        print(f"wrote {folder}")
    return 0
