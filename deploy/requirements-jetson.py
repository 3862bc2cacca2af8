"""Print the kiosk's pinned runtime dependencies for a Jetson: all but the CPU onnxruntime.

On a Jetson the GPU build (onnxruntime-gpu, from NVIDIA's Jetson index) replaces it; installing
both in one environment leaves whichever was installed last, silently. The pins keep their
environment markers (numpy, Pillow and onnxruntime differ on Python 3.10), so pip picks the
right ones for the interpreter that installs them. Runs on Python 3.10 (JetPack 6), which has
no ``tomllib``. Usage:
    python3 deploy/requirements-jetson.py > /tmp/requirements.txt
    python3 deploy/requirements-jetson.py --with-onnxruntime    # every pin (a CPU environment)
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def pinned_dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    """``[project] dependencies`` of pyproject.toml (tomllib where there is one)."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10: the array is a plain list of double-quoted strings
        project = text.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
        found = re.search(r"^dependencies = (\[.*?^\])", project, re.S | re.M)
        if found is None:
            raise SystemExit(f"{pyproject}: no [project] dependencies") from None
        body = re.sub(r"#[^\n\"]*$", "", found.group(1), flags=re.M)  # comments between items
        return list(ast.literal_eval(body))
    return list(tomllib.loads(text)["project"]["dependencies"])


def jetson_requirements(pyproject: Path = PYPROJECT, with_onnxruntime: bool = False) -> list[str]:
    """The pinned runtime dependencies, without onnxruntime unless asked for."""
    dependencies = pinned_dependencies(pyproject)
    if with_onnxruntime:
        return dependencies
    return [d for d in dependencies if not d.split("==")[0].strip().lower().startswith("onnxruntime")]


if __name__ == "__main__":
    wanted = jetson_requirements(with_onnxruntime="--with-onnxruntime" in sys.argv[1:])
    sys.stdout.write("\n".join(wanted) + "\n")
