"""Static checks run as part of the test suite: ruff, mypy, the import contract, top-level imports."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed in the test environment (pip install -e '.[dev]')")
    return found


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # a minute or more on a cold cache
def test_mypy_is_clean() -> None:
    result = subprocess.run(
        [_tool("mypy")], cwd=ROOT, capture_output=True, text=True, check=False, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contract_is_kept() -> None:
    """The layers of .importlinter (drawn in docs/interfaces.md) hold, with no import cycles."""
    result = subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
        check=False, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


#: The project's own packages: importing one inside a function hides a dependency (and a cycle).
OWN = ("kiosk", "engines", "web", "hardware", "export")
#: Function-level imports still waiting for their owners (file: imported modules), issue 15.
PENDING_IMPORTS = {
    "engines/bundle.py": {"kiosk.preprocess"},
    "kiosk/sandbox.py": {"kiosk.intake"},
}


def _function_level_imports(path: Path) -> set[str]:
    """The project modules a file imports inside a function body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found.update(alias.name for alias in inner.names)
                elif isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                    found.add(inner.module)
    return {name for name in found if name.split(".")[0] in OWN}


def test_no_function_level_imports_of_the_projects_modules() -> None:
    """Imports of kiosk/engines/web/hardware sit at the top, except in the CLI verbs.

    ``kiosk/commands/`` keeps its imports inside ``run`` so that ``kiosk --help`` stays fast.
    """
    found: dict[str, list[str]] = {}
    stale: dict[str, list[str]] = {}
    for package in ("kiosk", "engines", "web", "hardware"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith("kiosk/commands/"):
                continue
            late = _function_level_imports(path)
            pending = PENDING_IMPORTS.get(relative, set())
            if late - pending:
                found[relative] = sorted(late - pending)
            if pending - late:
                stale[relative] = sorted(pending - late)
    assert not found, f"import these at the top of the module: {found}"
    assert not stale, f"moved to the top already: remove from PENDING_IMPORTS: {stale}"
