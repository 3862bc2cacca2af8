"""``kiosk models``: list and verify model bundles, show what runs, write a Triton repository.

    kiosk models [list] [--json]        verify every bundle in KIOSK_MODELS_DIR (no engines), with
                                        its role: active, candidate (in shadow), previous, installed
    kiosk models verify PATH...         verify the given bundle folders or archives
    kiosk models describe               load the pipeline: back-end really used, warm-up latency
    kiosk models triton-repo OUTDIR     a Triton model repository for the verified bundles
    kiosk models install PATH           verify a bundle and add it as a candidate (never active)
    kiosk models shadow-report [--json] candidates against the active models and the clinicians
    kiosk models promote TASK VERSION   make an installed bundle the active one (audited)
    kiosk models rollback TASK          make the previous bundle active again (audited)

Change control is docs/change-control.md.
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
    _change_control(actions)


def _change_control(actions: Any) -> None:
    """The verbs of docs/change-control.md."""
    install = actions.add_parser("install", help="verify a bundle and add it as a candidate")
    install.add_argument("path", type=Path, metavar="PATH")
    report = actions.add_parser("shadow-report", help="compare the candidates in shadow with the "
                                "active models and the clinicians' decisions")
    report.add_argument("--json", action="store_true", help="one JSON object per candidate")
    promote = actions.add_parser("promote", help="make an installed bundle the active one")
    promote.add_argument("task", metavar="TASK")
    promote.add_argument("version", metavar="VERSION")
    rollback = actions.add_parser("rollback", help="make the previous bundle active again")
    rollback.add_argument("task", metavar="TASK")
    for verb in (install, promote, rollback):
        verb.add_argument("--actor", default="admin", help="who made the change, for the audit log")


def run(args: argparse.Namespace, config: Config) -> int:
    """Run the chosen action; 1 when a bundle is refused."""
    if args.action == "describe":
        return _describe(config)
    if args.action == "triton-repo":
        return _triton_repo(args, config)
    if args.action in CHANGES:
        from kiosk.commands import model_changes

        return int(getattr(model_changes, CHANGES[args.action])(args, config))
    from engines.bundle import find_bundles

    paths = list(args.paths) if args.action == "verify" else find_bundles(config.models_dir)
    if not paths:
        raise BundleError(f"no model bundle found in {config.models_dir}", code="no_model")
    roles = _roles(config) if args.action == "list" else {}
    refused = 0
    for path in paths:
        entry = verify_entry(path, config.trusted_keys)
        if entry.get("sha256") in roles:
            entry["role"] = roles[entry["sha256"]]
        refused += entry["signature"] != "verified"
        print(json.dumps(entry) if args.json else _line(entry))
    return 1 if refused else 0


#: The change-control verbs and their functions in kiosk/commands/model_changes.py.
CHANGES = {"install": "install", "shadow-report": "shadow_report", "promote": "promote",
           "rollback": "rollback"}


def _roles(config: Config) -> dict[str, str]:
    """Each verified bundle's role by sha256 (docs/change-control.md)."""
    from kiosk.lifecycle.models import survey
    from kiosk.store import Store

    store = Store.open(config)
    try:
        lineup = survey(config, store)
    finally:
        store.close()
    return {b.sha256: lineup.role(b) for bundles in lineup.installed.values() for b in bundles}


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
    role = f"  [{entry['role']}]" if entry.get("role") else ""
    return (f"verified {entry['id']} {entry['version']}  sha256 {entry['sha256'][:12]}  key "
            f"{entry['key_id']}  variants {','.join(entry['variants'])}  ({entry['path']}){role}")


def _describe(config: Config) -> int:
    """Load the pipeline of the active bundles (engines warmed up) and print its description."""
    from kiosk.lifecycle.models import open_pipeline, survey
    from kiosk.store import Store

    store = Store.open(config)
    try:
        pipeline = open_pipeline(config, store, survey(config, store))
        try:
            for entry in pipeline.describe():
                print(json.dumps(entry))
        finally:
            pipeline.close()
    finally:
        store.close()
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
