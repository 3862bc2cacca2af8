"""The running kiosk works on Python 3.10 (JetPack 6's own Python, for its TensorRT bindings).

Three levels, each as far as this machine allows:
- syntax: a real Python 3.10 interpreter compiles every file of the running kiosk;
- library features: mypy with ``--python-version 3.10`` (typeshed knows which names are 3.11+,
  e.g. ``datetime.UTC``, ``tomllib``, ``typing.Self``);
- run: where a Python 3.10 environment with the pinned dependencies exists (``KIOSK_PY310`` or
  ``build/py310/bin/python``), it screens a real chest film and passes ``kiosk doctor --quick``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared

pytestmark = pytest.mark.slow  # compiles and type-checks the running kiosk for Python 3.10

ROOT = Path(__file__).resolve().parent.parent
#: What a kiosk box runs (export/, bench/ and tests/ are tooling on a workstation: 3.11+).
RUNNING_KIOSK = ("kiosk", "engines", "web", "hardware")
MAKE_ENV = (
    "python3.10 -m venv build/py310 && build/py310/bin/pip install -r "
    "<(python3 deploy/requirements-jetson.py --with-onnxruntime)"
)


def python310() -> str | None:
    """A Python 3.10 interpreter: on PATH, or one that pyenv installed."""
    found = shutil.which("python3.10")
    candidates = [found] if found else []
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
    for candidate in candidates:
        result = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip() == "(3, 10)":
            return candidate
    return None


def _environment310() -> str | None:
    """The interpreter of a Python 3.10 environment that holds the kiosk's dependencies."""
    for candidate in (os.environ.get("KIOSK_PY310", ""), str(ROOT / "build" / "py310" / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_every_file_of_the_running_kiosk_compiles_on_python_310(tmp_path: Path) -> None:
    python = python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter here (apt/pyenv python3.10)")
    code = (
        "import pathlib, sys\n"
        "bad = []\n"
        "for folder in sys.argv[1:]:\n"
        "    for path in sorted(pathlib.Path(folder).rglob('*.py')):\n"
        "        try:\n"
        "            compile(path.read_text(encoding='utf-8'), str(path), 'exec')\n"
        "        except SyntaxError as exc:\n"
        "            bad.append(f'{path}:{exc.lineno}: {exc.msg}')\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([python, "-c", code, *RUNNING_KIOSK], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_running_kiosk_uses_no_library_feature_newer_than_python_310() -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.fail("mypy is not installed in the test environment (pip install -e '.[dev]')")
    # Unused-ignore warnings differ between the two typesheds and are checked at 3.11 already.
    result = subprocess.run(
        [mypy, "--python-version", "3.10", "--no-warn-unused-ignores", *RUNNING_KIOSK],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_python_310_environment_screens_a_real_film(tmp_path: Path) -> None:
    python = _environment310()
    if python is None:
        pytest.skip(f"no Python 3.10 environment with the kiosk's dependencies; make one: {MAKE_ENV}")
    film = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KIOSK_DATA_DIR": str(tmp_path / "data"),
           "KIOSK_MODELS_DIR": str(ROOT / "models"),
           "KIOSK_TRUSTED_KEYS": str(ROOT / "models" / "trusted_keys")}
    probe = "import sys, numpy; print(sys.version_info[:2], numpy.__version__)"
    version = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert version.stdout.startswith("(3, 10)"), version.stdout
    screened = subprocess.run([python, "-m", "kiosk.cli", "screen", "--json", str(film)],
                              cwd=tmp_path, capture_output=True, text=True, check=False, env=env, timeout=300)
    assert screened.returncode == 0, screened.stderr[-2000:]
    result = json.loads(screened.stdout.splitlines()[0])
    assert result["task"].startswith("cxr-")
    assert result["verdict"] in ("referable", "non_referable"), result
    doctor = subprocess.run([python, "-m", "kiosk.cli", "doctor", "--quick"], cwd=tmp_path,
                            capture_output=True, text=True, check=False, env=env, timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
