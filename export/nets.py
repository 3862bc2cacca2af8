"""Small ResNet-style networks whose last layer is a 1x1 convolution: a class-activation map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Block(nn.Module):
    """A basic residual block (two 3x3 convolutions), optionally striding down by two."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                nn.Conv2d(c_in, c_out, 1, bias=False),
                nn.BatchNorm2d(c_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual sum after two convolutions."""
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ScreeningNet(nn.Module):
    """Stem (stride 2), stages of blocks (each after the first strides by 2), CAM head.

    ``forward`` returns (logits [N, K], cam [N, K, h, w]); the logits are the spatial mean of
    the map, so the map explains the score exactly (Zhou et al. 2016).
    """

    def __init__(
        self,
        channels: int,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        outputs: int,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        c_in = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(Block(c_in, width, stride))
                c_in = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(c_in, outputs, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and class-activation maps."""
        cam = self.head(self.dropout(self.features(self.stem(x))))
        return cam.mean(dim=(2, 3)), cam


class Shipped(nn.Module):
    """The exported graph: one output, averaged over ensemble members and test-time views.

    View 0 is the image as it is; views 1-3 mirror it left-right, up-down and both. Each map is
    mirrored back before the average, so ``logits`` stays the spatial mean of ``cam`` and the
    heat-map still explains the score exactly.
    """

    FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))

    def __init__(self, nets: nn.Module | Sequence[nn.Module], index: int, views: int = 1) -> None:
        super().__init__()
        if views not in (1, 2, 4):
            raise ValueError(f"views must be 1, 2 or 4, not {views}")
        self.nets = nn.ModuleList([nets] if isinstance(nets, nn.Module) else list(nets))
        self.index = index
        self.flips = self.FLIPS[:views]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [N, 1] and cam [N, 1, h, w] of the shipped output."""
        views = len(self.flips)
        batch = torch.cat([image.flip(f) if f else image for f in self.flips]) if views > 1 else image
        keep = slice(self.index, self.index + 1)
        maps: list[torch.Tensor] = []
        for net in self.nets:
            _, cam = net(batch)
            cam = cam[:, keep]
            cam = cam.reshape(views, -1, *cam.shape[1:])
            maps.extend(cam[v].flip(f) if f else cam[v] for v, f in enumerate(self.flips))
        cam = torch.stack(maps).mean(dim=0)
        return cam.mean(dim=(2, 3)), cam


def build(channels: int, widths: tuple[int, ...], blocks: tuple[int, ...], outputs: int) -> ScreeningNet:
    """A fresh network."""
    return ScreeningNet(channels, widths, blocks, outputs)
