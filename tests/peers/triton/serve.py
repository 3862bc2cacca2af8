"""A real Triton server on loopback serving one ONNX model (the kiosk's Triton test peer).

Runs in its own environment (.venv-triton: nvidia-pytriton 0.7 pins numpy<2). pytriton's
tritonserver has only the Python backend, so the ONNX runs in an onnxruntime session inside the
function bound to the model, which still answers through Triton's real HTTP/gRPC endpoints.

    .venv-triton/bin/python tests/peers/triton/serve.py MODEL.onnx --name fundus-dr \
        --http-port 18000 --grpc-port 18001 --metrics-port 18002

Prints "READY" on stdout once the model is being served; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def _tensors(values: list) -> list[Tensor]:
    """pytriton tensors (batch axis left out) for ONNX inputs/outputs."""
    tensors = []
    for value in values:
        dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in value.shape[1:])
        tensors.append(Tensor(name=value.name, dtype=np.float32, shape=dims))
    return tensors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args()

    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        results = session.run(output_names, {input_name: inputs[input_name].astype(np.float32)})
        return dict(zip(output_names, results, strict=True))

    config = TritonConfig(http_address="127.0.0.1", http_port=args.http_port,
                          grpc_address="127.0.0.1", grpc_port=args.grpc_port,
                          metrics_address="127.0.0.1", metrics_port=args.metrics_port,
                          allow_sagemaker=False, allow_vertex_ai=False, exit_on_error=True,
                          exit_timeout_secs=5)
    workspace = Path(tempfile.mkdtemp(prefix="kiosk-triton-")) / "workspace"  # must not exist yet
    with Triton(config=config, workspace=workspace) as triton:
        triton.bind(model_name=args.name, infer_func=infer, inputs=_tensors(session.get_inputs()),
                    outputs=_tensors(session.get_outputs()),
                    config=ModelConfig(max_batch_size=args.max_batch))
        signal.signal(signal.SIGTERM, lambda *_: triton.stop())
        triton.run()
        print("READY", flush=True)
        triton.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
