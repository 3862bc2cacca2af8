"""Drift alarms: set each task's threshold, then measure false alarms and time to alarm.

    KIOSK_MODELS_DIR=models nice -n 10 python -m bench.drift --out bench/results/drift.json

Method (docs/monitoring.md): the held-out test split of each task's own data set (never the
calibration split the reference was made from) is screened through the kiosk's pipeline, and
split in two halves. Windows of ``W`` results drawn from half A give the statistic's
distribution when nothing has changed; the threshold is its 99.5th percentile. Half B, which set
nothing, gives the false alarms: a stream of in-distribution cases checked after every case, as
the kiosk does. Time to alarm: a window full of half-B cases, then shifted cases one at a time
(drawn with replacement from the shifted pool) until the alarm goes off. Shifted pools:
full-size camera photographs (fundus), adult films through the children's model and children's
films through the adults' (chest), and darkened and blurred copies of half B (all tasks).

Screened cases are cached under export/work/drift/ (features, score and bundle per file), so a
second run only simulates. CPU-light: ``--limit`` files per pool, one process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.bundle import Bundle
from export.data import SHARED_DATA, WORK
from export.reference import SPLIT, recipe_of, reference_for, split_files
from kiosk.config import load_config
from kiosk.domain import ImageKind
from kiosk.framing import working_copy
from kiosk.intake import read_image
from kiosk.lifecycle.drift import measure
from kiosk.pipeline import QUALITY_SIDE, Pipeline
from kiosk.pixels.features import features_of

Case = dict[str, Any]
Transform = Callable[[bytes], bytes]
WINDOWS = (25, 50, 100)
#: The share of in-distribution windows below the threshold.
QUANTILE = 0.995


def darkened(data: bytes) -> bytes:
    """The image at 60% of its brightness (an under-exposed flash or film), JPEG q90."""
    pixels = _decoded(data)
    return _jpeg((pixels.astype(np.float32) * 0.6).astype(np.uint8))


def blurred(data: bytes) -> bytes:
    """The image out of focus: a Gaussian blur of 1% of its shorter side, JPEG q90."""
    pixels = _decoded(data)
    return _jpeg(cv2.GaussianBlur(pixels, (0, 0), 0.01 * min(pixels.shape[:2])))


def _decoded(data: bytes) -> np.ndarray:
    """The pixels of a JPEG or PNG as stored (grey stays grey)."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError("cannot decode")
    return np.asarray(pixels)


def _jpeg(pixels: np.ndarray) -> bytes:
    """JPEG q90 bytes."""
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("cannot encode")
    return bytes(encoded)


def screen_pool(pipeline: Pipeline, task: str, name: str, files: Sequence[Path],
                transform: Transform | None, cache: Path) -> list[Case]:
    """Each file's input features and score from the kiosk's pipeline (cached by bundle)."""
    sha = pipeline.models[task].bundle.sha256
    path = cache / f"{task}-{sha[:12]}-{name}.json"
    known: dict[str, Case] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [f for f in files if f.name not in known]
    for start in range(0, len(todo), 16):
        chunk = todo[start : start + 16]
        items = [((transform or _same)(f.read_bytes()), f.name) for f in chunk]
        for file, outcomes in zip(chunk, pipeline.screen_many(items, task=task, heatmap=False),
                                  strict=True):
            result = outcomes[0].result
            known[file.name] = {"inputs": result.get("inputs"), "score": result["score"],
                                "sha256": sha}
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known))
    return [known[f.name] for f in files if known[f.name]["inputs"] is not None]


def _same(data: bytes) -> bytes:
    """No change."""
    return data


def statistic(bundle: Bundle, cases: Sequence[Case], window: int) -> float:
    """The kiosk's drift statistic (largest PSI) of one window of cases."""
    value = measure(bundle, cases, window=window, threshold=np.inf).value
    return float("nan") if value is None else value


def largest(bundle: Bundle, cases: Sequence[Case], window: int) -> str:
    """The quantity with the largest PSI in a window."""
    quantities = measure(bundle, cases, window=window, threshold=np.inf).quantities
    return max((q for q in quantities if q.psi is not None), key=lambda q: q.psi or 0.0).name


