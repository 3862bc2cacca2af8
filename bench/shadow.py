"""What shadow mode costs the nurse: a visit's wait with and without a candidate in shadow.

    .venv/bin/python -m bench.shadow [--visits 12] [--gap 0]

A temporary kiosk holds the shipped fundus bundle (active) and, for the second half of the run,
a candidate made from it (a newer version, re-signed with a throwaway key). Each visit is one
EyePACS patient's two photographs through ``visit.screen`` and ``visit.record``: the steps the
web capture page, the API and the DICOM listener run before the nurse sees the answer (HTTP
left out). The shadow reads each recorded visit afterwards on its own thread; ``--gap`` seconds
pass between visits (0: back to back, the worst case for a shared CPU); ``--threads`` sets the
candidate's inference threads (the kiosk uses one). Printed: the median wait
per visit without and with the candidate, and how long the shadow took to finish each visit.
Results go to ``bench/results/shadow.json``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engines.bundle import MANIFEST, load_all, version_key
from kiosk import visit
from kiosk.config import load_config
from kiosk.lifecycle import models as lineup
from kiosk.lifecycle import shadow as shadow_mode
from kiosk.lifecycle.shadow import ShadowRunner
from kiosk.store import Store

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "fundus" / "eyepacs-256"
RESULTS = ROOT / "bench" / "results" / "shadow.json"


def _candidate(source: Path, out: Path, trusted: Path) -> Path:
    """The source bundle with a newer version and calibration, signed by a fresh trusted key."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    (trusted / "bench-shadow.pub").write_text(base64.b64encode(raw).decode() + "\n")
    manifest = json.loads((source / MANIFEST).read_text())
    major, minor, *_ = (*version_key(manifest["version"]), 0, 0)
    manifest.update(version=f"{major}.{minor + 1}.0", key_id="bench-shadow")
    manifest["calibration"]["temperature"] = float(manifest["calibration"]["temperature"]) * 2.5
    folder = out / f"{manifest['task']}-{manifest['version']}"
    shutil.copytree(source, folder)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    signature = key.sign((folder / MANIFEST).read_bytes())
    (folder / "manifest.sig").write_text(base64.b64encode(signature).decode() + "\n")
    return folder


def _patients(count: int) -> list[list[visit.Offered]]:
    """The first ``count`` EyePACS patients with both eyes, as the capture page offers them."""
    with (DATA / "labels.csv").open() as table:
        rows = list(csv.DictReader(table))
    eyes: dict[str, dict[str, str]] = {}
    for row in rows:
        eyes.setdefault(row["patient"], {})[row["eye"]] = row["image"]
    both = [e for e in eyes.values() if {"left", "right"} <= set(e)][:count]
    return [[visit.Offered((DATA / "images" / e["right"]).read_bytes(), e["right"], "R", "fundus"),
             visit.Offered((DATA / "images" / e["left"]).read_bytes(), e["left"], "L", "fundus")]
            for e in both]


def _run(lazy: visit.LazyPipeline, store: Store, visits: list[list[visit.Offered]],
         gap: float) -> dict[str, list[float]]:
    """Screen and record each visit; the nurse's wait, and the shadow's time to finish it."""
    waits, shadow_done = [], []
    patient = store.upsert_patient("BENCH-1", "Bench patient", None, None, actor="bench")
    for offered in visits:
        begun = time.perf_counter()
        pipeline = lazy()
        visit.record(store, patient.id, visit.screen(pipeline, offered, age=55.0), actor="bench")
        waits.append((time.perf_counter() - begun) * 1000)
        if isinstance(pipeline.shadow, ShadowRunner) and gap > 0:
            pipeline.shadow.drain()
            shadow_done.append((time.perf_counter() - begun) * 1000)
        time.sleep(gap)
    shadow = lazy().shadow
    if isinstance(shadow, ShadowRunner):
        shadow.drain()
    return {"wait_ms": waits, "shadow_done_ms": shadow_done}


def main() -> None:
    """Run the visits without, then with, a candidate in shadow; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=12)
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between visits")
    parser.add_argument("--threads", type=int, default=shadow_mode.THREADS,
                        help="the candidate's CPU inference threads (0: one per core)")
    args = parser.parse_args()
    shadow_mode.THREADS = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(ROOT / "models" / "trusted_keys", root / "trusted")
        found, _ = load_all(ROOT / "models", ROOT / "models" / "trusted_keys")
        shipped = max((b for b in found if b.task == "fundus-dr"), key=lambda b: version_key(b.version))
        shutil.copytree(shipped.path, root / "models" / shipped.path.name)
        config = load_config(env={}, data_dir=root / "data", models_dir=root / "models",
                             trusted_keys=root / "trusted", engine_cache_dir=root / "engines")
        store = Store.open(config)
        lazy = visit.LazyPipeline(config, store)
        visits = _patients(args.visits + 1)
        _run(lazy, store, visits[:1], 0.0)  # load and warm up, not timed
        alone = _run(lazy, store, visits[1:], args.gap)
        lineup.install(config, store, _candidate(shipped.path, root / "incoming", root / "trusted"),
                       actor="bench")
        _run(lazy, store, visits[:1], 0.0)  # load the candidate, not timed
        shadowed = _run(lazy, store, visits[1:], args.gap)
        lazy.close()
        store.close()
    report = _report(args, alone, shadowed)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "raw"}, indent=2))


def _report(args: argparse.Namespace, alone: dict[str, list[float]],
            shadowed: dict[str, list[float]]) -> dict[str, Any]:
    """Medians, the machine's load and the raw timings."""
    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 1) if values else None

    return {"visits": args.visits, "gap_s": args.gap, "shadow_threads": args.threads,
            "cores": os.cpu_count(),
            "load_1min": round(os.getloadavg()[0], 2),
            "wait_ms_median_without_candidate": median(alone["wait_ms"]),
            "wait_ms_median_with_candidate": median(shadowed["wait_ms"]),
            "shadow_done_ms_median": median(shadowed["shadow_done_ms"]),
            "raw": {"without": alone, "with": shadowed}}


if __name__ == "__main__":
    main()
