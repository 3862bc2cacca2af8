"""A bundle's ONNX network run in PyTorch eager mode, node by node, for the usual-way baseline.

A research script runs its network as a torch module: each layer calls ``torch.nn.functional``
in Python, one kernel after another, in float32, with no graph optimisation. This module builds
exactly that from the bundle's own ONNX file (weights and all), so the baseline needs no
training checkpoint and no copy of the training code: any clone plus ``../shared/data`` can
reproduce the benchmark, whatever architecture the bundle holds. An operator it does not know
stops it with the operator's name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

Op = Callable[[list[Any], dict[str, Any]], Any]
OPS: dict[str, Op] = {}


def op(*names: str) -> Callable[[Op], Op]:
    """Register a torch implementation of ONNX operators."""
    def register(function: Op) -> Op:
        for name in names:
            OPS[name] = function
        return function
    return register


def _ints(value: Any) -> list[int]:
    """An ONNX int list (attribute or int64 tensor) as Python ints."""
    return [int(v) for v in (value.tolist() if isinstance(value, torch.Tensor) else value)]


def _symmetric(pads: list[int], spatial: int) -> list[int]:
    """Per-axis padding; asymmetric pads are not produced by the project's exporter."""
    begin, end = pads[:spatial], pads[spatial:]
    if begin != end:
        raise SystemExit(f"asymmetric pads {pads} are not supported")
    return begin


@op("Conv")
def _conv(x: list[Any], a: dict[str, Any]) -> Any:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise SystemExit("Conv auto_pad is not supported")
    weight = x[1]
    spatial = weight.dim() - 2
    pads = _symmetric(list(a.get("pads", [0] * 2 * spatial)), spatial)
    return F.conv2d(x[0], weight, x[2] if len(x) > 2 else None, stride=list(a.get("strides", [1, 1])),
                    padding=pads, dilation=list(a.get("dilations", [1, 1])), groups=int(a.get("group", 1)))


@op("AveragePool", "MaxPool")
def _pool(x: list[Any], a: dict[str, Any]) -> Any:
    kernel = list(a["kernel_shape"])
    pads = _symmetric(list(a.get("pads", [0] * 2 * len(kernel))), len(kernel))
    stride, ceil = list(a.get("strides", kernel)), bool(a.get("ceil_mode", 0))
    if a["_op"] == "MaxPool":
        return F.max_pool2d(x[0], kernel, stride, pads, ceil_mode=ceil)
    return F.avg_pool2d(x[0], kernel, stride, pads, ceil_mode=ceil,
                        count_include_pad=bool(a.get("count_include_pad", 0)))


@op("GlobalAveragePool")
def _global_average(x: list[Any], a: dict[str, Any]) -> Any:
    return x[0].mean(dim=(2, 3), keepdim=True)


@op("ReduceMean")
def _reduce_mean(x: list[Any], a: dict[str, Any]) -> Any:
    axes = _ints(x[1]) if len(x) > 1 and x[1] is not None else list(a.get("axes", range(x[0].dim())))
    return x[0].mean(dim=axes, keepdim=bool(a.get("keepdims", 1)))


@op("Relu")
def _relu(x: list[Any], a: dict[str, Any]) -> Any:
    return F.relu(x[0])


@op("Clip")
def _clip(x: list[Any], a: dict[str, Any]) -> Any:
    low = x[1] if len(x) > 1 and x[1] is not None else a.get("min")
    high = x[2] if len(x) > 2 and x[2] is not None else a.get("max")
    return torch.clamp(x[0], min=None if low is None else float(low),
                       max=None if high is None else float(high))


@op("Sigmoid", "Tanh", "Exp", "Sqrt", "Neg", "Identity", "HardSwish")
def _unary(x: list[Any], a: dict[str, Any]) -> Any:
    table: dict[str, Callable[[Any], Any]] = {
        "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Sqrt": torch.sqrt,
        "Neg": torch.neg, "Identity": lambda t: t, "HardSwish": F.hardswish}
    return table[a["_op"]](x[0])


@op("HardSigmoid")
def _hard_sigmoid(x: list[Any], a: dict[str, Any]) -> Any:
    return torch.clamp(x[0] * float(a.get("alpha", 0.2)) + float(a.get("beta", 0.5)), 0.0, 1.0)


@op("Add", "Sub", "Mul", "Div", "Pow")
def _binary(x: list[Any], a: dict[str, Any]) -> Any:
    table: dict[str, Callable[[Any, Any], Any]] = {
        "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Pow": torch.pow}
    return table[a["_op"]](x[0], x[1])


@op("MatMul")
def _matmul(x: list[Any], a: dict[str, Any]) -> Any:
    return torch.matmul(x[0], x[1])


@op("Gemm")
def _gemm(x: list[Any], a: dict[str, Any]) -> Any:
    left = x[0].t() if a.get("transA") else x[0]
    right = x[1].t() if a.get("transB") else x[1]
    out = float(a.get("alpha", 1.0)) * (left @ right)
    return out + float(a.get("beta", 1.0)) * x[2] if len(x) > 2 and x[2] is not None else out


@op("Softmax")
def _softmax(x: list[Any], a: dict[str, Any]) -> Any:
    return torch.softmax(x[0], dim=int(a.get("axis", -1)))


@op("BatchNormalization")
def _batch_norm(x: list[Any], a: dict[str, Any]) -> Any:
    return F.batch_norm(x[0], x[3], x[4], x[1], x[2], training=False, eps=float(a.get("epsilon", 1e-5)))


