"""Attribute-aware generator (AgileGAN §3): per-attribute 8…64 px blocks, shared stem and high-res blocks.

The official `DualGenerator` hard-codes two branches (A = female, B = male), runs *both* for every
sample and restarts its noise list for the shared blocks, so buffered noise fails and outputs are
random. Here there are N branches; a batch whose samples ask for different branches runs each branch
only on its own samples (gather, run, scatter), and the noise inputs keep their global layer index,
so `const` noise is deterministic and a sample's output does not depend on its batch-mates.

State-dict layout: the stem (`style`, `input`, `conv1`, `to_rgb1`), `branches.{k}.convs/to_rgbs`
(stages 8 … split_resolution), shared `convs`/`to_rgbs` (above split_resolution), `noises`.
`branch_state_dict`/`from_generator` convert to and from a plain `Generator` per branch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from models.networks.stylegan2 import (
    Generator,
    StyleStem,
    build_stage_modules,
    register_noise_buffers,
    stage_resolutions,
)
from models.networks.synthesis import NoiseMode, run_stages
from service.portrait.configs import AttributeGeneratorConfig

BranchSpec = str | int | Sequence[str | int] | torch.Tensor


class AttributeBranch(nn.Module):
    """One attribute's stages 8 … split_resolution."""

    def __init__(self, config: AttributeGeneratorConfig) -> None:
        super().__init__()
        self.convs, self.to_rgbs = build_stage_modules(config.generator, stage_resolutions(8, config.split_resolution))


