"""A remote NVIDIA Triton inference server (several kiosks sharing one GPU box), over HTTP.

The server must serve the bundle's network under the bundle's task name (``kiosk models
triton-repo`` writes such a model repository, docs/triton.md). ``load()`` checks that the server
is ready, that the model's inputs and outputs match the manifest, and, where the model config
carries the ``kiosk_bundle_sha256`` parameter, that it is this very bundle.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import numpy as np

from engines.base import Engine
from kiosk.errors import EngineError

SHA_PARAMETER = "kiosk_bundle_sha256"


def split_url(url: str) -> tuple[str, bool]:
    """``http(s)://host:port`` -> ("host:port", uses TLS); EngineError when malformed."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EngineError(f"triton: KIOSK_TRITON_URL {url!r} is not http(s)://host:port",
                          code="bad_triton_url")
    port = parts.port or (443 if parts.scheme == "https" else 8000)
    return f"{parts.hostname}:{port}", parts.scheme == "https"


class TritonEngine(Engine):
    """Inference on a Triton server through tritonclient's HTTP API."""

    name = "triton"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client: Any = None
        self.http: Any = None
        self.model_name = self.bundle.task
        self.verified_sha = False
        self.address = ""

    def load(self) -> None:
        """Connect, wait for nothing: the server and model must be ready now."""
        if not self.config.triton_url:
            raise EngineError("triton: KIOSK_TRITON_URL is not set", code="provider_missing")
        import tritonclient.http as http
        from tritonclient.utils import InferenceServerException

        self.http = http
        address, tls = split_url(self.config.triton_url)
        self.address = address
        try:
            self.client = http.InferenceServerClient(address, ssl=tls, network_timeout=30.0,
                                                     connection_timeout=5.0)
            if not self.client.is_server_ready():
                raise EngineError(f"triton: server at {address} is not ready",
                                  code="backend_unavailable", retryable=True)
            if not self.client.is_model_ready(self.model_name):
                raise EngineError(f"triton: server at {address} has no ready model "
                                  f"{self.model_name!r}", code="backend_unavailable", retryable=True)
            self._check_model(self.client.get_model_metadata(self.model_name),
                              self.client.get_model_config(self.model_name))
        except InferenceServerException as exc:
            raise EngineError(f"triton: {address}: {exc.message()}", code="backend_unavailable",
                              retryable=True) from exc
        except OSError as exc:  # refused, unreachable, timed out
            raise EngineError(f"triton: cannot reach {address}: {exc}", code="backend_unavailable",
                              retryable=True) from exc

    def _check_model(self, metadata: dict[str, Any], config: dict[str, Any]) -> None:
        """The served model reads and writes what the manifest declares (and is this bundle)."""
        inputs = {t["name"]: t for t in metadata.get("inputs", [])}
        outputs = {t["name"]: t for t in metadata.get("outputs", [])}
        spec = self.bundle.input_spec
        want = [int(spec["channels"]), int(spec["size"]), int(spec["size"])]
        served = inputs.get(self.bundle.input_name)
        if served is None or [int(d) for d in served["shape"][-3:]] != want:
            raise EngineError(f"triton: model {self.model_name!r} input does not match the bundle "
                              f"({self.bundle.input_name} {want}; served {list(inputs.values())})",
                              code="io_mismatch")
        missing = [name for name in self.bundle.output_names if name not in outputs]
        if missing:
            raise EngineError(f"triton: model {self.model_name!r} lacks outputs {missing}",
                              code="io_mismatch")
        sha = config.get("parameters", {}).get(SHA_PARAMETER, {}).get("string_value")
        if sha and sha != self.bundle.sha256:
            raise EngineError(f"triton: model {self.model_name!r} is bundle {sha[:12]}…, this kiosk "
                              f"has {self.bundle.sha256[:12]}…", code="io_mismatch")
        self.verified_sha = bool(sha)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Send the batch, return the outputs the bundle declares."""
        if self.client is None:
            raise EngineError("triton: infer() before load()", code="engine_not_loaded")
        from tritonclient.utils import InferenceServerException

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        request = self.http.InferInput(self.bundle.input_name, list(batch.shape), "FP32")
        request.set_data_from_numpy(batch, binary_data=True)
        wanted = [self.http.InferRequestedOutput(name, binary_data=True)
                  for name in self.bundle.output_names]
        try:
            response = self.client.infer(self.model_name, [request], outputs=wanted)
        except InferenceServerException as exc:
            raise EngineError(f"{self.name}: inference failed: {exc.message()}",
                              code="infer_failed", retryable=True) from exc
        except OSError as exc:
            raise EngineError(f"{self.name}: connection lost: {exc}", code="backend_unavailable",
                              retryable=True) from exc
        return {name: np.asarray(response.as_numpy(name)) for name in self.bundle.output_names}

    def close(self) -> None:
        """Close the HTTP connections to the server."""
        if self.client is not None:
            self.client.close()
            self.client = None

    def describe(self) -> dict[str, object]:
        """The base description plus the served model and whether its sha256 was checked."""
        info = super().describe()
        info.update({"server": self.address, "model_name": self.model_name,
                     "bundle_sha256_checked": self.verified_sha})
        return info