@op("Constant")
def _constant(x: list[Any], a: dict[str, Any]) -> Any:
    if "value" in a:
        return torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
    for key in ("value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            return torch.tensor(a[key])
    raise SystemExit(f"Constant with {sorted(a)} is not supported")


#: ONNX TensorProto data types -> torch dtypes (those exporters emit).
DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 6: torch.int32, 7: torch.int64,
          9: torch.bool, 10: torch.float16, 11: torch.float64}


@op("Cast")
def _cast(x: list[Any], a: dict[str, Any]) -> Any:
    return x[0].to(DTYPES[int(a["to"])])


@op("ConstantOfShape")
def _constant_of_shape(x: list[Any], a: dict[str, Any]) -> Any:
    value = torch.from_numpy(numpy_helper.to_array(a["value"]).copy()) if "value" in a else torch.zeros(1)
    return torch.full(_ints(x[0]), value.reshape(-1)[0].item(), dtype=value.dtype)


@op("Pad")
def _pad(x: list[Any], a: dict[str, Any]) -> Any:
    data, pads = x[0], _ints(x[1]) if len(x) > 1 else list(a["pads"])
    rank = data.dim()
    axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(rank))
    begin = dict(zip(axes, pads[: len(axes)], strict=True))
    end = dict(zip(axes, pads[len(axes):], strict=True))
    flat: list[int] = []
    for axis in reversed(range(rank)):  # torch wants the last axis first
        flat += [begin.get(axis, 0), end.get(axis, 0)]
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = float(x[2]) if len(x) > 2 and x[2] is not None and x[2].numel() else 0.0
    if mode == "constant":
        return F.pad(data, flat, mode="constant", value=value)
    return F.pad(data, flat, mode={"edge": "replicate"}.get(mode, mode))


@op("Shape")
def _shape(x: list[Any], a: dict[str, Any]) -> Any:
    return torch.tensor(list(x[0].shape), dtype=torch.int64)


@op("Gather")
def _gather(x: list[Any], a: dict[str, Any]) -> Any:
    data, index, axis = x[0], x[1].long(), int(a.get("axis", 0))
    index = torch.where(index < 0, index + data.shape[axis], index)
    if index.dim() == 0:
        return data.select(axis, int(index))
    picked = torch.index_select(data, axis, index.reshape(-1))
    return picked.reshape(*data.shape[:axis], *index.shape, *data.shape[axis + 1:])


@op("Unsqueeze")
def _unsqueeze(x: list[Any], a: dict[str, Any]) -> Any:
    out = x[0]
    axes = _ints(x[1]) if len(x) > 1 else list(a["axes"])
    rank = out.dim() + len(axes)
    for axis in sorted(axis % rank for axis in axes):
        out = out.unsqueeze(axis)
    return out


@op("Squeeze")
def _squeeze(x: list[Any], a: dict[str, Any]) -> Any:
    axes = _ints(x[1]) if len(x) > 1 else list(a.get("axes", []))
    return x[0].squeeze(tuple(axes)) if axes else x[0].squeeze()


@op("Concat")
def _concat(x: list[Any], a: dict[str, Any]) -> Any:
    return torch.cat(x, dim=int(a["axis"]))


@op("Reshape")
def _reshape(x: list[Any], a: dict[str, Any]) -> Any:
    shape = _ints(x[1])
    shape = [x[0].shape[i] if s == 0 and not a.get("allowzero") else s for i, s in enumerate(shape)]
    return x[0].reshape(shape)


@op("Flatten")
def _flatten(x: list[Any], a: dict[str, Any]) -> Any:
    axis = int(a.get("axis", 1)) % max(1, x[0].dim())
    return x[0].reshape(int(np.prod(x[0].shape[:axis])), -1)


@op("Transpose")
def _transpose(x: list[Any], a: dict[str, Any]) -> Any:
    return x[0].permute(*a.get("perm", reversed(range(x[0].dim()))))


@op("Slice")
def _slice(x: list[Any], a: dict[str, Any]) -> Any:
    data = x[0]
    starts, ends = _ints(x[1]), _ints(x[2])
    axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
    steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        size = data.shape[axis]
        index = range(*slice(start, end, step).indices(size))
        if step == 1:
            data = data.narrow(axis, index.start, len(index))
        else:  # a mirrored view: a negative step (torch slicing has none)
            data = torch.index_select(data, axis, torch.tensor(list(index), dtype=torch.int64))
    return data


class EagerOnnx(torch.nn.Module):
    """The ONNX graph's nodes run one by one with torch operators, float32, on the CPU."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        graph = onnx.load(str(path)).graph
        self.weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
        self.nodes = [(n.op_type, list(n.input), list(n.output),
                       {t.name: helper.get_attribute_value(t) for t in n.attribute}) for n in graph.node]
        unknown = sorted({kind for kind, *_ in self.nodes} - set(OPS))
        if unknown:
            raise SystemExit(f"{path}: operators not supported by bench/onnx_eager.py: {', '.join(unknown)}")
        self.inputs = [i.name for i in graph.input if i.name not in self.weights]
        self.outputs = [o.name for o in graph.output]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The graph's outputs, in its order (``logits``, ``cam`` for a kiosk bundle)."""
        values: dict[str, Any] = {**self.weights, **dict(zip(self.inputs, inputs, strict=True))}
        for kind, names, outputs, attributes in self.nodes:
            result = OPS[kind]([values[n] if n else None for n in names], {**attributes, "_op": kind})
            values.update(zip(outputs, result if isinstance(result, tuple) else (result,), strict=False))
        return tuple(values[name] for name in self.outputs)
