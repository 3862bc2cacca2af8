"""Screening benchmark: the kiosk pipeline against the usual way, same real images, one run.

    python -m bench.screening                 # both ways, every category, 3 timed repeats
    python -m bench.screening --repeats 5 --out bench/results/screening.json

Each way runs in its own fresh process, so cold start (process start to first verdict) and
peak memory (resident set of the process and its children, sampled every 10 ms) are measured
alike. Per image: the median of the timed repeats of the whole path (file read, decode,
windowing, preprocessing, inference, verdict); per category: the median over its images.
The usual way is bench/usual.py; the kiosk way is ``kiosk.pipeline.Pipeline.screen`` with the
kiosk's default configuration (decode sandbox on, heat-map off as the usual way makes none).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.inputs import CATEGORIES, ROOT, BenchImage, all_images

WAYS = ("usual", "kiosk")


class PeakMemory:
    """Samples the resident memory of this process and its children; keeps the peak."""

    def __init__(self, interval_s: float = 0.01) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval_s)

    def _rss(self) -> int:
        import psutil

        total = 0
        try:
            for proc in [self.process, *self.process.children(recursive=True)]:
                total += proc.memory_info().rss
        except psutil.Error:  # a child exited between listing and reading
            pass
        return total

    def stop(self) -> float:
        """Stop sampling; the peak in MiB."""
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._rss()) / 2**20


def _screener(way: str, models: Path, work: Path, tasks: list[str]) -> Any:
    """A callable path -> {task, verdict, score} for the way."""
    if way == "usual":
        from bench.usual import UsualScreener

        return UsualScreener(models, work, tasks).screen
    from kiosk.config import load_config
    from kiosk.pipeline import Pipeline

    pipeline = Pipeline.from_config(load_config(models_dir=models))

    def screen(path: Path) -> dict[str, Any]:
        result = pipeline.screen(path.read_bytes(), source=path.name, heatmap=False).result
        return {"task": result["task"], "verdict": result["verdict"], "score": result["score"],
                "backend": result["backend"], "error": result["error"],
                "timings_ms": result["timings_ms"]}

    screen.pipeline = pipeline  # type: ignore[attr-defined]
    return screen


def worker(way: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Run one way over the plan's images in this (fresh) process."""
    memory = PeakMemory()
    images = [BenchImage(i["category"], Path(i["path"]), i["task"]) for i in plan["images"]]
    tasks = sorted({i.task for i in images})
    screen = _screener(way, Path(plan["models"]), Path(plan["work"]), tasks)
    first = screen(images[0].path)
    cold_start_s = time.time() - plan["spawned_at"]
    rows = []
    for image in images:
        seconds = []
        for _ in range(plan["repeats"]):
            start = time.perf_counter()
            outcome = screen(image.path)
            seconds.append(time.perf_counter() - start)
        rows.append({"category": image.category, "path": str(image.path), **outcome,
                     "ms": [round(s * 1000, 2) for s in seconds]})
    described = getattr(screen, "pipeline", None)
    return {"way": way, "cold_start_s": round(cold_start_s, 3), "first": first,
            "peak_rss_mib": round(memory.stop(), 1), "rows": rows,
            "describe": described.describe() if described is not None else None}