def null_threshold(bundle: Bundle, pool: Sequence[Case], window: int, draws: int,
                   rng: np.random.Generator) -> tuple[float, list[float]]:
    """The QUANTILE of the statistic over random windows of in-distribution cases."""
    values = [statistic(bundle, [pool[i] for i in rng.integers(0, len(pool), window)], window)
              for _ in range(draws)]
    return float(np.quantile(values, QUANTILE)), values


def false_alarms(bundle: Bundle, pool: Sequence[Case], window: int, threshold: float,
                 streams: int, length: int, rng: np.random.Generator) -> dict[str, float]:
    """In-distribution streams checked after every case: alarms per 1000 checks, and the share
    of streams of ``length`` cases with any alarm."""
    alarms, checks, any_alarm = 0, 0, 0
    for _ in range(streams):
        stream = [pool[i] for i in rng.integers(0, len(pool), length + window)]
        hits = sum(statistic(bundle, stream[end - window : end], window) > threshold
                   for end in range(window, len(stream) + 1))
        alarms, checks, any_alarm = alarms + hits, checks + length + 1, any_alarm + (hits > 0)
    return {"per_1000_checks": round(1000 * alarms / checks, 2),
            "streams_with_an_alarm": round(any_alarm / streams, 3), "streams": streams,
            "stream_length": length}


def time_to_alarm(bundle: Bundle, steady: Sequence[Case], shifted: Sequence[Case], window: int,
                  threshold: float, runs: int, rng: np.random.Generator) -> dict[str, Any]:
    """Shifted cases after a window of in-distribution ones, until the alarm (at most 2 windows)."""
    found, names = [], []
    for _ in range(runs):
        cases = [steady[i] for i in rng.integers(0, len(steady), window)]
        alarmed = None
        for step in range(1, 2 * window + 1):
            cases = [*cases[1:], shifted[int(rng.integers(0, len(shifted)))]]
            if statistic(bundle, cases, window) > threshold:
                alarmed = step
                names.append(largest(bundle, cases, window))
                break
        found.append(alarmed)
    hit = [f for f in found if f is not None]
    return {"median": float(np.median(hit)) if hit else None,
            "p90": float(np.quantile(hit, 0.9)) if hit else None,
            "alarmed_within_2_windows": round(len(hit) / runs, 3), "runs": runs,
            "pool": len(shifted), "largest_psi_at_alarm": {n: names.count(n) for n in set(names)}}


def pools(task: str, test_b: list[Path], data: Path, limit: int,
          rng: np.random.Generator) -> dict[str, tuple[list[Path], Transform | None]]:
    """The shifted pools of a task: (files, transform)."""
    found: dict[str, tuple[list[Path], Transform | None]] = {
        "darkened": (test_b, darkened), "blurred": (test_b, blurred)}
    if task == "fundus-dr":
        found["full-size photographs"] = (sorted((data / "fundus/eyepacs-fullres").glob("*.jpeg")),
                                          None)
    elif task == "cxr-pneumonia":
        found["adult films"] = (_sample(sorted((data / "cxr/nih-adult-512/images").glob("*")),
                                        limit, rng), None)
    elif task == "cxr-adult":
        found["children's films"] = (_sample(sorted((data / "cxr/kermany-224/train").rglob("*.jpeg")),
                                             limit, rng), None)
    return found


def _sample(files: list[Path], limit: int, rng: np.random.Generator) -> list[Path]:
    """At most ``limit`` of the files, chosen at random, in their order."""
    if len(files) <= limit:
        return files
    return [files[i] for i in sorted(rng.choice(len(files), limit, replace=False))]


def with_reference(bundle: Bundle, data: Path) -> Bundle:
    """The bundle, its input reference computed when its manifest has none (an older build)."""
    if "input_reference" in bundle.manifest:
        return bundle
    recipe = recipe_of(bundle.manifest)
    kind: ImageKind = "fundus" if bundle.task.startswith("fundus") else "cxr"
    return replace(bundle, manifest={**bundle.manifest,
                                     "input_reference": reference_for(recipe, data, kind)})


