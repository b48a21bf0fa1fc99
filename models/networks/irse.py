"""IR-SE residual units (ArcFace/InsightFace "improved residual" blocks with squeeze-excitation).

The body of pSp's and AgileGAN's encoders and of the identity-loss network; module names follow
TreB1eN's InsightFace port (`res_layer.{0..5}`, `shortcut_layer`) so official weights load strictly.
"""

from __future__ import annotations

import torch
from torch import nn


class SEModule(nn.Module):
    """Squeeze-excitation: x · sigmoid(fc2(relu(fc1(avgpool(x)))))."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIRSE(nn.Module):
    """BN → 3×3 conv → PReLU → 3×3 conv (stride s) → BN → SE, plus a shortcut.

    The shortcut is a strided identity (MaxPool2d(1, s), no parameters) when the width is
    unchanged, else a 1×1 strided conv + BN.
    """

    def __init__(self, in_channel: int, depth: int, stride: int, se_reduction: int = 16) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, se_reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def build_body(
    stage_units: tuple[int, ...], stage_widths: tuple[int, ...], se_reduction: int, in_channel: int = 64
) -> nn.Sequential:
    """Stages of IR-SE units; the first unit of each stage has stride 2 (IR-SE50: 3/4/14/3 units)."""
    units = []
    for n, width in zip(stage_units, stage_widths):
        units.append(BottleneckIRSE(in_channel, width, 2, se_reduction))
        units.extend(BottleneckIRSE(width, width, 1, se_reduction) for _ in range(n - 1))
        in_channel = width
    return nn.Sequential(*units)
