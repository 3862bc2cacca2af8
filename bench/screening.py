"""Screening benchmark: the kiosk pipeline against the usual way, same real images, one run.

    python -m bench.screening                 # both ways, every category, 3 timed repeats
    python -m bench.screening --repeats 5 --out bench/results/screening.json

Each way runs in its own fresh worker process, so cold start (process start to first verdict)
and peak memory (resident set of the process and its children, sampled every 10 ms) are
measured alike; the workers are started one after the other, then timed interleaved, image by
image, so that background load hits both alike. Per image: the median of the timed repeats of
the whole path (file read, decode, windowing, preprocessing, inference, verdict); per category:
the median over its images.
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

from bench.inputs import CATEGORIES, ROOT, all_images

WAYS = ("usual", "kiosk")


class PeakMemory:
    """Samples the resident memory of this process and its children; keeps the peak."""

    def __init__(self, interval_s: float = 0.01) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self.peak_self = 0
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self.peak_self = max(self.peak_self, self.process.memory_info().rss)
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


def _screener(way: str, models: Path, tasks: list[str]) -> Any:
    """A callable path -> {task, verdict, score} for the way."""
    if way == "usual":
        from bench.usual import UsualScreener

        return UsualScreener(models, tasks).screen
    from kiosk.config import load_config
    from kiosk.pipeline import Pipeline

    pipeline = Pipeline.from_config(load_config(models_dir=models))

    def screen(path: Path, task: str | None = None) -> dict[str, Any]:
        outcome: Any = pipeline.screen(path.read_bytes(), source=path.name, task=task, heatmap=False)
        result = (outcome[0] if isinstance(outcome, list) else outcome).result  # one task per image
        return {
            "task": result["task"],
            "verdict": result["verdict"],
            "score": result["score"],
            "backend": result["backend"],
            "error": result["error"],
            "timings_ms": result["timings_ms"],
        }

    screen.pipeline = pipeline  # type: ignore[attr-defined]
    return screen


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live children (the decode sandbox's).

    Beside the wall-clock time, which on a loaded machine is mostly waiting for a core, the CPU
    time says how much work each way does per image, whatever else is running.
    """
    import psutil

    me, total = psutil.Process(), 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # a child exited between listing and reading
            continue
        total += times.user + times.system
    return total


def worker(way: str, models: Path, tasks: list[str]) -> None:
    """Serve one way in this fresh process: a JSON line per path on stdin, one reply per line.

    The first request loads everything (its reply time is the cold start); at end of input a
    last line reports the peak memory and, for the kiosk, what the pipeline runs on.
    """
    memory = PeakMemory()
    screen = _screener(way, models, tasks)
    for line in sys.stdin:
        request = json.loads(line)
        path = Path(request["path"])
        cpu = _cpu_seconds()  # before the clock starts: listing processes is not the path's work
        start = time.perf_counter()
        outcome = screen(path, request.get("task"))
        outcome["ms"] = round((time.perf_counter() - start) * 1000, 2)
        outcome["cpu_ms"] = round((_cpu_seconds() - cpu) * 1000, 2)
        print(json.dumps(outcome), flush=True)
    described = getattr(screen, "pipeline", None)
    total = memory.stop()
    print(
        json.dumps(
            {
                "peak_rss_mib": round(total, 1),
                "peak_rss_main_mib": round(memory.peak_self / 2**20, 1),
                "describe": described.describe() if described is not None else None,
            }
        ),
        flush=True,
    )


class Way:
    """A running worker process for one way."""

    def __init__(self, way: str, plan: dict[str, Any]) -> None:
        self.way = way
        self.spawned_at = time.time()
        command = [
            sys.executable,
            "-m",
            "bench.screening",
            "--worker",
            way,
            "--models",
            plan["models"],
            "--tasks",
            ",".join(plan["tasks"]),
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, path: str, task: str) -> dict[str, Any]:
        """Screen one file with one task's model in the worker; its reply."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"path": path, "task": task}) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise SystemExit(f"the {self.way} worker died (exit {self.process.wait()})")
        answer: dict[str, Any] = json.loads(reply)
        return answer

    def finish(self) -> dict[str, Any]:
        """Close its input; the final report (peak memory, description)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        final: dict[str, Any] = json.loads(self.process.stdout.readline())
        self.process.wait()
        return final


