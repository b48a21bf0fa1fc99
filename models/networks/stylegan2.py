"""StyleGAN2 generator (Karras et al. 2020) in pure PyTorch, rosinality state-dict layout.

With the default config-f settings the state dict has exactly the 171 keys and shapes of
rosinality's `Generator(1024, 512, 8, channel_multiplier=2)`, so the public FFHQ checkpoint and every
style checkpoint derived from it load with `strict=True`. The average latent used for truncation is
a non-persistent buffer (rosinality keeps it beside `g_ema`, not inside it); our checkpoints save it.

Inputs, all through `forward(latents, space=…)`:
- "z":     z [B, D] through the mapping network, or z+ [B, L, D] with each code mapped separately
           (AgileGAN's space: the encoder emits z+ and transfer learning samples it);
- "w":     w [B, D], broadcast to every layer;
- "wplus": w+ [B, L, D], one vector per layer (L = n_latent, 18 at 1024).
"""

from __future__ import annotations

import torch
from torch import nn

from models.networks.layers import ConstantInput, MappingNetwork, StyledConv, ToRGB
from models.networks.synthesis import NoiseMode, noise_inputs, noise_rows, run_stages
from service.portrait.configs import GeneratorConfig

SPACES = ("z", "w", "wplus")


def register_noise_buffers(config: GeneratorConfig) -> nn.Module:
    """`noises.noise_{i}` buffers [1, 1, r, r], r = 4, 8, 8, 16, 16, …, size (the const noise)."""
    noises = nn.Module()
    for i in range(config.num_layers):
        r = 2 ** ((i + 5) // 2)
        noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
    return noises


def build_stage_modules(config: GeneratorConfig, resolutions: list[int]) -> tuple[nn.ModuleList, nn.ModuleList]:
    """StyledConv pairs and ToRGBs for the given stage resolutions (each a power of two ≥ 8)."""
    convs, to_rgbs = nn.ModuleList(), nn.ModuleList()
    for r in resolutions:
        cin, cout = config.channels(r // 2), config.channels(r)
        convs.append(StyledConv(cin, cout, 3, config.style_dim, upsample=True, blur_kernel=config.blur_kernel))
        convs.append(StyledConv(cout, cout, 3, config.style_dim, blur_kernel=config.blur_kernel))
        to_rgbs.append(ToRGB(cout, config.style_dim, blur_kernel=config.blur_kernel))
    return convs, to_rgbs


def stage_resolutions(low: int, high: int) -> list[int]:
    """[low, 2·low, …, high] for powers of two."""
    return [2**e for e in range(low.bit_length() - 1, high.bit_length())]


class StyleStem(nn.Module):
    """Mapping network plus the shared 4×4 stage: what every generator variant has in common.

    Subclasses add their stage modules and then `self.noises = register_noise_buffers(config)`.
    """

    noises: nn.Module
    channels_last: bool = True  # a run-time choice, not part of the config (see `stem`)
    per_sample_on_cpu: bool = True  # a run-time choice (see `render`); False runs CPU batches whole

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.style = MappingNetwork(config.mapping)
        c4 = config.channels(4)
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, config.style_dim, blur_kernel=config.blur_kernel)
        self.to_rgb1 = ToRGB(c4, config.style_dim, upsample=False)
        self.register_buffer("latent_avg", torch.zeros(config.style_dim), persistent=False)

    @property
    def n_latent(self) -> int:
        return self.config.n_latent

    def to_wplus(self, latents: torch.Tensor, space: str = "z", truncation: float = 1.0) -> torch.Tensor:
        """Any input space → w+ [B, n_latent, D], with truncation toward `latent_avg` when < 1."""
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        d, n = self.config.style_dim, self.n_latent
        if latents.ndim == 2 and space != "wplus":
            expected = (d,)
        else:
            expected = (n, d)
        if latents.ndim not in (2, 3) or tuple(latents.shape[1:]) != expected:
            raise ValueError(
                f"{space} latents must have shape [B, {', '.join(map(str, expected))}], got {list(latents.shape)}"
            )
        w = latents
        if space == "z":
            w = self.style(latents) if latents.ndim == 2 else self.style.map_per_layer(latents)
        if truncation != 1.0:
            avg = self.latent_avg.to(w.dtype)
            w = avg + truncation * (w - avg)
        if w.ndim == 2:
            w = w.unsqueeze(1).expand(-1, n, -1)
        return w

    def render(
        self,
        wplus: torch.Tensor,
        noises: list[torch.Tensor | None],
        branch_idx: torch.Tensor | None = None,
        return_features: bool = False,
        swap_features: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Synthesis of w+ [B, L, D] with the fastest batch strategy for the device.

        On the CPU (when `per_sample_on_cpu`), samples are rendered one at a time: a batch-1
        modulated conv folds the style into the weights and runs a plain convolution, which measured
        2.7× faster per image at 1024 px than modulating the activations of a batch (bench/generator.py),
        and 1.9× faster for a training forward + backward at 256 px. On CUDA the whole batch runs at once.
        """
        batch = wplus.shape[0]
        if batch > 1 and wplus.device.type == "cpu" and self.per_sample_on_cpu:
            parts = [
                self._synthesize(
                    wplus[i : i + 1],
                    noise_rows(noises, slice(i, i + 1), batch),
                    None if branch_idx is None else branch_idx[i : i + 1],
                    return_features,
                    {r: t[i : i + 1] for r, t in swap_features.items()} if swap_features else None,
                )
                for i in range(batch)
            ]
            image = torch.cat([p[0] for p in parts])
            features = {r: torch.cat([p[1][r] for p in parts]) for r in parts[0][1]} if return_features else None
        else:
            image, features = self._synthesize(wplus, noises, branch_idx, return_features, swap_features)
        if features is not None:
            return image, features
        return image

    def _synthesize(
        self,
        wplus: torch.Tensor,
        noises: list[torch.Tensor | None],
        branch_idx: torch.Tensor | None,
        return_features: bool,
        swap_features: dict[int, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor] | None]:
        raise NotImplementedError

    def stem(self, wplus: torch.Tensor, noises: list[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """The 4×4 stage: (feature map [B, C4, 4, 4], RGB skip [B, 3, 4, 4]).

        Feature maps are kept channels-last from here on when `self.channels_last` (default): oneDNN
        and cuDNN convolutions run faster in NHWC (1024 px, batch 1, CPU: 1.2 s → 0.74 s).
        """
        x = self.input(wplus.shape[0])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.conv1(x, wplus[:, 0], noises[0])
        return x, self.to_rgb1(x, wplus[:, 1])

    def noise(self, mode: NoiseMode, batch: int, rng: torch.Generator | None) -> list[torch.Tensor | None]:
        return noise_inputs(self.noises, self.config.num_layers, mode, batch, rng)

    @torch.no_grad()
    def compute_latent_avg(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Set `latent_avg` to the mean of the mapping over n seeded z ~ N(0, I); returns it."""
        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.config.style_dim, generator=rng).to(self.latent_avg.device)
        self.latent_avg.copy_(self.style(z).mean(0))
        return self.latent_avg


class Generator(StyleStem):
    """StyleGAN2 generator: latents → image [B, 3, size, size] (unclipped, about [-1, 1])."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        self.convs, self.to_rgbs = build_stage_modules(config, stage_resolutions(8, config.size))
        self.noises = register_noise_buffers(config)  # registered last: rosinality's key order

    def forward(
        self,
        latents: torch.Tensor,
        space: str = "z",
        truncation: float = 1.0,
        noise: NoiseMode = "const",
        rng: torch.Generator | None = None,
        return_features: bool = False,
        swap_features: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Render latents of `space` (see module docstring).

        return_features: also return {resolution: feature map} of every stage (4 … size);
        swap_features: {resolution: feature map} to substitute after that stage (layer swapping).
        """
        wplus = self.to_wplus(latents, space, truncation)
        noises = self.noise(noise, wplus.shape[0], rng)
        return self.render(wplus, noises, None, return_features, swap_features)

    def _synthesize(
        self,
        wplus: torch.Tensor,
        noises: list[torch.Tensor | None],
        branch_idx: torch.Tensor | None,
        return_features: bool,
        swap_features: dict[int, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor] | None]:
        x, skip = self.stem(wplus, noises)
        features: dict[int, torch.Tensor] | None = {4: x} if return_features else None
        _, image = run_stages(self.convs, self.to_rgbs, x, skip, wplus, noises, 0, features, swap_features)
        return image.contiguous(), features
