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
from models.networks.derived import derived
from models.networks.ops import (
    SQRT2,
    fir_filter,
    fir_weight,
    fold_fir,
    fused_leaky_relu,
    make_kernel,
    transposed_fir_padding,
    upfirdn2d,
)
from service.portrait.configs import MappingConfig


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
        if self.activation:
            return fused_leaky_relu(self.scaled(x), None, inplace=True)
        return self.scaled(x)

    def scaled(self, x: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
        """factor · (x [B, in] · (W · scale)ᵀ + b · lr_mul) → [B, out]: one `linear` whose scaled weight
        and bias are kept while W and b are unchanged (inference), so a caller's factor costs nothing."""
        w = derived(self, f"weight {factor}", lambda: self.weight * (self.scale * factor), self.weight)
        if self.bias is None:
            return F.linear(x, w)
        b = derived(self, f"bias {factor}", lambda: self.bias * (self.lr_mul * factor), self.bias)
        return F.linear(x, w, b)


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
        c = x.shape[1]
        weight = derived(self, f"fir {x.dtype} {c}", lambda: fir_weight(self.kernel, x.dtype, c), self.kernel)
        if p0 == p1:
            return fir_filter(x, self.kernel, padding=p0, weight=weight)
        return upfirdn2d(x, self.kernel, pad=self.pad, weight=weight)


class Upsample(nn.Module):
    """2× FIR upsampling (used on the RGB skip path)."""

    def __init__(self, taps: Sequence[int], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor**2)
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.transposed = transposed_fir_padding(len(taps), factor, self.pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed is None or not gradfix.is_plain(x):  # training: upfirdn2d's single-call gradients
            return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)
        c = x.shape[1]
        weight = derived(
            self, f"up {x.dtype} {c}", lambda: fir_weight(self.kernel, x.dtype, c, flip=False), self.kernel
        )
        padding, output_padding = self.transposed
        return F.conv_transpose2d(
            x, weight, stride=self.factor, padding=padding, output_padding=output_padding, groups=c
        )


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and 2× up/down-sampling.

    Per sample b: W_b = W · scale · s_b[in] and, when demodulating, W_b /= ‖W_b‖ over (in, kh, kw).
    Batch 1 convolves with W_b directly. Larger batches modulate the activations instead and use one
    shared weight (x · s, conv, · demod): the same function, without a grouped convolution, which is
    slow on both CPU and cuDNN.

    `fold_blur` (a run-time choice, measured per device by the worker): an upsampling convolution
    runs its blur folded into the transposed convolution's kernel (`ops.fold_fir`, kept while the
    weight is unchanged) in inference: one pass for about 4× that convolution's multiply-adds.
    """

    fold_blur: bool = False

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
        out, factor = self.modulated(x, style)
        return out if factor is None else out * factor

    def modulated(
        self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution and the factor [B, out, 1, 1] still to apply to it (None: nothing left), so
        that out · factor = gain · the modulated (and demodulated) convolution. A caller that has more
        to do per pixel (`StyledConv`: noise, bias, activation) folds the factor into its own pass.
        `bias` [out] is added by the convolution itself (only without demodulation, which would scale it).

        The conv's scale rides on the modulation's `linear` (s' = scale · s), and demodulation is
        1/‖W·s'‖ = rsqrt(s'² · ΣW² + 1e-8) per (sample, out channel): a [B, in] × [in, out] product
        with the squared kernel norms ΣW² [out, in] (kept while the weight is unchanged), never a
        [B, out, in, k, k] weight. Batch 1 modulates the weight and runs one plain convolution; larger
        batches modulate the activations and share the weight (a grouped convolution is slow on both
        the CPU and cuDNN).
        """
        if bias is not None and (self.demodulate or self.upsample or self.downsample):
            raise ValueError("a convolution bias needs a plain convolution without demodulation")
        s = self.modulation.scaled(style, self.scale)  # [B, in]
        factor = None
        if self.demodulate:
            factor = self._demodulation(s, gain).view(*s.shape[:1], -1, 1, 1)
        elif gain != 1.0:
            s = s * gain
        fold = self.fold_blur and self.upsample and gradfix.is_plain(x, self.weight)
        if x.shape[0] == 1:  # the modulation commutes with the fold: it scales input channels
            out = self._conv(x, (self._weight(self.weight.dtype, fold) * s.view(1, -1, 1, 1)).to(x.dtype), bias, fold)
        else:
            out = self._conv(x * s.to(x.dtype).view(*s.shape, 1, 1), self._weight(x.dtype, fold), bias, fold)
        return out, (None if factor is None else factor.to(out.dtype))

    def _weight(self, dtype: torch.dtype, fold: bool = False) -> torch.Tensor:
        """The weight [out, in, k, k] in `dtype`, its blur folded in when `fold` (both kept)."""

        def make() -> torch.Tensor:
            w = fold_fir(self.weight[0], self.blur.kernel) if fold else self.weight[0]
            return w.to(dtype)

        return derived(self, f"weight {dtype} {fold}", make, self.weight)

    def _demodulation(self, s: torch.Tensor, gain: float) -> torch.Tensor:
        """gain / ‖W_b‖ [B, out] for the modulation s [B, in], in fp32 (also under autocast)."""
        w = self.weight

        def norms() -> torch.Tensor:  # ΣW² / gain² [in, out] and 1e-8 / gain²
            return torch.cat([w[0].square().sum([2, 3]).t(), torch.full_like(w[0, :, :1, 0, 0].t(), 1e-8)]) / gain**2

        with torch.autocast(s.device.type, enabled=False):
            table = derived(self, f"demod {gain}", norms, w)  # [in + 1, out]: the last row is the epsilon
            return torch.rsqrt(torch.addmm(table[-1:], s.to(table.dtype).square(), table[:-1]))

    def _conv(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, folded: bool = False
    ) -> torch.Tensor:
        if folded:  # the blur is in the kernel: conv_transpose2d's padding takes the blur's place
            padding = self.blur.kernel.shape[-1] - 1 - self.blur.pad[0]
            return F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=padding)
        if self.upsample:
            out = gradfix.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            return self.blur(out)
        if self.downsample:
            return gradfix.conv2d(self.blur(x), weight, stride=2)
        return gradfix.conv2d(x, weight, None if bias is None else bias.to(x.dtype), padding=self.padding)


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
        """leaky_relu(demod · conv + noise · w_noise + bias) · √2 in three passes over the feature map:
        the gain √2 is folded into the demodulation factor, the noise weight and the bias (leaky ReLU
        commutes with a positive scale), each a value kept while its weight is unchanged. The second and
        third passes write into the first's fresh output (autograd-safe: no backward reads what they
        overwrite) unless `activate.inplace` is off (bench/generator.py's "no-opt" row)."""
        inplace = self.activate.inplace
        out, factor = self.conv.modulated(x, style, gain=SQRT2)
        bias = self.activate.bias
        gained = derived(self, f"bias {out.dtype}", lambda: (bias * SQRT2).to(out.dtype).view(1, -1, 1, 1), bias)
        if factor is not None:
            y = torch.addcmul(gained, out, factor)
        else:
            y = out.add_(gained) if inplace else out + gained
        if noise is not None:
            noise, weight = noise.to(y.dtype), self.noise.weight.to(y.dtype)
            y = y.addcmul_(noise, weight, value=SQRT2) if inplace else torch.addcmul(y, noise, weight, value=SQRT2)
        return F.leaky_relu_(y, 0.2) if inplace else F.leaky_relu(y, 0.2)


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
        out, _ = self.conv.modulated(x, style, bias=self.bias.view(-1))  # no demodulation: no factor
        if skip is not None:
            out = out.add_(self.upsample(skip))
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