def run_task(pipeline: Pipeline, task: str, args: argparse.Namespace) -> dict[str, Any]:
    """Thresholds, false alarms and times to alarm of one task, for every window size."""
    rng = np.random.default_rng(args.seed)
    data = Path(args.data)
    bundle = with_reference(pipeline.models[task].bundle, data)
    test = _sample(split_files(recipe_of(bundle.manifest), data, "test"), args.limit, rng)
    order = rng.permutation(len(test))
    half_a = [test[i] for i in sorted(order[: len(test) // 2])]
    half_b = [test[i] for i in sorted(order[len(test) // 2 :])]
    cache = Path(args.cache)
    a = screen_pool(pipeline, task, "test", half_a, None, cache)
    b = screen_pool(pipeline, task, "test", half_b, None, cache)
    shifted = {name: screen_pool(pipeline, task, name.replace(" ", "-").replace("'", ""), files,
                                 transform, cache)
               for name, (files, transform) in pools(task, half_b, data, args.limit, rng).items()}
    report: dict[str, Any] = {"bundle": f"{task} {bundle.version}", "reference_split": SPLIT,
                              "half_a": len(a), "half_b": len(b),
                              "shifted": {k: len(v) for k, v in shifted.items()}, "windows": {}}
    for window in args.windows:
        threshold, _ = null_threshold(bundle, a, window, args.draws, rng)
        entry: dict[str, Any] = {"threshold": round(threshold, 4)}
        entry["false_alarms"] = false_alarms(bundle, b, window, threshold, args.streams,
                                             args.stream_length, rng)
        entry["time_to_alarm"] = {name: time_to_alarm(bundle, b, pool, window, threshold,
                                                      args.runs, rng)
                                  for name, pool in shifted.items()}
        report["windows"][str(window)] = entry
        print(task, window, json.dumps(entry), file=sys.stderr, flush=True)
    return report


def feature_cost(data: Path, repeats: int = 30) -> dict[str, float]:
    """Median milliseconds of ``features_of`` on the decoded working copy (the field of view
    already found, as the quality gate has by then), per kind of image."""
    samples: dict[str, tuple[ImageKind, Path]] = {
        "fundus 256 px": ("fundus", data / "fundus/eyepacs-256/images/10009_left.jpeg"),
        "fundus full-size": ("fundus", data / "fundus/eyepacs-fullres/16_left.jpeg"),
        "adult film 512 px": ("cxr", data / "cxr/nih-adult-512/images/00000061_012.jpg")}
    found = {}
    for name, (kind, path) in samples.items():
        image = working_copy(read_image(path.read_bytes(), source=path.name, kind_hint=kind,
                                        target_size=QUALITY_SIDE), QUALITY_SIDE)
        image.field_of_view()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            features_of(image)
            times.append((time.perf_counter() - start) * 1000)
        found[name] = round(float(np.median(times)), 3)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run every loaded task (or those named) and write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", help="tasks to measure (default: every loaded one)")
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--cache", default=str(WORK / "drift"))
    parser.add_argument("--limit", type=int, default=300, help="files per pool at most")
    parser.add_argument("--windows", type=int, nargs="*", default=list(WINDOWS))
    parser.add_argument("--draws", type=int, default=2000, help="null windows per threshold")
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--stream-length", type=int, default=500)
    parser.add_argument("--runs", type=int, default=50, help="time-to-alarm runs per pool")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cost", action="store_true", help="only time the feature function")
    args = parser.parse_args(argv)
    if args.cost:
        print(json.dumps(feature_cost(Path(args.data)), indent=2))
        return 0
    started = time.time()
    pipeline = Pipeline.from_config(load_config())
    try:
        tasks = args.tasks or pipeline.tasks()
        report = {"command": "python -m bench.drift " + " ".join(argv or sys.argv[1:]),
                  "quantile": QUANTILE, "tasks": {t: run_task(pipeline, t, args) for t in tasks}}
    finally:
        pipeline.close()
    report["seconds"] = round(time.time() - started, 1)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
