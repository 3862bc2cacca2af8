"""The software bill of materials: pins carry the known security fixes, and the SBOM is current."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow  # the bill of materials against the installed packages

ROOT = Path(__file__).resolve().parent.parent
SBOM = ROOT / "docs" / "sbom.cdx.json"

#: package -> (lowest version with the fix, why)
KNOWN_FIXES: dict[str, tuple[tuple[int, ...], str]] = {
    "pydicom": ((3, 0, 2), "DICOMDIR/FileSet ReferencedFileID path traversal fixed in 3.0.2"),
    "pillow": ((11, 3, 0), "DDS encoder heap overflow (CVE-2025-48379) fixed in 11.3.0"),
}


def _runtime_pins() -> dict[str, str]:
    """Runtime dependency pins from pyproject.toml, as normalised name -> exact version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins: dict[str, str] = {}
    for requirement in project["dependencies"]:
        parsed = Requirement(requirement)
        specs = list(parsed.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", (
            f"runtime dependency is not pinned exactly: {requirement!r}")
        # pins differ by Python version where they must (JetPack 6's 3.10): check this one's
        if parsed.marker is None or parsed.marker.evaluate():
            pins[_normalise(parsed.name)] = specs[0].version
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_every_runtime_dependency_is_pinned_exactly() -> None:
    assert len(_runtime_pins()) >= 10


@pytest.mark.parametrize("package", sorted(KNOWN_FIXES))
def test_pins_include_the_known_fixes(package: str) -> None:
    minimum, why = KNOWN_FIXES[package]
    pinned = _runtime_pins().get(package)
    assert pinned is not None, f"{package} is not pinned in pyproject.toml"
    assert _version(pinned) >= minimum, f"{package}=={pinned} lacks the fix: {why}"


@pytest.mark.parametrize("package", sorted(KNOWN_FIXES))
def test_installed_versions_include_the_known_fixes(package: str) -> None:
    minimum, why = KNOWN_FIXES[package]
    installed = metadata.version(package)
    assert _version(installed) >= minimum, f"installed {package} {installed} lacks the fix: {why}"


def _sbom_components() -> dict[str, str]:
    document = json.loads(SBOM.read_text())
    assert document["bomFormat"] == "CycloneDX"
    assert document["metadata"]["component"]["name"] == "screening-kiosk"
    return {_normalise(c["name"]): c["version"] for c in document["components"]}


def test_sbom_lists_every_runtime_pin_at_its_pinned_version() -> None:
    components = _sbom_components()
    stale = {
        name: (version, components.get(name))
        for name, version in _runtime_pins().items()
        if components.get(name) != version
    }
    assert not stale, f"docs/sbom.cdx.json is out of date (pin, sbom): {stale}; run scripts/sbom.sh"


def test_sbom_records_dependencies_between_components() -> None:
    document = json.loads(SBOM.read_text())
    refs = {c["bom-ref"] for c in document["components"]}
    edges = [d for d in document["dependencies"] if d.get("dependsOn")]
    assert edges, "the SBOM has no dependency graph"
    assert all(dep in refs | {"root-component"} for d in edges for dep in d["dependsOn"])
