"""Build tiny, real, signed model bundles at test time (docs/bundle.md), for any test to reuse.

The network is a real ONNX graph made with ``onnx.helper``: a 1x1 convolution of the input
gives the class-activation maps ``cam`` [N, K, S/4, S/4] (after 4x4 average pooling) and their
global mean gives ``logits`` [N, K]. Per class k the weight on every channel is ``gain[k]/C``
and the bias ``bias[k]``, so a brighter image gives a higher score: tests can steer verdicts
with plain bright/dark images. The bundle is signed with a throwaway Ed25519 key whose public
half goes into a temporary trusted-keys folder.

    keys = make_keys(tmp_path)                    # TestKeys(private, trusted_dir, key_id)
    path = build_bundle(tmp_path / "models", keys)   # models/fundus-dr-1.0.0/
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper, numpy_helper


@dataclass(frozen=True)
class TestKeys:
    """A throwaway signing key and the trusted-keys folder holding its public half."""

    __test__ = False  # not a pytest test class
    private: Ed25519PrivateKey
    trusted_dir: Path
    key_id: str


def make_keys(root: Path, key_id: str = "test-key") -> TestKeys:
    """Generate an Ed25519 key; write its public half to ``root/trusted_keys/<key_id>.pub``."""
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    trusted = root / "trusted_keys"
    trusted.mkdir(parents=True, exist_ok=True)
    (trusted / f"{key_id}.pub").write_text(base64.b64encode(raw).decode() + "\n")
    return TestKeys(private, trusted, key_id)


def tiny_onnx(size: int, channels: int, gains: Sequence[float], biases: Sequence[float],
              *, input_name: str = "image", with_cam: bool = True) -> onnx.ModelProto:
    """The tiny conv -> cam -> mean -> logits graph with a dynamic batch axis ``N``."""
    k = len(gains)
    weight = np.zeros((k, channels, 1, 1), dtype=np.float32)
    for index, gain in enumerate(gains):
        weight[index, :, 0, 0] = gain / channels
    nodes = [
        helper.make_node("Conv", [input_name, "w", "b"], ["full_cam"]),
        helper.make_node("AveragePool", ["full_cam"], ["cam"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("GlobalAveragePool", ["cam"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits"], axis=1),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k])]
    if with_cam:
        side = size // 4
        outputs.append(helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["N", k, side, side]))
    graph = helper.make_graph(
        nodes, "tiny_screening_net",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", channels, size, size])],
        outputs,
        [numpy_helper.from_array(weight, "w"),
         numpy_helper.from_array(np.asarray(biases, dtype=np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def fundus_manifest(size: int = 32) -> dict[str, Any]:
    """A one-finding fundus manifest (referable DR), the shape the real bundle has."""
    return {
        "task": "fundus-dr", "name": "Tiny test fundus model",
        "input": {"name": "image", "size": size, "channels": 3, "layout": "NCHW",
                  "dtype": "float32",
                  "steps": [{"op": "resize", "size": size},
                            {"op": "scale", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}]},
        "outputs": {"logits": "logits", "cam": "cam", "labels": ["referable_dr"],
                    "activation": "sigmoid"},
        "calibration": {"method": "temperature", "temperature": 1.0},
        "findings": [_finding("referable_dr", "Referable diabetic retinopathy", 0.5,
                              referable=True, urgent=False, sensitivity=0.9, specificity=0.8)],
    }


def cxr_manifest(size: int = 32) -> dict[str, Any]:
    """A multi-finding chest manifest: pneumonia (referable) and pneumothorax (urgent)."""
    return {
        "task": "cxr-pneumonia", "name": "Tiny test chest model",
        "input": {"name": "image", "size": size, "channels": 1, "layout": "NCHW",
                  "dtype": "float32",
                  "steps": [{"op": "grey"}, {"op": "resize", "size": size},
                            {"op": "scale", "mean": [0.5], "std": [0.25]}]},
        "outputs": {"logits": "logits", "cam": "cam", "labels": ["pneumonia", "pneumothorax"],
                    "activation": "sigmoid"},
        "calibration": {"method": "temperature", "temperature": 1.0},
        "findings": [
            _finding("pneumonia", "Pneumonia", 0.5, referable=True, urgent=False,
                     sensitivity=0.95, specificity=0.7),
            _finding("pneumothorax", "Pneumothorax", 0.5, referable=True, urgent=True,
                     sensitivity=0.8, specificity=0.95),
        ],
    }


def _finding(label: str, display: str, threshold: float, *, referable: bool, urgent: bool,
             sensitivity: float, specificity: float) -> dict[str, Any]:
    """One manifest finding with a measured operating point."""
    return {"label": label, "display": display, "referable": referable, "urgent": urgent,
            "threshold": threshold,
            "operating_point": {"target": "sensitivity >= 0.90", "sensitivity": sensitivity,
                                "sensitivity_ci": [sensitivity - 0.05, min(1.0, sensitivity + 0.04)],
                                "specificity": specificity,
                                "specificity_ci": [specificity - 0.05, min(1.0, specificity + 0.04)],
                                "n_positive": 100, "n_negative": 400}}


def sign(folder: Path, keys: TestKeys) -> None:
    """Write ``manifest.sig`` for the manifest as it is now."""
    signature = keys.private.sign((folder / "manifest.json").read_bytes())
    (folder / "manifest.sig").write_text(base64.b64encode(signature).decode() + "\n")


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json the way docs/bundle.md says (sorted keys, 2-space indent)."""
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def build_bundle(models_dir: Path, keys: TestKeys, *, kind: str = "fundus", size: int = 32,
                 version: str = "1.0.0", gains: Sequence[float] | None = None,
                 biases: Sequence[float] | None = None, with_cam: bool = True,
                 int8_variant: bool = False, edit: Any = None, task: str | None = None) -> Path:
    """Write and sign ``models_dir/<task>-<version>/``; returns the folder.

    ``task`` names another task of the same kind; ``edit(manifest)`` may change the manifest
    before it is hashed and signed.
    """
    manifest = fundus_manifest(size) if kind == "fundus" else cxr_manifest(size)
    manifest["task"] = task or manifest["task"]
    labels = manifest["outputs"]["labels"]
    gains = list(gains) if gains is not None else [4.0] * len(labels)
    biases = list(biases) if biases is not None else [0.0] * len(labels)
    if not with_cam:
        del manifest["outputs"]["cam"]
    folder = models_dir / f"{manifest['task']}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_onnx(size, manifest["input"]["channels"], gains, biases, with_cam=with_cam)
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "MODEL_CARD.md").write_text("# Tiny test model\n\nFor tests only.\n")
    variants = {"fp32": {"file": "model.onnx", "latency_ms_cpu": 1.0, "auc": 0.9}}
    if int8_variant:
        # Same graph saved under the INT8 name: the tests check which file is chosen, not speed.
        onnx.save(model, str(folder / "model.int8.onnx"))
        variants["int8"] = {"file": "model.int8.onnx", "latency_ms_cpu": 0.5, "auc": 0.899}
    manifest.update({"format": 1, "version": version, "created": "2026-11-29T10:00:00Z",
                     "key_id": keys.key_id, "variants": variants,
                     "metrics": {"auc": 0.9, "auc_ci": [0.85, 0.94], "n": 500},
                     "intended_use": "Tests only.", "limitations": ["synthetic"]})
    if edit is not None:
        edit(manifest)
    manifest["files"] = {name: _sha256(folder / name) for name in
                         sorted({v["file"] for v in variants.values()} | {"MODEL_CARD.md"})}
    write_manifest(folder, manifest)
    sign(folder, keys)
    return folder


def _sha256(path: Path) -> str:
    """sha256 hex of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
