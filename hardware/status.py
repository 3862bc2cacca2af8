"""Hardware status for the admin page: temperatures, power mode, memory, disk, GPU.

On a Jetson it reads sysfs (thermal zones, the GPU load node), ``nvpmodel`` and one line of
``tegrastats``; elsewhere the ordinary Linux equivalents (psutil, ``/sys/class/thermal``,
``nvidia-smi`` when present). Every probe is optional: a value that cannot be read is ``None``,
never an exception, so the page always renders. ``read_status()`` returns plain JSON-ready data.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from kiosk.config import Config

SYS_THERMAL = Path("/sys/class/thermal")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")
NVPMODEL_STATUS = Path("/var/lib/nvpmodel/status")
JETSON_GPU_LOAD = (Path("/sys/devices/gpu.0/load"), Path("/sys/devices/platform/gpu.0/load"))
PLATFORM_PROFILE = Path("/sys/firmware/acpi/platform_profile")
CPU_GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
HOT_C = 85.0  # Jetson modules throttle around 90-99 C; warn before

#: Set by ``kiosk serve``: the supervised services' state (name, running, restarts, last error).
_services: Callable[[], list[dict[str, Any]]] | None = None


def report_services(status: Callable[[], list[dict[str, Any]]] | None) -> None:
    """Let ``read_status`` include the running services (``kiosk serve`` calls this)."""
    global _services
    _services = status


def _read_text(path: Path) -> str | None:
    """A small sysfs/proc file's text, or None when absent or unreadable."""
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def _run(command: list[str], timeout_s: float = 3.0) -> str | None:
    """A tool's standard output, or None when it is missing or fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def is_jetson() -> bool:
    """Whether this is an NVIDIA Jetson (L4T) board."""
    model = _read_text(DEVICE_TREE_MODEL) or ""
    return TEGRA_RELEASE.exists() or "jetson" in model.lower()


def read_thermal_zones(root: Path = SYS_THERMAL) -> dict[str, float]:
    """Every thermal zone's temperature in degrees C, keyed by its type (``cpu-thermal``...)."""
    zones: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        kind, raw = _read_text(zone / "type"), _read_text(zone / "temp")
        if not kind or not raw or not raw.lstrip("-").isdigit():
            continue
        value = int(raw) / 1000.0
        if -40.0 < value < 150.0:  # a disconnected sensor reads -256 C or absurd values
            zones[kind if kind not in zones else f"{kind}-{zone.name}"] = round(value, 1)
    return zones


def _pick(zones: dict[str, float], *needles: str) -> float | None:
    """The hottest zone whose type contains one of the needles."""
    found = [v for k, v in zones.items() if any(n in k.lower() for n in needles)]
    return max(found) if found else None


def _psutil_temperatures() -> dict[str, float]:
    """Temperatures psutil knows (hwmon), keyed ``chip/label``."""
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return {}
    try:
        sensors = reader()
    except OSError:
        return {}
    return {f"{chip}/{entry.label or chip}": round(float(entry.current), 1)
            for chip, entries in sensors.items() for entry in entries}


TEGRA_TEMP = re.compile(r"\b([A-Za-z][\w-]*)@(-?\d+(?:\.\d+)?)C\b")
TEGRA_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
TEGRA_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
TEGRA_GPU = re.compile(r"\bGR3D_FREQ (\d+)%")
TEGRA_POWER = re.compile(r"\b(VDD_IN|POM_5V_IN|VIN_SYS_5V0)\s+(\d+)(?:mW)?/")


def parse_tegrastats(line: str) -> dict[str, Any]:
    """The useful fields of one ``tegrastats`` line (JetPack 4 to 6 formats)."""
    parsed: dict[str, Any] = {"temperatures": {}}
    for name, value in TEGRA_TEMP.findall(line):
        parsed["temperatures"][name.lower()] = float(value)
    if match := TEGRA_RAM.search(line):
        parsed["ram_used_mb"], parsed["ram_total_mb"] = int(match[1]), int(match[2])
    if match := TEGRA_SWAP.search(line):
        parsed["swap_used_mb"], parsed["swap_total_mb"] = int(match[1]), int(match[2])
    if match := TEGRA_GPU.search(line):
        parsed["gpu_load_percent"] = int(match[1])
    if match := TEGRA_POWER.search(line):
        parsed["power_in_mw"] = int(match[2])
    return parsed


