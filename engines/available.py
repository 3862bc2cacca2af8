"""Which inference back-ends could run on this machine, and why not, without loading a model.

``kiosk doctor`` prints this beside the back-end that really runs each model, so that an
installer sees at once whether the GPU wheels (the ``[gpu]`` / ``[jetson]`` extras), the GPU
itself or a Triton address are what is missing. Nothing here imports a runtime that is not
installed, and nothing touches the GPU beyond listing device files.
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib.util
import shutil
from dataclasses import dataclass
from importlib import metadata

from kiosk.config import Config

GPU_EXTRA = "pip install '.[gpu]' (a PC with an NVIDIA GPU) or '.[jetson]' (docs/jetson.md)"


@dataclass(frozen=True)
class Availability:
    """One back-end: whether it could run here, and what it found or lacks."""

    backend: str
    can_run: bool
    reason: str


def _distribution(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def gpu_devices() -> list[str]:
    """Device files of NVIDIA GPUs (a PC's /dev/nvidia0..., a Jetson's /dev/nvhost-gpu)."""
    return sorted(glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/nvhost-gpu"))


def _onnxruntime_providers() -> tuple[list[str], str]:
    """onnxruntime's available providers and which build is installed ('' when none)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return [], ""
    import onnxruntime

    build = next((f"{name} {version}" for name in ("onnxruntime-gpu", "onnxruntime")
                  if (version := _distribution(name))), f"onnxruntime {onnxruntime.__version__}")
    return list(onnxruntime.get_available_providers()), build


def _gpu_reason() -> str | None:
    """Why no GPU can be used here, or None when one is visible."""
    if gpu_devices():
        return None
    smi = "nvidia-smi is not installed" if shutil.which("nvidia-smi") is None else "nvidia-smi exists"
    return f"no NVIDIA GPU visible (no /dev/nvidia0 or /dev/nvhost-gpu; {smi})"


def _ort(backend: str, provider: str, providers: list[str], build: str) -> Availability:
    """An onnxruntime execution provider."""
    if not build:
        return Availability(backend, False, "onnxruntime is not installed")
    if provider not in providers:
        return Availability(backend, False, f"{build} has no {provider}: {GPU_EXTRA}")
    if provider != "CPUExecutionProvider":
        gpu = _gpu_reason()
        if gpu:
            return Availability(backend, False, f"{build} lists {provider}, but {gpu}")
        if provider == "TensorrtExecutionProvider" and ctypes.util.find_library("nvinfer") is None \
                and importlib.util.find_spec("tensorrt") is None:
            return Availability(backend, False, "TensorRT's libnvinfer is not installed (JetPack, or "
                                "the tensorrt wheel of the [gpu] extra)")
    return Availability(backend, True, f"{build}, {provider}")


def _native_tensorrt() -> Availability:
    """TensorRT's own Python bindings with cuda-python."""
    if importlib.util.find_spec("tensorrt") is None:
        return Availability("tensorrt", False, "no Python module tensorrt (JetPack's python3-libnvinfer "
                            f"in a --system-site-packages venv, or {GPU_EXTRA})")
    if importlib.util.find_spec("cuda") is None:
        return Availability("tensorrt", False, "no cuda-python (pip install the [gpu]/[jetson] extra)")
    gpu = _gpu_reason()
    if gpu:
        return Availability("tensorrt", False, gpu)
    return Availability("tensorrt", True, f"tensorrt {_distribution('tensorrt') or ''}".strip())


def _triton(config: Config) -> Availability:
    """A remote Triton server (reachability is the peer checks' business)."""
    if importlib.util.find_spec("tritonclient") is None:
        return Availability("triton", False, "tritonclient is not installed")
    url = config.triton_url
    if not url:
        return Availability("triton", False, "KIOSK_TRITON_URL is not set")
    return Availability("triton", True, f"server {url}")


def availability(config: Config) -> list[Availability]:
    """Every registered back-end, in the order of the registry."""
    providers, build = _onnxruntime_providers()
    return [
        _ort("onnxruntime-cpu", "CPUExecutionProvider", providers, build),
        _ort("onnxruntime-cuda", "CUDAExecutionProvider", providers, build),
        _ort("onnxruntime-trt", "TensorrtExecutionProvider", providers, build),
        _native_tensorrt(),
        _triton(config),
    ]
