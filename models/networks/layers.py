"""StyleGAN2 building blocks with rosinality's module and parameter names.

Keeping rosinality's attribute names (`modulation`, `noise`, `activate`, `blur.kernel`, …) makes the
public FFHQ and AgileGAN checkpoints load with `strict=True` and no renaming. Weights are stored raw
and scaled at run time (equalised learning rate, Karras et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.networks import gradfix
from models.networks.ops import fir_filter, fused_leaky_relu, make_kernel, upfirdn2d
from service.core.configs import MappingConfig


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit RMS over dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised LR: y = x · (W · lr_mul/√in)ᵀ + b · lr_mul, optional fused lrelu."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)


class EqualConv2d(nn.Module):
    """Conv2d with equalised LR (weight scaled by 1/√fan_in at run time)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gradfix.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias then leaky ReLU (slope 0.2) times √2; `inplace` overwrites its input."""

    def __init__(self, channel: int, bias: bool = True, inplace: bool = False) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, inplace=self.inplace)


class Blur(nn.Module):
    """FIR low-pass with symmetric padding; `kernel` is a buffer (part of the rosinality state dict)."""

    def __init__(self, taps: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p0, p1 = self.pad
        if p0 == p1:
            return fir_filter(x, self.kernel, padding=p0)
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2× FIR upsampling (used on the RGB skip path)."""

    def __init__(self, taps: Sequence[int], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor**2)
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and 2× up/down-sampling.

    Per sample b: W_b = W · scale · s_b[in] and, when demodulating, W_b /= ‖W_b‖ over (in, kh, kw).
    Batch 1 convolves with W_b directly. Larger batches modulate the activations instead and use one
    shared weight (x · s, conv, · demod): the same function, without a grouped convolution, which is
    slow on both CPU and cuDNN.
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        downsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.downsample, self.demodulate = upsample, downsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x: [B, in, H, W], style: [B, style_dim] → [B, out, H', W']."""
        batch = x.shape[0]
        s = self.modulation(style)  # [B, in]
        if batch == 1:
            return self._forward_modulated_weight(x, s)
        return self._forward_modulated_input(x, s)

    def _demod(self, weight: torch.Tensor) -> torch.Tensor:
        """1/‖W_b‖ per (sample, out channel) for weight [B, out, in, k, k] → [B, out]."""
        return torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)

    def _forward_modulated_weight(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        weight = self.scale * self.weight * s.view(1, 1, -1, 1, 1)  # [1, out, in, k, k]
        if self.demodulate:
            weight = weight * self._demod(weight).view(1, -1, 1, 1, 1)
        weight = weight[0].to(x.dtype)
        return self._conv(x, weight)

    def _forward_modulated_input(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        weight = (self.scale * self.weight[0]).to(x.dtype)  # [out, in, k, k]
        out = self._conv(x * s.to(x.dtype).view(x.shape[0], -1, 1, 1), weight)
        if self.demodulate:
            demod = self._demod(self.scale * self.weight * s.view(s.shape[0], 1, -1, 1, 1))
            out = out * demod.to(out.dtype).view(out.shape[0], -1, 1, 1)
        return out

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            out = gradfix.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            return self.blur(out)
        if self.downsample:
            return gradfix.conv2d(self.blur(x), weight, stride=2)
        return gradfix.conv2d(x, weight, padding=self.padding)


class NoiseInjection(nn.Module):
    """Adds `weight · noise` ([B or 1, 1, H, W]); no noise (`None`) adds nothing.

    inplace: add into x (the caller owns it: StyledConv passes its fresh conv output, which the conv's
    backward does not need, so this is autograd-safe and saves a full-resolution copy).
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.inplace = inplace

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            return x
        noise, weight = noise.to(x.dtype), self.weight.to(x.dtype)
        return x.addcmul_(noise, weight) if self.inplace else torch.addcmul(x, noise, weight)


class ConstantInput(nn.Module):
    """The learned 4×4 input of the synthesis network, repeated over the batch."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv → noise → bias + leaky ReLU."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel, out_channel, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection(inplace=True)
        self.activate = FusedLeakyReLU(out_channel, inplace=True)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1×1 modulated conv (no demodulation) to RGB, plus the upsampled RGB skip of the stage below."""

    def __init__(
        self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[int] = (1, 3, 3, 1)
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class MappingNetwork(nn.Sequential):
    """z [B, D] → w [B, D]: PixelNorm then n_mlp EqualLinear+lrelu layers (keys `1.weight`, …)."""

    def __init__(self, config: MappingConfig) -> None:
        layers: list[nn.Module] = [PixelNorm()]
        for _ in range(config.n_mlp):
            layers.append(EqualLinear(config.style_dim, config.style_dim, lr_mul=config.lr_mlp, activation=True))
        super().__init__(*layers)
        self.config = config

    def map_per_layer(self, z_plus: torch.Tensor) -> torch.Tensor:
        """z+ [B, L, D] → w+ [B, L, D]: each of the L codes through the mapping independently."""
        b, n, d = z_plus.shape
        return self(z_plus.reshape(b * n, d)).reshape(b, n, d)
