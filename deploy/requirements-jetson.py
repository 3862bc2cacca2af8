"""Print the kiosk's pinned runtime dependencies for a Jetson: all but the CPU onnxruntime.

On a Jetson the GPU build (onnxruntime-gpu, from NVIDIA's Jetson index) replaces it; installing
both in one environment leaves whichever was installed last, silently. The pins keep their
environment markers (numpy, Pillow and onnxruntime differ on Python 3.10), so pip picks the
right ones for the interpreter that installs them. Runs on Python 3.10 (JetPack 6), which has
no ``tomllib``. Usage:
    python3 deploy/requirements-jetson.py > /tmp/requirements.txt
    python3 deploy/requirements-jetson.py --with-onnxruntime    # every pin (a CPU environment)
    python3 deploy/requirements-jetson.py --extra jetson        # one optional extra's pins
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _toml_array(text: str, section: str, key: str) -> list[str]:
    """A list of double-quoted strings ``key = [...]`` under ``[section]`` (no tomllib on 3.10)."""
    body = text.split(f"\n[{section}]\n", 1)[1].split("\n[", 1)[0]
    found = re.search(rf"^{re.escape(key)} = (\[[^\n]*\]$|\[.*?^\])", body, re.S | re.M)
    if found is None:
        raise SystemExit(f"no {key} in [{section}]")
    return list(ast.literal_eval(re.sub(r"#[^\n\"]*$", "", found.group(1), flags=re.M)))


def pinned_dependencies(pyproject: Path = PYPROJECT, extra: str | None = None) -> list[str]:
    """``[project] dependencies`` of pyproject.toml, or one optional extra's."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        if extra:
            return _toml_array(text, "project.optional-dependencies", extra)
        return _toml_array(text, "project", "dependencies")
    project = tomllib.loads(text)["project"]
    return list(project["optional-dependencies"][extra] if extra else project["dependencies"])


def jetson_requirements(pyproject: Path = PYPROJECT, with_onnxruntime: bool = False) -> list[str]:
    """The pinned runtime dependencies, without onnxruntime unless asked for."""
    dependencies = pinned_dependencies(pyproject)
    if with_onnxruntime:
        return dependencies
    return [d for d in dependencies if not d.split("==")[0].strip().lower().startswith("onnxruntime")]


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--extra"] and len(arguments) == 2:
        wanted = pinned_dependencies(extra=arguments[1])
    else:
        wanted = jetson_requirements(with_onnxruntime="--with-onnxruntime" in arguments)
    sys.stdout.write("\n".join(wanted) + "\n")