def run_way(way: str, plan: dict[str, Any], out: Path) -> dict[str, Any]:
    """Start a fresh process for the way and read back its results."""
    plan_file, result_file = out / f"plan-{way}.json", out / f"result-{way}.json"
    plan = {**plan, "spawned_at": time.time()}
    plan_file.write_text(json.dumps(plan))
    command = [sys.executable, "-m", "bench.screening", "--worker", way, "--plan", str(plan_file),
               "--result", str(result_file)]
    subprocess.run(command, cwd=ROOT, check=True)
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Medians per category and way, ratios, and verdict agreement."""
    summary: dict[str, Any] = {"categories": {}}
    for category in CATEGORIES:
        medians = {}
        for way, result in results.items():
            per_image = [statistics.median(r["ms"]) for r in result["rows"] if r["category"] == category]
            if per_image:
                medians[way] = round(statistics.median(per_image), 1)
        if len(medians) == 2:
            ratio = round(medians["usual"] / medians["kiosk"], 1)
            summary["categories"][category] = {**medians, "ratio": ratio,
                                               "images": _count(results["kiosk"], category)}
    summary["agreement"] = _agreement(results["usual"]["rows"], results["kiosk"]["rows"])
    summary["cold_start_s"] = {way: r["cold_start_s"] for way, r in results.items()}
    summary["peak_rss_mib"] = {way: r["peak_rss_mib"] for way, r in results.items()}
    return summary


def _count(result: dict[str, Any], category: str) -> int:
    """Images of a category."""
    return sum(1 for r in result["rows"] if r["category"] == category)


def _agreement(usual: list[dict[str, Any]], kiosk: list[dict[str, Any]]) -> dict[str, Any]:
    """Same verdicts? (kiosk ungradable or refused images are counted apart)."""
    same = differ = ungradable = 0
    worst = 0.0
    for left, right in zip(usual, kiosk, strict=True):
        if right["verdict"] not in ("referable", "non_referable"):
            ungradable += 1
            continue
        same += left["verdict"] == right["verdict"]
        differ += left["verdict"] != right["verdict"]
        worst = max(worst, abs(left["score"] - right["score"]))
    return {"same": same, "different": differ, "kiosk_ungradable_or_refused": ungradable,
            "max_abs_score_difference": round(worst, 4)}


def report(summary: dict[str, Any], repeats: int) -> str:
    """The markdown table for bench/README.md."""
    lines = ["| images | n | usual way, median ms | kiosk, median ms | kiosk faster by |",
             "| --- | --- | --- | --- | --- |"]
    for category, row in summary["categories"].items():
        lines.append(f"| {category} | {row['images']} | {row['usual']} | {row['kiosk']} | {row['ratio']}x |")
    cold, peak, agree = summary["cold_start_s"], summary["peak_rss_mib"], summary["agreement"]
    lines += ["", "Cold start (process start to first verdict): "
              f"usual {cold['usual']} s, kiosk {cold['kiosk']} s. "
              f"Peak memory (RSS incl. children): usual {peak['usual']} MiB, kiosk {peak['kiosk']} MiB.",
              f"Verdicts: {agree['same']} the same, {agree['different']} different, "
              f"{agree['kiosk_ungradable_or_refused']} ungradable/refused by the kiosk's quality gate; "
              f"largest |score difference| {agree['max_abs_score_difference']}. "
              f"{repeats} timed repeats per image after a first untimed one; "
              f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}."]
    return "\n".join(lines)


def _ready(task: str, models: Path, work: Path) -> bool:
    """True when the task has a bundle (kiosk way) and a checkpoint (usual way); says why not."""
    bundle = any(models.glob(f"{task}-*/manifest.json"))
    checkpoint = (work / task / "best.pt").is_file()
    if not (bundle and checkpoint):
        missing = "bundle" if not bundle else f"checkpoint {work / task / 'best.pt'}"
        print(f"skipping {task}: no {missing}", file=sys.stderr)
    return bundle and checkpoint


def main(argv: list[str] | None = None) -> int:
    """Run both ways and print the comparison."""
    parser = argparse.ArgumentParser(description="kiosk pipeline vs the usual way, same images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--work", type=Path, default=ROOT / "export" / "work",
                        help="where export/ keeps the training checkpoints")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--worker", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.result.write_text(json.dumps(worker(args.worker, json.loads(args.plan.read_text()))))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    images = [i for i in all_images(args.out / "inputs") if _ready(i.task, args.models, args.work)]
    if not images:
        print("nothing to benchmark: no task has both a bundle and a training checkpoint", file=sys.stderr)
        return 1
    plan = {"images": [{"category": i.category, "path": str(i.path), "task": i.task} for i in images],
            "repeats": args.repeats, "models": str(args.models), "work": str(args.work)}
    results = {way: run_way(way, plan, args.out) for way in WAYS}
    summary = summarise(results)
    (args.out / "screening.json").write_text(json.dumps({"summary": summary, **results}, indent=1))
    print(report(summary, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
