"""StyleGAN2 residual discriminator, rosinality state-dict layout.

Key names follow rosinality (`convs.0.0.weight` fromRGB, `convs.{1..}` ResBlocks with `conv1`,
`conv2`, `skip`, then `final_conv`, `final_linear`), so the `d` entry of the public FFHQ training
checkpoints loads strictly. The frozen source discriminator also serves as a feature extractor
(perceptual fallback and early-stopping features), hence `features=True`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.networks import gradfix
from models.networks.derived import derived
from models.networks.layers import Blur, EqualConv2d, EqualLinear, FusedLeakyReLU
from models.networks.ops import fold_fir
from service.portrait.configs import DiscriminatorConfig


class ConvLayer(nn.Sequential):
    """[Blur] → EqualConv2d (stride 2 when downsampling) → [FusedLeakyReLU].

    `fold_blur` (a run-time speed flag, `models/inference/speed_choices.py`): a downsampling layer runs
    its blur folded into the convolution's kernel (`ops.fold_fir` with the flipped FIR: k + 3 taps, the
    blur's padding): one convolution instead of a depthwise pass and a convolution, for 4× the
    multiply-adds of a 3×3 layer. Its gradients of every order are gradfix's convolution's.
    """

    fold_blur: bool = False

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_channel, out_channel, kernel_size, padding=padding, stride=stride, bias=bias and not activate
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.fold_blur and self.downsample):
            return super().forward(x)
        blur, conv, *rest = self
        p0, p1 = blur.pad
        if p0 != p1:
            x = F.pad(x, [p0, p1, p0, p1])

        def fold() -> torch.Tensor:  # the blur correlates with the flipped taps; fold_fir convolves
            return fold_fir(conv.weight * conv.scale, torch.flip(blur.kernel, [0, 1]))

        weight = derived(self, "folded", fold, conv.weight, blur.kernel)
        out = gradfix.conv2d(x, weight.to(x.dtype), conv.bias, stride=2, padding=p0 if p0 == p1 else 0)
        return rest[0](out) if rest else out


class ResBlock(nn.Module):
    """Two 3×3 convs (the second downsamples) plus a 1×1 downsampling skip, summed / √2."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_channel, out_channel, 1, downsample=True, activate=False, bias=False, blur_kernel=blur_kernel
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """image [B, 3, size, size] → realness logit [B, 1]."""

    channels_last: bool = True  # a run-time choice (see `forward`), not part of the config

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        size = config.size
        convs: list[nn.Module] = [ConvLayer(3, config.channels(size), 1)]
        in_channel = config.channels(size)
        r = size
        while r > 4:
            out_channel = config.channels(r // 2)
            convs.append(ResBlock(in_channel, out_channel, config.blur_kernel))
            in_channel, r = out_channel, r // 2
        self.convs = nn.Sequential(*convs)
        c4 = config.channels(4)
        self.final_conv = ConvLayer(in_channel + 1, c4, 3)
        self.final_linear = nn.Sequential(EqualLinear(c4 * 16, c4, activation=True), EqualLinear(c4, 1))

    def block_resolutions(self) -> list[int]:
        """Input resolution of each entry of `convs` (fromRGB first, then each ResBlock)."""
        return [self.config.size] + [self.config.size // 2**i for i in range(len(self.convs) - 1)]

    def forward(
        self, image: torch.Tensor, features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """features=True also returns the output of every `convs` block and of `final_conv`."""
        feats: list[torch.Tensor] = []
        # Channels-last feature maps: the convolutions run faster in NHWC (256 px, batch 8, CPU:
        # 7.0 s → 4.9 s per pass, median of 3); results equal to about 1e-6.
        x = image.contiguous(memory_format=torch.channels_last) if self.channels_last else image
        for block in self.convs:
            x = block(x)
            feats.append(x)
        x = self._minibatch_stddev(x)
        x = self.final_conv(x)
        feats.append(x)
        out = self.final_linear(x.reshape(x.shape[0], -1))
        return (out, feats) if features else out

    def _minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Append the mean per-group feature stddev as one channel (group ≤ stddev_group).

        rosinality requires the batch to be divisible by min(batch, 4); we take the largest group
        size ≤ stddev_group that divides the batch, which is identical whenever rosinality works.
        """
        b, c, h, w = x.shape
        group = next(g for g in range(min(b, self.config.stddev_group), 0, -1) if b % g == 0)
        s = x.view(group, -1, 1, c, h, w)
        s = torch.sqrt(s.var(0, unbiased=False) + 1e-8)
        s = s.mean([2, 3, 4], keepdim=True).squeeze(2)
        s = s.repeat(group, 1, h, w)
        return torch.cat([x, s], 1)
