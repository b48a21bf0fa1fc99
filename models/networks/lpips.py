"""LPIPS-VGG perceptual distance (Zhang et al. 2018), pure PyTorch, for style training's consistency term.

Key names follow torchvision's `vgg16().features` (`net.features.N.*`) and the LPIPS package's linear
heads (`lin{k}.model.1.weight`), so `agilegan weights import --format lpips-vgg` only renames. No weights
ship with the project: LPIPS needs ImageNet-trained VGG16 weights plus the LPIPS heads, which
`agilegan lpips install` downloads (checksum-verified) and imports (see README).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from service.portrait.configs import LPIPSConfig

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
CHANNELS = (64, 128, 256, 512, 512)


class VGG16Features(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(item)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                taps.append(x)
        return taps


class LinearHead(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """distance(x, y) for images [B, 3, H, W] in [-1, 1] → [B] (0 for identical images)."""

    def __init__(self, config: LPIPSConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = VGG16Features()
        for k, channels in enumerate(CHANNELS):
            self.add_module(f"lin{k}", LinearHead(channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for k, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            head = getattr(self, f"lin{k}").model[1]
            total = total + F.conv2d((a - b).pow(2), head.weight).mean(dim=(1, 2, 3))
        return total
