"""LPIPS-VGG: torchvision/LPIPS key layout, import, the distance, and its use in training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.networks.lpips import LPIPS
from models.weights import checkpoints
from models.weights.importers import ImportFailure, import_weights
from service.portrait.configs import LPIPSConfig, TransferConfig


def _official_files(tmp_path: Path) -> tuple[Path, Path, LPIPS]:
    """Random weights saved the way torchvision (vgg16) and the lpips package (vgg.pth) store them."""
    torch.manual_seed(0)
    model = LPIPS(LPIPSConfig()).eval()
    with torch.no_grad():
        for k in range(5):
            getattr(model, f"lin{k}").model[1].weight.uniform_(0, 0.1)
    vgg = {k.removeprefix("net."): v for k, v in model.state_dict().items() if k.startswith("net.")}
    vgg.update({"classifier.0.weight": torch.zeros(4, 4), "classifier.0.bias": torch.zeros(4)})
    heads = {k: v for k, v in model.state_dict().items() if k.startswith("lin")}
    torch.save(vgg, tmp_path / "vgg16-397923af.pth")
    torch.save(heads, tmp_path / "vgg.pth")
    return tmp_path / "vgg.pth", tmp_path / "vgg16-397923af.pth", model


def test_key_layout_import_and_distance(tmp_path: Path) -> None:
    heads, vgg, reference = _official_files(tmp_path)
    assert list(torch.load(vgg))[:2] == ["features.0.weight", "features.0.bias"]
    assert "features.28.weight" in torch.load(vgg) and "lin4.model.1.weight" in torch.load(heads)
    result = import_weights("lpips-vgg", heads, tmp_path / "lpips", vgg=vgg)
    assert result.ignored_keys == ["classifier.*"]
    lpips = checkpoints.load(tmp_path / "lpips", expected=LPIPS)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    with torch.no_grad():
        assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-6)
        far, near = lpips(x, -x), lpips(x, y)
        assert (far > near).all() and (near > 0).all()
        assert torch.allclose(lpips(x, y), reference(x, y))
    with pytest.raises(ImportFailure, match="needs the VGG16 weights"):
        import_weights("lpips-vgg", heads, tmp_path / "x")


def test_training_uses_lpips_when_configured(tmp_path: Path) -> None:
    from models.networks.discriminator import Discriminator
    from models.networks.stylegan2 import Generator
    from models.training.exemplars import tensor_exemplars
    from models.training.transfer_run import train_style
    from service.portrait.configs import DiscriminatorConfig, GeneratorConfig
    from tests.conftest import seeded

    heads, vgg, _ = _official_files(tmp_path)
    import_weights("lpips-vgg", heads, tmp_path / "lpips", vgg=vgg)
    g, d = seeded(Generator(GeneratorConfig.tiny(32)), 1), seeded(Discriminator(DiscriminatorConfig.tiny(32)), 2)
    exemplars = tensor_exemplars(torch.rand(8, 3, 32, 32) * 2 - 1)
    fast = {
        "batch_size": 2,
        "eval_samples": 4,
        "min_holdout": 2,
        "holdout_fraction": 0.25,
        "max_steps": 2,
        "eval_every": 2,
    }
    used = train_style(g, d, exemplars, TransferConfig(lpips_path=str(tmp_path / "lpips"), **fast), tmp_path / "a")
    assert used.perceptual == "lpips-vgg"
    missing = train_style(g, d, exemplars, TransferConfig(lpips_path=str(tmp_path / "nowhere"), **fast), tmp_path / "b")
    assert missing.perceptual == "source-discriminator-features"
    assert json.loads((tmp_path / "a" / "training.json").read_text())["perceptual"] == "lpips-vgg"