def read_tegrastats(timeout_s: float = 3.0) -> str | None:
    """One line of ``tegrastats`` (it runs until stopped, so it is stopped after a line)."""
    if shutil.which("tegrastats") is None:
        return None
    try:
        process = subprocess.Popen(["tegrastats", "--interval", "200"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None
    killer = threading.Timer(timeout_s, process.kill)
    killer.start()
    try:
        line = process.stdout.readline() if process.stdout else ""
    finally:
        killer.cancel()
        process.kill()
        process.wait()
    return line.strip() or None


def parse_nvidia_smi(csv: str) -> list[dict[str, Any]]:
    """GPUs from ``nvidia-smi --query-gpu=name,temperature.gpu,utilization.gpu,memory.used,
    memory.total,power.draw --format=csv,noheader,nounits``."""
    gpus = []
    for row in csv.strip().splitlines():
        cells = [c.strip() for c in row.split(",")]
        if len(cells) < 6:
            continue
        gpus.append({"name": cells[0], "temperature_c": _number(cells[1]),
                     "utilization_percent": _number(cells[2]), "memory_used_mb": _number(cells[3]),
                     "memory_total_mb": _number(cells[4]), "power_w": _number(cells[5])})
    return gpus


def _number(text: str) -> float | None:
    """A float, or None for ``[N/A]`` and the like."""
    try:
        return float(text)
    except ValueError:
        return None


def power_mode() -> str | None:
    """Jetson nvpmodel mode name, else the ACPI platform profile or the CPU governor."""
    output = _run(["nvpmodel", "-q"])
    if output and (match := re.search(r"NV Power Mode:\s*(.+)", output)):
        return match[1].strip()
    status = _read_text(NVPMODEL_STATUS)
    if status:
        return status
    profile = _read_text(PLATFORM_PROFILE)
    if profile:
        return profile
    governor = _read_text(CPU_GOVERNOR)
    return f"cpufreq {governor}" if governor else None


def _gpu(jetson: bool, tegra: dict[str, Any]) -> dict[str, Any] | None:
    """The GPU's load/memory/temperature, from Jetson sysfs or nvidia-smi."""
    if jetson:
        load = next((_read_text(p) for p in JETSON_GPU_LOAD if p.exists()), None)
        percent = int(load) / 10.0 if load and load.isdigit() else tegra.get("gpu_load_percent")
        return {"name": "Jetson integrated GPU", "utilization_percent": percent,
                "memory": "shared with the CPU"}
    query = "name,temperature.gpu,utilization.gpu,memory.used,memory.total,power.draw"
    output = _run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"])
    gpus = parse_nvidia_smi(output) if output else []
    return gpus[0] if gpus else None


def _memory() -> dict[str, Any]:
    """RAM and swap, MiB."""
    virtual, swap = psutil.virtual_memory(), psutil.swap_memory()
    mib = 2**20
    return {"total_mb": virtual.total // mib, "available_mb": virtual.available // mib,
            "used_mb": (virtual.total - virtual.available) // mib, "percent": virtual.percent,
            "swap_used_mb": swap.used // mib, "swap_total_mb": swap.total // mib}


def _disk(folder: Path, min_free_mb: int) -> dict[str, Any]:
    """Space on the data folder's file system."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    mib = 2**20
    return {"path": str(folder), "total_mb": usage.total // mib, "free_mb": usage.free // mib,
            "percent_used": round(100.0 * usage.used / usage.total, 1) if usage.total else None,
            "min_free_mb": min_free_mb, "low": usage.free < min_free_mb * mib}


def _platform(jetson: bool) -> dict[str, Any]:
    """What machine this is."""
    return {"kind": "jetson" if jetson else platform.system().lower(),
            "model": _read_text(DEVICE_TREE_MODEL) or platform.processor() or None,
            "machine": platform.machine(), "l4t": _read_text(TEGRA_RELEASE),
            "python": platform.python_version()}


def read_status(config: Config | None = None) -> dict[str, Any]:
    """Everything the admin page shows about the hardware, as JSON-ready data."""
    jetson = is_jetson()
    tegra = parse_tegrastats(read_tegrastats() or "") if jetson else {"temperatures": {}}
    zones = {**_psutil_temperatures(), **read_thermal_zones(), **tegra["temperatures"]}
    gpu = _gpu(jetson, tegra)
    cpu_temp = _pick(zones, "cpu", "x86_pkg", "coretemp", "k10temp", "package")
    gpu_temp = _pick(zones, "gpu") or (gpu or {}).get("temperature_c")
    data_dir = config.data_dir if config is not None else Path("data")
    min_free = config.min_free_disk_mb if config is not None else 0
    status: dict[str, Any] = {
        "read_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": _platform(jetson),
        "temperatures_c": {"cpu": cpu_temp, "gpu": gpu_temp, "zones": zones},
        "power_mode": power_mode(),
        "power_in_mw": tegra.get("power_in_mw"),
        "cpu": {"count": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2),
                "percent": psutil.cpu_percent(interval=None)},
        "memory": _memory(),
        "disk": _disk(Path(data_dir), min_free),
        "gpu": gpu,
        "uptime_s": round(time.time() - psutil.boot_time()),
        "services": _services() if _services is not None else [],
    }
    status["warnings"] = warnings(status)
    return status


def warnings(status: dict[str, Any]) -> list[str]:
    """What the staff should act on, in plain words."""
    found = []
    for part in ("cpu", "gpu"):
        value = status["temperatures_c"].get(part)
        if value is not None and value >= HOT_C:
            found.append(f"{part.upper()} at {value:.0f} °C: check the fan and the ventilation")
    disk = status["disk"]
    if disk["low"]:
        found.append(f"Only {disk['free_mb']} MiB free on the disk (minimum {disk['min_free_mb']}): "
                     "new captures are refused until space is freed")
    if status["memory"]["percent"] >= 95:
        found.append("Memory almost full: screening may slow down or fail")
    for service in status.get("services", []):
        if not service["running"]:
            found.append(f"The {service['name']} service is down ({service['last_error']}); "
                         "it is being restarted")
    return found
