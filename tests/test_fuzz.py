"""Bounded fuzzing runs (a few seconds each) of every interface that takes bytes from outside.

Each harness runs under atheris in a child process (``fuzz/run.py``), seeded from the real files
in ../shared/data, with a fixed libFuzzer seed so a failure reproduces. A finding (an exception
other than IntakeError, an input over 5 s, or over 1 GB of RSS) fails the test and prints the
end of libFuzzer's log; the long runs are documented in docs/reliability.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared

pytestmark = pytest.mark.slow  # bounded fuzzing runs of every interface

ROOT = Path(__file__).resolve().parent.parent


def _fuzz(harness: str, runs: int, max_time: int) -> dict:
    shared("dicom")
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "run.py"), harness, f"--runs={runs}",
         f"--max-time={max_time}", "--seed=1", "--json"],
        capture_output=True, text=True, check=False, timeout=max_time + 120, cwd=ROOT,
    )
    assert result.stdout.strip(), result.stderr[-4000:]
    report: dict = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["clean"], f"{harness}: {report}\n{result.stderr[-6000:]}"
    return report


@pytest.mark.parametrize("harness", ["dicom", "photo"])
def test_a_bounded_fuzz_run_of_intake_finds_nothing(harness: str) -> None:
    report = _fuzz(harness, runs=4000, max_time=3)
    assert report["seeds"] >= 5, "the corpus was not seeded from the real files"
    assert report["executions"] >= 100, f"the fuzzer barely ran: {report}"
    assert report["peak_rss_mb"] < 1024


def test_a_bounded_fuzz_run_of_the_upload_api_finds_nothing() -> None:
    report = _fuzz("upload", runs=2000, max_time=5)
    assert report["seeds"] >= 10
    assert report["executions"] >= 20, f"the fuzzer barely ran: {report}"


def test_a_bounded_fuzz_run_of_the_listener_handlers_finds_nothing() -> None:
    # Before 47a1bc3 this run found read_header's NotImplementedError/struct.error in ~230 runs.
    report = _fuzz("listener", runs=2000, max_time=3)
    assert report["seeds"] >= 10
    assert report["executions"] >= 50, f"the fuzzer barely ran: {report}"
