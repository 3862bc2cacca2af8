"""Print the kiosk's pinned runtime dependencies for a Jetson: all but the CPU onnxruntime.

On a Jetson the GPU build (onnxruntime-gpu, from NVIDIA's Jetson index) replaces it; installing
both in one environment leaves whichever was installed last, silently. Usage:
    python deploy/requirements-jetson.py > /tmp/requirements.txt
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def jetson_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The pinned runtime dependencies without onnxruntime."""
    with pyproject.open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    return [d for d in dependencies if not d.split("==")[0].strip().lower().startswith("onnxruntime")]


if __name__ == "__main__":
    sys.stdout.write("\n".join(jetson_requirements()) + "\n")
