"""Hardware status: read on this machine for real, and the Jetson/NVIDIA parsers on recorded
output (no Jetson here; the tegrastats lines below are the formats JetPack 4 and 6 print)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from hardware.status import (
    parse_nvidia_smi,
    parse_tegrastats,
    read_status,
    read_thermal_zones,
)
from kiosk.config import Config

NANO_JP4 = ("RAM 1488/3964MB (lfb 19x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
            "CPU [5%@102,2%@102,1%@102,1%@102] EMC_FREQ 3%@1600 GR3D_FREQ 0%@76 APE 25 PLL@24.5C "
            "CPU@27C PMIC@100C GPU@25C AO@33.5C thermal@26C POM_5V_IN 1772/1772 POM_5V_GPU 0/0 "
            "POM_5V_CPU 247/247")
ORIN_JP6 = ("RAM 2667/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [2%@1510,1%@1510,0%@1510,"
            "0%@1510,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 37%@[305,305] NVENC off NVDEC off "
            "cpu@47.5C soc2@46.093C soc0@46.375C gpu@48.25C tj@49.5C soc1@46.812C "
            "VDD_IN 4590mW/4590mW VDD_CPU_GPU_CV 483mW/483mW VDD_SOC 1450mW/1450mW")


def test_read_status_on_this_machine(config: Config) -> None:
    config.data_dir.mkdir(parents=True)
    status = read_status(config)
    json.dumps(status)  # JSON-ready for the admin page
    assert status["platform"]["kind"] in ("linux", "jetson")
    memory = psutil.virtual_memory()
    assert status["memory"]["total_mb"] == memory.total // 2**20
    assert 0 < status["memory"]["available_mb"] <= status["memory"]["total_mb"]
    free_mb = shutil.disk_usage(config.data_dir).free // 2**20
    assert abs(status["disk"]["free_mb"] - free_mb) <= max(64, free_mb // 50)
    assert status["disk"]["low"] is False
    assert status["cpu"]["count"] >= 1
    assert not any("disk" in w for w in status["warnings"])


def test_low_disk_is_a_warning_the_staff_can_act_on(tmp_path: Path) -> None:
    from kiosk.config import load_config

    free_mb = shutil.disk_usage(tmp_path).free // 2**20
    config = load_config(env={}, data_dir=tmp_path / "not-yet-created", min_free_disk_mb=free_mb + 4096)
    status = read_status(config)
    assert status["disk"]["low"] is True
    assert any("new captures are refused" in w for w in status["warnings"])


def test_thermal_zones_read_from_a_sysfs_shaped_tree(tmp_path: Path) -> None:
    # a file tree laid out like /sys/class/thermal (this machine exposes none)
    for index, (kind, millidegrees) in enumerate(
        [("cpu-thermal", "47500"), ("gpu-thermal", "46093"), ("tj-thermal", "49000"),
         ("PMIC-Die", "-256000"), ("cpu-thermal", "48000")]
    ):
        zone = tmp_path / f"thermal_zone{index}"
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(millidegrees + "\n")
    zones = read_thermal_zones(tmp_path)
    assert zones == {"cpu-thermal": 47.5, "gpu-thermal": 46.1, "tj-thermal": 49.0,
                     "cpu-thermal-thermal_zone4": 48.0}  # the -256 C dead sensor is dropped
    assert read_thermal_zones(tmp_path / "absent") == {}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (NANO_JP4, {"ram_used_mb": 1488, "ram_total_mb": 3964, "swap_total_mb": 1982,
                    "gpu_load_percent": 0, "power_in_mw": 1772, "cpu": 27.0, "gpu": 25.0}),
        (ORIN_JP6, {"ram_used_mb": 2667, "ram_total_mb": 7620, "swap_total_mb": 3810,
                    "gpu_load_percent": 37, "power_in_mw": 4590, "cpu": 47.5, "gpu": 48.25}),
    ],
)
def test_tegrastats_lines_of_jetpack_4_and_6(line: str, expected: dict[str, float]) -> None:
    parsed = parse_tegrastats(line)
    for key in ("ram_used_mb", "ram_total_mb", "swap_total_mb", "gpu_load_percent", "power_in_mw"):
        assert parsed[key] == expected[key], key
    assert parsed["temperatures"]["cpu"] == expected["cpu"]
    assert parsed["temperatures"]["gpu"] == expected["gpu"]
    assert parse_tegrastats("") == {"temperatures": {}}


def test_nvidia_smi_csv() -> None:
    csv = "NVIDIA H200, 34, 0, 1, 143771, 75.20\nNVIDIA T4, [N/A], 3, 100, 15360, [N/A]\n"
    first, second = parse_nvidia_smi(csv)
    assert first == {"name": "NVIDIA H200", "temperature_c": 34.0, "utilization_percent": 0.0,
                     "memory_used_mb": 1.0, "memory_total_mb": 143771.0, "power_w": 75.2}
    assert second["temperature_c"] is None and second["memory_total_mb"] == 15360.0


@pytest.mark.gpu
def test_a_real_nvidia_gpu_is_reported(config: Config) -> None:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no NVIDIA GPU here (nvidia-smi absent)")
    names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    status = read_status(config)
    assert status["gpu"] is not None and status["gpu"]["name"] == names[0].strip()
    assert status["gpu"]["memory_total_mb"] > 0
    assert status["temperatures_c"]["gpu"] is not None


def test_services_reported_by_kiosk_serve_appear_with_a_warning_when_down(config: Config) -> None:
    from hardware.status import report_services
    from hardware.supervisor import Supervisor

    supervisor = Supervisor()
    supervisor.add("dicom-listener", lambda stop: None)
    report_services(supervisor.status)
    try:
        status = read_status(config)
    finally:
        report_services(None)
    assert status["services"] == [{"name": "dicom-listener", "running": False, "restarts": 0,
                                   "last_error": ""}]
    assert any("dicom-listener service is down" in w for w in status["warnings"])
    assert read_status(config)["services"] == []
