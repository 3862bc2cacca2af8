"""The one prepared GPU check (issue 17.3): every GPU back-end on every shipped bundle, measured.

    python -m bench.gpu_check prepare --out build/gpu-inputs      # here: real images -> tensors
    python -m bench.gpu_check run --inputs build/gpu-inputs --out build/gpu-check   # on the GPU

``prepare`` runs where ``../shared/data`` is: it decodes and preprocesses real chest films and
fundus photographs exactly as the kiosk does and saves each task's input tensors (a few MB), so
the GPU machine needs neither the data nor the DICOM stack. ``run`` then, per bundle and per
back-end (onnxruntime CUDA and TensorRT execution providers, native TensorRT FP16, native
TensorRT INT8 from the bundle's QDQ graph, whose Q/DQ scales are its calibration):
- cold start to the first inference with an empty engine cache, and again with the cache;
- parity with onnxruntime on the CPU on the real images: max |logit difference| and verdicts;
- latency at batch 1 and batch 8 (median and 90th percentile of timed runs after warm-up).
It writes ``gpu-check.json`` and ``gpu-check.md`` (the table docs/engines.md includes) and stops
measuring before ``--budget-s`` so the whole check fits a lent machine's 10-minute call.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("onnxruntime-cuda", "onnxruntime-trt", "tensorrt", "tensorrt-int8")
#: How many real images per task travel to the GPU machine.
IMAGES_PER_TASK = 16


def prepare(out: Path) -> None:
    """Real images of each task, decoded and preprocessed by the kiosk, saved as tensors."""
    from bench.inputs import chest_images, fundus_images
    from engines.bundle import find_bundles, load_bundle
    from kiosk.framing import working_copy
    from kiosk.intake import read_image
    from kiosk.preprocess import prepare as preprocess

    out.mkdir(parents=True, exist_ok=True)
    files = {"cxr": [i.path for i in chest_images(out / "films")],
             "fundus": [i.path for i in fundus_images()]}
    for folder in find_bundles(ROOT / "models"):
        bundle = load_bundle(folder, ROOT / "models" / "trusted_keys")
        kind = "fundus" if int(bundle.input_spec["channels"]) == 3 else "cxr"
        size = int(bundle.input_spec["size"])
        tensors = [preprocess(working_copy(read_image(p.read_bytes(), target_size=size), size),
                              bundle.input_spec) for p in files[kind][:IMAGES_PER_TASK]]
        np.save(out / f"{bundle.task}.npy", np.stack(tensors).astype(np.float32))
        print(f"{bundle.task}: {len(tensors)} real images -> {out / (bundle.task + '.npy')}")
    shutil.rmtree(out / "films", ignore_errors=True)


def _latency(infer: Any, batch: np.ndarray, runs: int = 30) -> dict[str, float]:
    """Median and 90th percentile ms of ``infer(batch)`` after five warm-up runs."""
    for _ in range(5):
        infer(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        infer(batch)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3), "p90_ms": round(times[int(0.9 * runs)], 3)}


def _verdicts(logits: np.ndarray, manifest: dict[str, Any]) -> np.ndarray:
    """Referable or not per image, with the manifest's temperature and threshold."""
    temperature = float(manifest["calibration"]["temperature"])
    threshold = float(manifest["findings"][0]["threshold"])
    return 1.0 / (1.0 + np.exp(-logits[:, 0] / temperature)) >= threshold


def _batched(infer: Any, images: np.ndarray, size: int = 8) -> np.ndarray:
    """Logits for all images, ``size`` at a time."""
    return np.concatenate([infer(images[i : i + size]) for i in range(0, len(images), size)])


def _open(bundle: Any, backend: str, cache: Path) -> tuple[Any, float]:
    """A loaded, warmed-up engine of ``backend`` and the seconds that took."""
    from engines.base import engine_class
    from kiosk.config import load_config

    config = load_config(env={}, engine_cache_dir=cache, batch_size=8, backends=backend)
    start = time.perf_counter()
    engine = engine_class(backend)(bundle, config)
    try:
        engine.load()
        engine.warm_up()
    except BaseException:
        engine.close()
        raise
    return engine, time.perf_counter() - start


def _int8(bundle: Any, cache: Path) -> tuple[Any, float]:
    """Native TensorRT INT8 from the bundle's QDQ graph (export/tensorrt.py), and its build time."""
    import tensorrt as trt

    from export.tensorrt import build_int8, int8_plan_path

    engine, _ = _open(bundle, "tensorrt", cache)
    spec = bundle.input_spec
    target = int8_plan_path(engine.plan_path)
    start = time.perf_counter()
    if not target.is_file():
        build_int8(trt, bundle.variant_path("int8"), target, bundle.input_name,
                   (int(spec["channels"]), int(spec["size"]), int(spec["size"])), 8)
    engine.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(target.read_bytes())
    engine.context = engine.engine.create_execution_context()
    engine.variant = "int8"
    return engine, time.perf_counter() - start