class AttributeAwareGenerator(StyleStem):
    """latents + per-sample branch → image [B, 3, size, size]."""

    def __init__(self, config: AttributeGeneratorConfig) -> None:
        super().__init__(config.generator)
        self.attribute_config = config
        self.branches = nn.ModuleList(AttributeBranch(config) for _ in config.branches)
        g = config.generator
        self.convs, self.to_rgbs = build_stage_modules(g, stage_resolutions(config.split_resolution * 2, g.size))
        self.noises = register_noise_buffers(g)

    @property
    def branch_names(self) -> tuple[str, ...]:
        return self.attribute_config.branches

    def branch_indices(self, branch: BranchSpec, batch: int) -> torch.Tensor:
        """Resolve a branch name/index, or one per sample, to a LongTensor [B]."""
        names = self.branch_names
        if isinstance(branch, torch.Tensor):
            idx = branch.to(torch.long).flatten()
        else:
            items = [branch] if isinstance(branch, (str, int)) else list(branch)
            idx = torch.tensor([self._one_index(b) for b in items], dtype=torch.long)
        if idx.numel() == 1:
            idx = idx.expand(batch)
        if idx.numel() != batch:
            raise ValueError(f"got {idx.numel()} branches for a batch of {batch}")
        if idx.min() < 0 or idx.max() >= len(names):
            raise ValueError(f"branch index out of range for branches {list(names)}")
        return idx

    def _one_index(self, branch: str | int) -> int:
        if isinstance(branch, str):
            if branch not in self.branch_names:
                raise ValueError(f"unknown branch {branch!r}; this generator has {list(self.branch_names)}")
            return self.branch_names.index(branch)
        return int(branch)

    def forward(
        self,
        latents: torch.Tensor,
        branch: BranchSpec | None = None,
        space: str = "z",
        truncation: float = 1.0,
        noise: NoiseMode = "const",
        rng: torch.Generator | None = None,
        return_features: bool = False,
        swap_features: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Like `Generator.forward`; `branch` defaults to the config's `default_branch` for all."""
        wplus = self.to_wplus(latents, space, truncation)
        batch = wplus.shape[0]
        idx = self.branch_indices(self.attribute_config.default_branch if branch is None else branch, batch)
        noises = self.noise(noise, batch, rng)
        return self.render(wplus, noises, idx.to(wplus.device), return_features, swap_features)

    def _synthesize(
        self,
        wplus: torch.Tensor,
        noises: list[torch.Tensor | None],
        branch_idx: torch.Tensor | None,
        return_features: bool,
        swap_features: dict[int, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor] | None]:
        assert branch_idx is not None
        x, skip = self.stem(wplus, noises)
        features: dict[int, torch.Tensor] | None = {4: x} if return_features else None

        # 1. Each attribute branch on its own samples only.
        if bool((branch_idx == branch_idx[0]).all()):
            b = self.branches[int(branch_idx[0])]
            x, skip = run_stages(b.convs, b.to_rgbs, x, skip, wplus, noises, 0, features, swap_features)
        else:
            x, skip = self._run_branches_split(branch_idx, x, skip, wplus, noises, features, swap_features)

        # 2. The shared high-resolution stages on the whole batch.
        first = self.attribute_config.n_branch_stages
        _, image = run_stages(self.convs, self.to_rgbs, x, skip, wplus, noises, first, features, swap_features)
        return image.contiguous(), features

    def _run_branches_split(
        self,
        idx: torch.Tensor,
        x: torch.Tensor,
        skip: torch.Tensor,
        wplus: torch.Tensor,
        noises: list[torch.Tensor | None],
        features: dict[int, torch.Tensor] | None,
        swap_features: dict[int, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        x_out: torch.Tensor | None = None
        skip_out: torch.Tensor | None = None
        for k in idx.unique().tolist():
            sel = (idx == k).nonzero().squeeze(1)
            sub_noise = [n[sel] if n is not None and n.shape[0] == batch else n for n in noises]
            sub_swap = {r: t[sel] for r, t in swap_features.items()} if swap_features else None
            sub_feats: dict[int, torch.Tensor] | None = {} if features is not None else None
            b = self.branches[k]
            xb, sb = run_stages(b.convs, b.to_rgbs, x[sel], skip[sel], wplus[sel], sub_noise, 0, sub_feats, sub_swap)
            if x_out is None or skip_out is None:
                x_out = xb.new_empty((batch, *xb.shape[1:]))
                skip_out = sb.new_empty((batch, *sb.shape[1:]))
            x_out[sel], skip_out[sel] = xb, sb
            if features is not None and sub_feats is not None:
                for r, f in sub_feats.items():
                    features.setdefault(r, f.new_empty((batch, *f.shape[1:])))[sel] = f
        assert x_out is not None and skip_out is not None
        return x_out, skip_out

    # ---------------------------------------------------------------- conversion to/from Generator

    def branch_state_dict(self, branch: str | int) -> dict[str, torch.Tensor]:
        """State dict of a plain `Generator` equal to this one with `branch` selected."""
        k = self._one_index(branch)
        n = self.attribute_config.n_branch_stages
        out = {}
        for key, value in self.state_dict().items():
            new = branch_key_to_plain(key, k, n)
            if new is not None:
                out[new] = value
        return out

    def branch_generator(self, branch: str | int) -> Generator:
        g = Generator(self.config).to(self.latent_avg.device)
        g.load_state_dict(self.branch_state_dict(branch), strict=True)
        g.latent_avg.copy_(self.latent_avg)
        return g

    @classmethod
    def from_generator(cls, generator: Generator, config: AttributeGeneratorConfig) -> AttributeAwareGenerator:
        """Every branch initialised from one plain generator (how training starts from FFHQ)."""
        if generator.config != config.generator:
            raise ValueError("the generator's config differs from config.generator")
        model = cls(config).to(generator.latent_avg.device)
        plain = generator.state_dict()
        state = {key: _plain_value(key, config, plain) for key in model.state_dict()}
        model.load_state_dict(state, strict=True)
        model.latent_avg.copy_(generator.latent_avg)
        return model


_STAGE_KEY = re.compile(r"^(branches\.(\d+)\.)?(convs|to_rgbs)\.(\d+)\.(.*)$")


def branch_key_to_plain(key: str, branch: int, n_branch_stages: int) -> str | None:
    """Map an attribute-generator key to the plain key of `branch` (None: another branch's key)."""
    m = _STAGE_KEY.match(key)
    if m is None:
        return key
    owner, kind, i, rest = m.group(2), m.group(3), int(m.group(4)), m.group(5)
    if owner is not None:
        return f"{kind}.{i}.{rest}" if int(owner) == branch else None
    offset = 2 * n_branch_stages if kind == "convs" else n_branch_stages
    return f"{kind}.{i + offset}.{rest}"


def _plain_value(key: str, config: AttributeGeneratorConfig, plain: dict[str, torch.Tensor]) -> torch.Tensor:
    """The plain generator's tensor for an attribute-generator key (every branch copies the same one)."""
    m = _STAGE_KEY.match(key)
    owner = int(m.group(2)) if m is not None and m.group(2) is not None else 0
    return plain[branch_key_to_plain(key, owner, config.n_branch_stages)].clone()  # type: ignore[index]
