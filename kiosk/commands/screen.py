"""``kiosk screen [--task TASK] [--json] [--keep] PATH...``: screen files, one verdict per input.

With ``--json`` each input gives one JSON object per task that read it, each on its own line
(the result record of docs/interfaces.md: a chest film may be read by the children's and the
adults' chest models when no age is known); without it, one readable line per result.
Folders are screened file by file. The exit status is 0 when every input got a verdict and 1
when any was refused. Inputs go through the pipeline in batches of KIOSK_BATCH_SIZE, with a
progress bar when stderr is a terminal. With ``--keep`` each screened file is also recorded in
the store as a pushed film is (kiosk/commands/keep.py), so ``kiosk drift`` sees it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from kiosk.config import Config
from kiosk.errors import KioskError
from kiosk.result import FindingResult, Result


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--task", help="run only this task (see 'kiosk models list'); a DICOM "
                        "file's modality decides its kind of image for itself")
    parser.add_argument("--age", type=float, metavar="YEARS",
                        help="the patient's age, to choose between models trained for different "
                        "ages (else the DICOM header's)")
    parser.add_argument("--json", action="store_true", help="one JSON object per input per line")
    parser.add_argument("--heatmaps", type=Path, metavar="DIR",
                        help="also write each heat-map as DIR/<input name>.heatmap.png")
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    parser.add_argument("--keep", action="store_true", help="record each screening in the store, "
                        "as a pushed film is (for drift alarms and the worklist)")
    parser.add_argument("--patient", metavar="ID", help="with --keep: the patient's identifier "
                        "(else a DICOM file's own, else an unidentified patient per image)")
    parser.add_argument("--name", help="with --keep --patient: the patient's name")


def run(args: argparse.Namespace, config: Config) -> int:
    """Screen every input; 0 if all got a verdict, 1 if any was refused."""
    from kiosk.lifecycle.models import open_pipeline, survey
    from kiosk.store import Store

    files = list(expand(args.paths))
    store = Store.open(config)  # which bundle is active per task (docs/change-control.md)
    try:
        pipeline = open_pipeline(config, store, survey(config, store), shadow=False)
        try:
            if args.task is not None and args.task not in pipeline.tasks():
                raise KioskError(f"no model is loaded for task {args.task!r} (loaded: "
                                 f"{', '.join(pipeline.tasks())})", code="unknown_task")
            refused = screen_files(pipeline, files, args, sys.stdout,
                                   store=store if args.keep else None)
        finally:
            pipeline.close()
    finally:
        store.close()
    return 1 if refused else 0


def expand(paths: Sequence[str]) -> Iterator[Path]:
    """Files as given, and the files inside folders (sorted, hidden ones skipped)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            yield path


def screen_files(pipeline: Any, files: list[Path], args: argparse.Namespace, out: TextIO,
                 store: Any = None) -> int:
    """Screen the files in batches, print each result (and keep it in ``store`` when given);
    returns how many were refused."""
    size = max(1, pipeline.config.batch_size)
    progress = _progress(len(files), args)
    refused = 0
    try:
        for start in range(0, len(files), size):
            chunk = files[start : start + size]
            items, unreadable = _read(chunk)
            groups = iter(_screen(pipeline, items, args))
            read = {name: data for data, name in items}
            for path in chunk:
                answers = [unreadable[path]] if path in unreadable else _next(groups)
                if store is not None and path not in unreadable:
                    from kiosk.commands.keep import keep

                    keep(store, read[str(path)], str(path), answers, args)
                refused += answers[0][0]["verdict"] is None
                for result, png in answers:
                    _write_heatmap(args.heatmaps, path, png, result["task"] if len(answers) > 1 else None)
                    print(json.dumps(result) if args.json else human(result), file=out, flush=True)
                if progress is not None:
                    progress.update(1)
    finally:
        if progress is not None:
            progress.close()
    return refused


def _screen(pipeline: Any, items: list[tuple[bytes, str]], args: argparse.Namespace) -> list[Any]:
    """Per input, its outcomes (one per task that read it), inference batched per task."""
    from kiosk.visit import screen_files

    return screen_files(pipeline, items, task=args.task, age=args.age,
                        heatmap=args.heatmaps is not None)


def _next(groups: Iterator[Any]) -> list[tuple[Result, bytes | None]]:
    """The next input's results and heat-maps, one per task that read it."""
    return [(outcome.result, outcome.heatmap_png) for outcome in next(groups)]


def _read(chunk: list[Path]) -> tuple[list[tuple[bytes, str]], dict[Path, tuple[Result, None]]]:
    """(bytes, name) for readable files; a refusal result for files that cannot be read."""
    items: list[tuple[bytes, str]] = []
    unreadable: dict[Path, tuple[Result, None]] = {}
    for path in chunk:
        try:
            items.append((path.read_bytes(), str(path)))
        except OSError as exc:
            error = {"code": "unreadable", "message": f"Cannot read {path}: {exc.strerror or exc}"}
            unreadable[path] = (_refusal(str(path), error), None)
    return items, unreadable


def _refusal(source: str, error: dict[str, str]) -> Result:
    """A result for an input that never reached the pipeline."""
    return {"input": source, "task": None, "verdict": None, "score": None, "findings": [],
            "quality": None, "model": None, "backend": None, "laterality": None, "priority": 0,
            "timings_ms": {"decode": 0.0, "quality": 0.0, "preprocess": 0.0, "infer": 0.0,
                           "total": 0.0}, "warnings": [], "error": error}


def human(result: Result) -> str:
    """One readable line: input, verdict, score, positive findings or the reason."""
    if result["error"]:
        return f"{result['input']}: refused — {result['error']['message']}"
    verdict = str(result["verdict"]).replace("_", "-")
    if result["verdict"] == "ungradable":
        quality = result["quality"]
        reasons = "; ".join(r["message"] for r in (quality["reasons"] if quality else []))
        return f"{result['input']}: {verdict} — {reasons}"
    positives = [f"{f['display']} ({f['probability']:.2f} ≥ {f['threshold']:.2f}{_ppv_words(f)})"
                 for f in result["findings"] if f["positive"]]
    detail = ", ".join(positives) if positives else "no finding above its threshold"
    warnings = "".join(f" (warning: {w})" for w in result.get("warnings") or [])
    return (f"{result['input']}: {verdict} [{result['task']}, score {result['score']:.2f}, "
            f"{result['timings_ms']['total']:.0f} ms] — {detail}{warnings}")


def _ppv_words(found: FindingResult) -> str:
    """'; here 71-100 in 100 flagged truly have it' (the range from the validation's CIs)."""
    ppv = found.get("ppv")
    if ppv is None:
        return ""
    low, high = found.get("ppv_range") or (ppv, ppv)
    span = f"{round(100 * low)}-{round(100 * high)}" if round(100 * low) != round(100 * high) \
        else f"about {round(100 * ppv)}"
    return f"; here {span} in 100 flagged truly have it"


def _write_heatmap(folder: Path | None, path: Path, png: bytes | None, task: str | None) -> None:
    """Save a heat-map PNG (named by task too when several read the input), when asked for."""
    if folder is None or png is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{path.name}{'.' + task if task else ''}.heatmap.png").write_bytes(png)


def _progress(total: int, args: argparse.Namespace) -> Any:
    """A tqdm bar on stderr when it is a terminal and there is more than one input."""
    if args.no_progress or total < 2 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="image", file=sys.stderr)
