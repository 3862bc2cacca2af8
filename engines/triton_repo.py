"""A Triton model repository for production Triton (ONNX Runtime or TensorRT backend) from bundles.

One model per bundle, named after its task (what the kiosk's Triton back-end asks for):

    OUTDIR/<task>/config.pbtxt          inputs/outputs from the manifest and the ONNX graph,
                                        dynamic batching, the bundle's sha256 as a parameter
    OUTDIR/<task>/1/model.onnx          (onnxruntime backend), or
    OUTDIR/<task>/1/model.plan          (tensorrt backend: built on the server's GPU with the
                                        trtexec command written to OUTDIR/<task>/build-plan.sh)

See docs/triton.md.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from engines.bundle import Bundle, onnx_io
from engines.triton_engine import SHA_PARAMETER
from kiosk.errors import KioskError

BACKENDS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class RepoOptions:
    """How the model should be served."""

    backend: str = "onnxruntime"  # or "tensorrt" (a plan built on the server)
    device: str = "gpu"  # instance kind: gpu or cpu
    tensorrt_accelerator: bool = False  # onnxruntime backend: let its TensorRT EP run the graph
    max_batch_size: int = 8
    max_queue_delay_us: int = 2000


def _dims(values: list[object]) -> str:
    """Triton dims without the batch axis; unknown sizes are -1."""
    return ", ".join(str(v) if isinstance(v, int) and v > 0 else "-1" for v in values[1:])


def _tensor(name: str, dims: list[object]) -> str:
    """One input/output entry."""
    return f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: [ {_dims(dims)} ]\n  }}'


def config_pbtxt(bundle: Bundle, options: RepoOptions) -> str:
    """The model's config.pbtxt (protobuf text format of Triton's ModelConfig)."""
    if options.backend not in BACKENDS:
        raise KioskError(f"unknown Triton backend {options.backend!r} (known: {', '.join(BACKENDS)})",
                         code="bad_option")
    _, outputs = onnx_io(bundle.variant_path("fp32"))
    spec = bundle.input_spec
    input_dims: list[object] = [-1, int(spec["channels"]), int(spec["size"]), int(spec["size"])]
    lines = [f'name: "{bundle.task}"']
    if options.backend == "tensorrt":
        lines += ['platform: "tensorrt_plan"', 'default_model_filename: "model.plan"']
    else:
        lines += ['backend: "onnxruntime"', 'default_model_filename: "model.onnx"']
    lines += [f"max_batch_size: {options.max_batch_size}",
              "input [\n" + _tensor(bundle.input_name, input_dims) + "\n]",
              "output [\n" + ",\n".join(_tensor(n, outputs[n]) for n in bundle.output_names) + "\n]",
              f"dynamic_batching {{\n  max_queue_delay_microseconds: {options.max_queue_delay_us}\n}}",
              f"instance_group [\n  {{\n    kind: KIND_{options.device.upper()}\n    count: 1\n  }}\n]"]
    if options.backend == "onnxruntime" and options.tensorrt_accelerator:
        lines.append(
            "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
            '      {\n        name: "tensorrt"\n'
            '        parameters { key: "precision_mode" value: "FP16" }\n'
            '        parameters { key: "max_workspace_size_bytes" value: "1073741824" }\n'
            '        parameters { key: "trt_engine_cache_enable" value: "1" }\n'
            "      }\n    ]\n  }\n}")
    for key, value in ((SHA_PARAMETER, bundle.sha256), ("kiosk_bundle_version", bundle.version)):
        lines.append(f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}')
    return "\n".join(lines) + "\n"


def trtexec_command(bundle: Bundle, onnx: Path, plan: Path, max_batch: int) -> str:
    """The trtexec call that builds the plan on the serving GPU (FP16, dynamic batch)."""
    spec = bundle.input_spec
    image = f"{int(spec['channels'])}x{int(spec['size'])}x{int(spec['size'])}"
    name = bundle.input_name
    return shlex.join(["trtexec", f"--onnx={onnx}", f"--saveEngine={plan}", "--fp16",
                       f"--minShapes={name}:1x{image}", f"--optShapes={name}:1x{image}",
                       f"--maxShapes={name}:{max_batch}x{image}"])


def write_model(bundle: Bundle, outdir: Path, options: RepoOptions) -> Path:
    """Write one bundle's model folder into the repository; returns the folder."""
    folder = Path(outdir) / bundle.task
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config_pbtxt(bundle, options))
    if options.backend == "tensorrt":
        onnx = folder / "model.onnx"  # outside the version folder: only the plan is served
        shutil.copyfile(bundle.variant_path("fp32"), onnx)
        command = trtexec_command(bundle, Path("model.onnx"), Path("1/model.plan"),
                                  options.max_batch_size)
        script = folder / "build-plan.sh"
        script.write_text("#!/bin/sh\n# Run on the Triton server's GPU: a plan only suits the GPU "
                          "and TensorRT version that built it.\nset -e\ncd \"$(dirname \"$0\")\"\n"
                          f"{command}\n")
        script.chmod(0o755)
    else:
        shutil.copyfile(bundle.variant_path("fp32"), version / "model.onnx")
    return folder
