"""Run one fuzz harness with its seed corpus and report executions, findings and peak memory.

    python fuzz/run.py dicom --runs 1000000 --corpus /tmp/fuzz-dicom-corpus --log /tmp/fuzz-dicom.log
    python fuzz/run.py photo --max-time 10 --json

The harness runs in a child process (atheris/libFuzzer) with ``-timeout`` (a hang is an input
that takes longer) and ``-rss_limit_mb`` (a memory blow-up); the report counts the executions
libFuzzer did, the crashes, hangs and out-of-memory findings, and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # so ``seeds`` imports when run as a script

import seeds  # noqa: E402


@dataclass(frozen=True)
class Harness:
    """A harness script, the seeds it starts from, and the largest input worth trying."""

    script: str
    seeds: Callable[[], Iterable[tuple[str, bytes]]]
    max_len: int


def _upload_seeds() -> Iterable[tuple[str, bytes]]:
    """Photo and DICOM seeds led by the selector byte of fuzz_upload.py (route, field, task)."""
    found = []
    for name, data in seeds.photo_seeds():
        found += [(f"check-{name}", b"\x00" + data), (f"screen-left-{name}", b"\x82" + data)]
    for name, data in seeds.dicom_seeds()[::3]:
        found += [(f"check-{name}", b"\x00" + data), (f"screen-chest-{name}", b"\x84" + data)]
    return found


HARNESSES: dict[str, Harness] = {
    "dicom": Harness("fuzz_intake_dicom.py", seeds.dicom_seeds, 16384),
    "photo": Harness("fuzz_intake_photo.py", seeds.photo_seeds, 16384),
    "upload": Harness("fuzz_upload.py", _upload_seeds, 16384),
    "listener": Harness("fuzz_listener.py", seeds.listener_seeds, 16384),
}


@dataclass
class Report:
    """What one fuzzing run did and found."""

    harness: str
    executions: int = 0
    seconds: float = 0.0
    crashes: int = 0
    hangs: int = 0
    out_of_memory: int = 0
    peak_rss_mb: int = 0
    exit_status: int = 0
    seeds: int = 0
    command: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No crash, hang or memory blow-up, and libFuzzer finished normally."""
        return self.exit_status == 0 and not (self.crashes or self.hangs or self.out_of_memory)


def run(name: str, *, runs: int, max_time: int, corpus: Path, artifacts: Path, log: Path,
        seed: int = 0, timeout_s: int = 5, rss_limit_mb: int = 1024) -> Report:
    """Fuzz harness ``name`` once; libFuzzer's output goes to ``log``."""
    harness = HARNESSES[name]
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    seed_folder = _seed_cache(name, harness)
    count = len(list(seed_folder.iterdir()))
    command = [
        sys.executable, str(HERE / harness.script), str(corpus), str(seed_folder),
        f"-runs={runs}", f"-max_total_time={max_time}", f"-timeout={timeout_s}",
        f"-rss_limit_mb={rss_limit_mb}", f"-malloc_limit_mb={rss_limit_mb}",
        f"-max_len={harness.max_len}", f"-seed={seed}", f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1", "-reload=0",
    ]
    started = time.monotonic()
    with log.open("w") as out:
        status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    report = parse(log.read_text(errors="replace"), Report(name, seeds=count, command=command))
    report.seconds = round(time.monotonic() - started, 1)
    report.exit_status = status
    child_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    report.peak_rss_mb = max(report.peak_rss_mb, child_peak_mb)
    return report


def parse(output: str, report: Report) -> Report:
    """Fill ``report`` from libFuzzer's output."""
    executed = re.findall(r"stat::number_of_executed_units: (\d+)", output)
    done = re.findall(r"Done (\d+) runs", output)
    progress = re.findall(r"^#(\d+)\s", output, flags=re.MULTILINE)
    report.executions = int((executed or done or progress or ["0"])[-1])
    rss = re.findall(r"stat::peak_rss_mb: (\d+)", output) + re.findall(r"rss: (\d+)Mb", output)
    report.peak_rss_mb = max((int(v) for v in rss), default=0)
    report.hangs = len(re.findall(r"ERROR: libFuzzer: timeout", output))
    report.out_of_memory = len(re.findall(r"ERROR: libFuzzer: (?:out-of-memory|malloc)", output))
    report.crashes = len(re.findall(r"Uncaught Python exception|ERROR: libFuzzer: deadly signal", output))
    report.findings = re.findall(r"Test unit written to (\S+)", output)
    return report


def _seed_cache(name: str, harness: Harness) -> Path:
    """The harness's seeds, built once per version of the seed code (real images decode slowly)."""
    key = hashlib.sha256((HERE / "seeds.py").read_bytes() + (HERE / "run.py").read_bytes())
    key.update(str(seeds.SHARED_DATA).encode())
    root = Path(tempfile.gettempdir()) / f"kiosk-fuzz-seeds-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    folder = root / f"{name}-{key.hexdigest()[:12]}"
    if not folder.is_dir():
        scratch = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
        seeds.write_corpus(harness.seeds(), scratch)
        try:
            scratch.rename(folder)
        except OSError:  # another run built it meanwhile
            shutil.rmtree(scratch)
    return folder


def _beside(folder: Path, suffix: str) -> Path:
    return folder.with_name(f"{folder.name}-{suffix}")


def main(argv: list[str] | None = None) -> int:
    """Command line: run one harness, print the report; exit 1 on any finding."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("harness", choices=sorted(HARNESSES))
    parser.add_argument("--runs", type=int, default=-1, help="executions (-1: until --max-time)")
    parser.add_argument("--max-time", type=int, default=10, help="seconds (0: until --runs)")
    parser.add_argument("--corpus", type=Path, help="corpus folder kept between runs")
    parser.add_argument("--log", type=Path, help="libFuzzer's output (default: in a temp folder)")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer random seed (0: random)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{args.harness}-") as scratch:
        work = Path(scratch)
        report = run(
            args.harness, runs=args.runs, max_time=args.max_time, seed=args.seed,
            corpus=args.corpus or work / "corpus",
            artifacts=_beside(args.corpus or work / "corpus", "findings"),
            log=args.log or work / "libfuzzer.log",
        )
        if not report.clean and not args.log:
            print((work / "libfuzzer.log").read_text(errors="replace")[-6000:], file=sys.stderr)
    if args.json:
        print(json.dumps(asdict(report) | {"clean": report.clean}))
    else:
        print(f"{report.harness}: {report.executions:,} executions in {report.seconds:g} s, "
              f"{report.crashes} crashes, {report.hangs} hangs > 5 s, {report.out_of_memory} "
              f"out-of-memory, peak RSS {report.peak_rss_mb} MB, exit {report.exit_status}")
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