def run_both(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Start each way in turn (cold start alone), then time them interleaved, image by image.

    Interleaving exposes both ways to the same background load; each timed repeat screens the
    same file in one way and then the other.
    """
    images = plan["images"]
    ways: dict[str, Way] = {}
    results: dict[str, dict[str, Any]] = {}
    for way in WAYS:
        ways[way] = Way(way, plan)
        first = ways[way].ask(images[0]["path"], images[0]["task"])
        # once more, untimed: the kiosk's second decode worker finishes starting on its first file
        ways[way].ask(images[0]["path"], images[0]["task"])
        results[way] = {
            "way": way,
            "cold_start_s": round(time.time() - ways[way].spawned_at, 3),
            "first": first,
            "rows": [],
        }
    for image in images:
        replies: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
        for _ in range(plan["repeats"]):
            for way in WAYS:
                replies[way].append(ways[way].ask(image["path"], image["task"]))
        for way in WAYS:
            last = replies[way][-1]
            pydicom_ms = [r["timings_ms"]["pydicom_decode"] for r in replies[way]
                          if "pydicom_decode" in r.get("timings_ms", {})]
            results[way]["rows"].append({**image, **last, "ms": [r["ms"] for r in replies[way]],
                                         "cpu_ms": [r["cpu_ms"] for r in replies[way]],
                                         "pydicom_ms": pydicom_ms})
    for way in WAYS:
        results[way].update(ways[way].finish())
    return results


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Medians per category and way, ratios, and verdict agreement."""
    summary: dict[str, Any] = {"categories": {}}
    for category in CATEGORIES:
        medians, cpu = {}, {}
        for way, result in results.items():
            rows = [r for r in result["rows"] if r["category"] == category]
            if rows:
                medians[way] = round(statistics.median(statistics.median(r["ms"]) for r in rows), 1)
                cpu[way] = round(statistics.median(statistics.median(r["cpu_ms"]) for r in rows), 1)
        if len(medians) == 2:
            summary["categories"][category] = {
                **medians,
                "ratio": round(medians["usual"] / medians["kiosk"], 1),
                "cpu_ms": cpu,
                "cpu_ratio": round(cpu["usual"] / max(cpu["kiosk"], 0.1), 1),
                "images": _count(results["kiosk"], category),
            }
    summary["stages"] = {way: _stage_medians(result["rows"]) for way, result in results.items()}
    summary["against_pydicom"] = _against_pydicom(results)
    summary["agreement"] = _agreement(results["usual"]["rows"], results["kiosk"]["rows"])
    summary["cold_start_s"] = {way: r["cold_start_s"] for way, r in results.items()}
    summary["peak_rss_mib"] = {way: r["peak_rss_mib"] for way, r in results.items()}
    summary["peak_rss_main_mib"] = {way: r["peak_rss_main_mib"] for way, r in results.items()}
    return summary


def _against_pydicom(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per DICOM file: the kiosk's whole path against pydicom's full decode alone (same run).

    The issue's goal for the real JPEG 2000 CR film ``RG1_J2KI.dcm``: kiosk total <= 0.5x of
    ``pydicom.dcmread(...).pixel_array`` (the usual way's read and decode, before any windowing).
    """
    found: dict[str, Any] = {}
    usual = {Path(r["path"]).name: r for r in results["usual"]["rows"]}
    for row in results["kiosk"]["rows"]:
        name = Path(row["path"]).name
        pydicom_ms = usual.get(name, {}).get("pydicom_ms") or []
        if pydicom_ms:
            kiosk_ms, decode_ms = statistics.median(row["ms"]), statistics.median(pydicom_ms)
            found[name] = {"kiosk_total_ms": round(kiosk_ms, 1), "pydicom_decode_ms": round(decode_ms, 1),
                           "ratio": round(kiosk_ms / decode_ms, 2),
                           "kiosk_total_cpu_ms": round(statistics.median(row["cpu_ms"]), 1)}
    return found


def _stage_medians(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median ms of each stage (decode, quality, preprocess, infer) per category, last repeat."""
    stages: dict[str, dict[str, float]] = {}
    for category in CATEGORIES:
        timings = [r["timings_ms"] for r in rows if r["category"] == category and r.get("timings_ms")]
        if timings:
            names = [n for n in ("decode", "quality", "preprocess", "infer") if n in timings[0]]
            stages[category] = {n: round(statistics.median(t[n] for t in timings), 1) for n in names}
    return stages


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
    return {
        "same": same,
        "different": differ,
        "kiosk_ungradable_or_refused": ungradable,
        "max_abs_score_difference": round(worst, 4),
    }


def report(summary: dict[str, Any], repeats: int) -> str:
    """The markdown table for bench/README.md."""
    lines = [
        "| images | n | usual way, median ms | kiosk, median ms | kiosk faster by "
        "| CPU ms per image, usual / kiosk | kiosk uses less CPU by |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for category, row in summary["categories"].items():
        cpu = row["cpu_ms"]
        lines.append(f"| {category} | {row['images']} | {row['usual']} | {row['kiosk']} | {row['ratio']}x "
                     f"| {cpu['usual']} / {cpu['kiosk']} | {row['cpu_ratio']}x |")
    lines += [
        "",
        "| images | way | decode | quality | preprocess | infer (ms, medians) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for way, stages in summary["stages"].items():
        for category, stage in stages.items():
            cells = " | ".join(str(stage.get(n, "–")) for n in ("decode", "quality", "preprocess", "infer"))
            lines.append(f"| {category} | {way} | {cells} |")
    rg1 = summary["against_pydicom"].get("rg1-cr-j2k.dcm")
    if rg1:
        lines += ["", f"RG1_J2KI.dcm (real JPEG 2000 CR): kiosk total {rg1['kiosk_total_ms']} ms = "
                  f"{rg1['ratio']}x pydicom's full decode alone ({rg1['pydicom_decode_ms']} ms); "
                  f"goal <= 0.5x. The kiosk's whole path used {rg1['kiosk_total_cpu_ms']} ms of CPU "
                  "(decode threads and sandbox worker included)."]
    cold, peak, agree = summary["cold_start_s"], summary["peak_rss_mib"], summary["agreement"]
    lines += [
        "",
        "Cold start (process start to first verdict): "
        f"usual {cold['usual']} s, kiosk {cold['kiosk']} s. "
        f"Peak memory (RSS incl. children): usual {peak['usual']} MiB, kiosk {peak['kiosk']} MiB "
        f"(its main process alone {summary['peak_rss_main_mib']['kiosk']} MiB; the rest is the "
        "decode sandbox's worker processes).",
        f"Verdicts: {agree['same']} the same, {agree['different']} different, "
        f"{agree['kiosk_ungradable_or_refused']} ungradable/refused by the kiosk's quality gate; "
        f"largest |score difference| {agree['max_abs_score_difference']}; torch network vs bundle "
        f"ONNX: {summary.get('network_parity')}. "
        f"{repeats} timed repeats per image after a first untimed one; "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; load average "
        f"{summary['load_average'][0]:.1f} before, {summary['load_average'][1]:.1f} after.",
    ]
    return "\n".join(lines)


def same_network(task: str, models: Path) -> float:
    """Max |output difference| between the bundle's ONNX in onnxruntime and in torch eager.

    Both ways must run the same network: the torch one is built from the bundle's own graph
    (``bench/onnx_eager.py``); any operator it mistranslated would show here.
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    from bench.usual import bundle_manifest, bundle_onnx, load_network

    spec = bundle_manifest(models, task)["input"]
    batch = np.random.default_rng(0).normal(size=(4, spec["channels"], spec["size"], spec["size"]))
    batch = batch.astype(np.float32)
    session = ort.InferenceSession(str(bundle_onnx(models, task)), providers=["CPUExecutionProvider"])
    expected = session.run(None, {spec.get("name", "image"): batch})
    with torch.inference_mode():
        got = load_network(models, task)(torch.from_numpy(batch))
    return max(float(np.abs(e - g.numpy()).max()) for e, g in zip(expected, got, strict=True))


def network_parity(tasks: list[str], models: Path) -> dict[str, Any]:
    """Per task: how far torch eager and onnxruntime differ on one random batch (must be < 1e-3)."""
    parity: dict[str, Any] = {}
    for task in tasks:
        worst = same_network(task, models)
        if worst > 1e-3:
            raise SystemExit(f"{task}: torch eager and onnxruntime differ by {worst:.3g}")
        parity[task] = {"weights": "bundle ONNX", "max_abs_output_diff": float(f"{worst:.3g}")}
    return parity


def _ready(task: str, models: Path) -> bool:
    """True when the task has a bundle; says why not."""
    if not any(models.glob(f"{task}-*/manifest.json")):
        print(f"skipping {task}: no bundle in {models}", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Run both ways and print the comparison."""
    parser = argparse.ArgumentParser(description="kiosk pipeline vs the usual way, same images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--worker", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--tasks", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.models, args.tasks.split(","))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    images = [i for i in all_images(args.out / "inputs") if _ready(i.task, args.models)]
    if not images:
        print(f"nothing to benchmark: no bundle in {args.models}", file=sys.stderr)
        return 1
    plan = {
        "images": [{"category": i.category, "path": str(i.path), "task": i.task} for i in images],
        "repeats": args.repeats,
        "models": str(args.models),
        "tasks": sorted({i.task for i in images}),
    }
    parity = network_parity(plan["tasks"], args.models)
    load_before = os.getloadavg()[0]
    results = run_both(plan)
    summary = summarise(results)
    summary["load_average"] = [load_before, os.getloadavg()[0]]
    summary["network_parity"] = parity
    (args.out / "screening.json").write_text(json.dumps({"summary": summary, **results}, indent=1))
    print(report(summary, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
