"""Deployment files: no Docker daemon and no Jetson here, so check what can be checked without
them: every file the Dockerfiles copy exists, the entry point parses and dispatches, the systemd
unit verifies, the env example names only real settings, the Jetson requirements leave out the
CPU onnxruntime."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.config import settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = ("Dockerfile", "Dockerfile.jetson")


def _copied_sources(dockerfile: Path) -> list[str]:
    """The build-context paths of every COPY without --from."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    return sources


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_copy_only_files_that_exist(name: str) -> None:
    dockerfile = ROOT / name
    sources = _copied_sources(dockerfile)
    assert "docker/entrypoint.sh" in sources and "models" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"{name} copies {source}, which does not exist"
    text = dockerfile.read_text()
    assert 'ENTRYPOINT ["tini", "--", "kiosk-entrypoint"]' in text
    assert 'VOLUME ["/data"]' in text and "KIOSK_DATA_DIR=/data" in text
    assert "USER kiosk" in text and "HEALTHCHECK" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not set(sources) & set(ignored), "a copied path is excluded by .dockerignore"


def test_jetson_image_uses_l4t_system_site_packages_and_the_gpu_runtime() -> None:
    text = (ROOT / "Dockerfile.jetson").read_text()
    assert re.search(r"^ARG L4T_IMAGE=nvcr\.io/nvidia/l4t-", text, re.M)
    assert "FROM ${L4T_IMAGE}" in text
    assert "--system-site-packages" in text and "onnxruntime-gpu" in text
    assert "requirements-jetson.py" in text


def test_jetson_requirements_drop_only_the_cpu_onnxruntime() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "deploy" / "requirements-jetson.py")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    import tomllib

    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [d for d in pinned if d not in out] == [d for d in pinned if d.startswith("onnxruntime")]
    assert len([d for d in pinned if d.startswith("onnxruntime")]) == 2  # 3.11+ and 3.10 pins
    assert all("==" in d for d in out)
    from tests.test_python310 import python310

    interpreter = python310()
    if interpreter:  # JetPack 6's Python has no tomllib: the same list without it
        again = subprocess.run([interpreter, str(ROOT / "deploy" / "requirements-jetson.py")],
                               capture_output=True, text=True, check=False)
        assert again.returncode == 0 and again.stdout.splitlines() == out, again.stderr


def test_entrypoint_parses_and_refuses_an_unwritable_volume(tmp_path: Path) -> None:
    script = ROOT / "docker" / "entrypoint.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
           "KIOSK_DATA_DIR": str(blocker / "data")}
    refused = subprocess.run(["bash", str(script), "doctor", "--quick"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1 and "not writable" in refused.stderr
    passthrough = subprocess.run(["bash", str(script), "echo", "hello"], env=env,
                                 capture_output=True, text=True, timeout=30, check=False)
    assert passthrough.stdout.strip() == "hello"
    config = subprocess.run(["bash", str(script), "config", "--json"],
                            env={**env, "KIOSK_DATA_DIR": str(tmp_path / "data")},
                            capture_output=True, text=True, timeout=120, check=False)
    assert config.returncode == 0 and str(tmp_path / "data") in config.stdout


def test_entrypoint_health_probe_fails_when_nothing_listens(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "KIOSK_PORT": str(port)}
    result = subprocess.run(["bash", str(ROOT / "docker" / "entrypoint.sh"), "health"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1


def test_systemd_unit_runs_serve_restarts_and_keeps_state() -> None:
    unit = (ROOT / "deploy" / "kiosk.service").read_text()
    for line in ("ExecStart=/opt/kiosk/.venv/bin/kiosk serve", "Restart=always",
                 "StateDirectory=kiosk", "Environment=KIOSK_DATA_DIR=/var/lib/kiosk",
                 "EnvironmentFile=/etc/kiosk/kiosk.env", "KillSignal=SIGTERM", "User=kiosk",
                 "WantedBy=multi-user.target"):
        assert line in unit.splitlines(), line


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    kiosk = Path(sys.executable).parent / "kiosk"
    text = (ROOT / "deploy" / "kiosk.service").read_text().replace("/opt/kiosk/.venv/bin/kiosk", str(kiosk))
    unit = tmp_path / "kiosk.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "kiosk.service" in line and "/etc/kiosk/kiosk.env" not in line]
    assert problems == [], problems


def test_env_example_names_only_real_settings() -> None:
    known = {env for _, env, _, _ in settings()}
    named = re.findall(r"^#?\s*(KIOSK_[A-Z0-9_]+)=", (ROOT / "deploy" / "kiosk.env.example").read_text(),
                       re.M)
    assert len(named) > 10
    assert [n for n in named if n not in known] == []


def test_docs_name_the_deployment_files() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    jetson = (ROOT / "docs" / "jetson.md").read_text()
    for name in ("deploy/kiosk.service", "deploy/kiosk.env.example", "docker/entrypoint.sh",
                 "kiosk doctor", "read_status"):
        assert name in deploy, name
    for name in ("--system-site-packages", "onnxruntime-gpu", "Dockerfile.jetson", "nvpmodel"):
        assert name in jetson, name