def measure(bundle: Any, backend: str, images: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Cold starts, parity with the CPU and latency of one back-end on one bundle."""
    logits_name = bundle.manifest["outputs"].get("logits", "logits")
    with tempfile.TemporaryDirectory(prefix="kiosk-gpu-") as folder:
        cache = Path(folder)
        opener = _int8 if backend == "tensorrt-int8" else lambda b, c: _open(b, backend, c)
        engine, cold = opener(bundle, cache)
        try:
            def infer(batch: np.ndarray) -> np.ndarray:
                return engine.infer(batch)[logits_name]

            got = _batched(infer, images)
            same = _verdicts(got, bundle.manifest) == _verdicts(reference, bundle.manifest)
            row: dict[str, Any] = {
                "variant": engine.variant, "cold_start_no_cache_s": round(cold, 2),
                "max_abs_logit_diff": float(f"{np.abs(got - reference).max():.3g}"),
                "same_verdicts": f"{int(same.sum())}/{len(same)}",
                "batch1": _latency(infer, images[:1]), "batch8": _latency(infer, images[:8]),
            }
        finally:
            engine.close()
        if backend != "tensorrt-int8":
            again, warm = _open(bundle, backend, cache)
            again.close()
            row["cold_start_cached_s"] = round(warm, 2)
    return row


def _cpu_reference(bundle: Any, images: np.ndarray, cache: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The kiosk's CPU engine: the logits to compare against, and its own latency row."""
    engine, _ = _open(bundle, "onnxruntime-cpu", cache)
    logits_name = bundle.manifest["outputs"].get("logits", "logits")
    try:
        def infer(batch: np.ndarray) -> np.ndarray:
            return engine.infer(batch)[logits_name]

        reference = _batched(infer, images)
        row = {"variant": engine.variant, "batch1": _latency(infer, images[:1], 10),
               "batch8": _latency(infer, images[:8], 10)}
    finally:
        engine.close()
    return reference, row


def _environment() -> dict[str, Any]:
    """GPU, driver and runtime versions."""
    found: dict[str, Any] = {"python": platform.python_version()}
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, check=False)
        found["gpu"] = query.stdout.strip()
    for module in ("onnxruntime", "tensorrt"):
        try:
            found[module] = __import__(module).__version__
        except ImportError as exc:
            found[module] = f"not installed ({exc})"
    try:
        import onnxruntime

        found["providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    from engines.available import availability
    from kiosk.config import load_config

    found["backends"] = {a.backend: ("could run: " if a.can_run else "cannot run: ") + a.reason
                         for a in availability(load_config(env={}))}
    return found


def run(inputs: Path, out: Path, budget_s: float) -> dict[str, Any]:
    """Every back-end on every bundle whose inputs were prepared, within the time budget."""
    from engines.bundle import find_bundles, load_bundle

    started = time.monotonic()
    report: dict[str, Any] = {"environment": _environment(), "bundles": {}}
    for folder in find_bundles(ROOT / "models"):
        bundle = load_bundle(folder, ROOT / "models" / "trusted_keys")
        tensors = inputs / f"{bundle.task}.npy"
        if not tensors.is_file():
            report["bundles"][bundle.task] = {"error": f"no prepared inputs {tensors}"}
            continue
        images = np.load(tensors)
        reference, cpu_row = _cpu_reference(bundle, images, out)
        rows: dict[str, Any] = {"onnxruntime-cpu": cpu_row}
        for backend in BACKENDS:
            if time.monotonic() - started > budget_s:
                rows[backend] = {"error": f"not measured: the {budget_s:.0f} s budget was spent"}
                continue
            try:
                rows[backend] = measure(bundle, backend, images, reference)
            except Exception as exc:  # a back-end that cannot run here is a finding, not a crash
                rows[backend] = {"error": f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"}
        report["bundles"][f"{bundle.task} {bundle.version}"] = {"images": len(images), "rows": rows}
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def table(report: dict[str, Any]) -> str:
    """The markdown table docs/engines.md includes."""
    env = report["environment"]
    lines = [f"GPU: {env.get('gpu', '?')}; onnxruntime {env.get('onnxruntime')}; TensorRT "
             f"{env.get('tensorrt')}; Python {env['python']}.", "",
             "| bundle | back-end | variant | cold start, no cache / cached (s) | max abs logit diff vs CPU "
             "| same verdicts | batch 1 median (p90) ms | batch 8 median (p90) ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, found in report["bundles"].items():
        for backend, row in found.get("rows", {}).items():
            if "error" in row:
                lines.append(f"| {name} | {backend} | – | {row['error']} | | | | |")
                continue
            cold = f"{row.get('cold_start_no_cache_s', '–')} / {row.get('cold_start_cached_s', '–')}"
            b1, b8 = row["batch1"], row["batch8"]
            lines.append(f"| {name} | {backend} | {row['variant']} | {cold} "
                         f"| {row.get('max_abs_logit_diff', '–')} "
                         f"| {row.get('same_verdicts', '–')} | {b1['median_ms']} ({b1['p90_ms']}) "
                         f"| {b8['median_ms']} ({b8['p90_ms']}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """prepare | run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("prepare", "run"))
    parser.add_argument("--inputs", type=Path, default=ROOT / "build" / "gpu-inputs")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu-check")
    parser.add_argument("--budget-s", type=float, default=420.0)
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.out)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args.inputs, args.out, args.budget_s)
    (args.out / "gpu-check.json").write_text(json.dumps(report, indent=1))
    (args.out / "gpu-check.md").write_text(table(report))
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
