"""The networks' run-time speed flags (models/inference/speed_choices.py): channels-last feature maps and
the upsampling blur folded into its convolution give the same images either way, and the measured
choice is the faster one, applied to every network."""

from __future__ import annotations

import time

import pytest
import torch

from models.inference.launches import count_launches
from models.inference.speed_choices import FLAGS, initial_flag, measure, set_flag, uses
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from service.portrait.configs import EncoderConfig, GeneratorConfig, InverterConfig
from tests.conftest import seeded

pytestmark = pytest.mark.serial  # timing or memory bounds: run alone (Makefile), not beside other tests


def _models() -> tuple[Inverter, Generator]:
    generator = seeded(Generator(GeneratorConfig.tiny(32)), 1)
    inverter = seeded(Inverter(InverterConfig(encoder=EncoderConfig.tiny(8), mapping=generator.config.mapping)), 2)
    return inverter, generator


@torch.inference_mode()
def test_both_formats_give_the_same_networks() -> None:
    inverter, generator = _models()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    outputs = {}
    for on in (True, False):
        set_flag(inverter, "channels_last", on)
        set_flag(generator, "channels_last", on)
        assert uses(inverter, "channels_last") is on and uses(generator, "channels_last") is on
        wplus = inverter(x).wplus
        outputs[on] = (wplus, generator(wplus, space="wplus"))
    torch.testing.assert_close(outputs[True][0], outputs[False][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs[True][1], outputs[False][1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 4])
def test_the_folded_blur_gives_the_same_images_in_one_pass_less_per_upsampling(batch: int) -> None:
    """Issue 26: the blur after each upsampling convolution folded into its kernel (6×6 for 3×3 and
    [1, 3, 3, 1]); training keeps the two passes (its gradients are gradfix's)."""
    generator = seeded(Generator(GeneratorConfig.tiny(64)), 1)
    generator.per_sample_on_cpu = False
    w = torch.randn(batch, generator.n_latent, 32, generator=torch.Generator().manual_seed(0))
    images, launches = {}, {}
    for on in (False, True):
        set_flag(generator, "fold_blur", on)
        with torch.no_grad():
            images[on] = generator(w, space="wplus")
            launches[on] = count_launches(lambda: generator(w, space="wplus"))
    assert float((images[True] - images[False]).norm() / images[False].norm()) < 1e-6
    assert launches[False] - launches[True] == 4  # 8 → 16 → 32 → 64 px: one blur each
    trained = generator(w, space="wplus")  # with autograd: unfolded, and the same image
    torch.testing.assert_close(trained, images[False], rtol=1e-5, atol=1e-5)


def test_measure_keeps_the_faster_side_on_every_network() -> None:
    inverter, generator = _models()

    def slow_when_channels_last() -> None:  # a device where NHWC loses (cuDNN can, for some layers)
        generator(torch.zeros(1, generator.n_latent, 32), space="wplus")
        time.sleep(0.03 if uses(generator, "channels_last") else 0.0)

    choice = measure([inverter, generator], "channels_last", slow_when_channels_last, prefer=True, runs=3)
    assert not choice.on and choice.on_s > choice.off_s + 0.02
    assert not uses(inverter, "channels_last") and not uses(generator, "channels_last")
    assert "channels_last off" in choice.describe()

    def slow_when_unfolded() -> None:
        time.sleep(0.0 if uses(generator, "fold_blur") else 0.03)

    choice = measure([inverter, generator], "fold_blur", slow_when_unfolded, prefer=False, runs=3)
    assert choice.on and uses(generator, "fold_blur") and not uses(inverter, "fold_blur")  # no blur to fold there
    with pytest.raises(ValueError, match="speed flag"):
        set_flag(generator, "fast", True)


def test_the_discriminator_folds_its_downsampling_blurs_with_the_same_logits_and_r1() -> None:
    """Issue 26: D's blur + stride-2 convolution as one convolution (6×6 for 3×3, 4×4 for the 1×1
    skips): the same logits and R1 gradients, fewer convolutions in an R1 step, and a trainer's copies
    of D keep the flag (a training worker with AGILEGAN_FOLD_BLUR=on)."""
    from torch.profiler import ProfilerActivity, profile

    from models.networks.discriminator import Discriminator
    from models.training.losses import r1_penalty
    from service.portrait.configs import DiscriminatorConfig

    d = seeded(Discriminator(DiscriminatorConfig.tiny(64)), 2)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    runs = {}
    for on in (False, True):
        set_flag(d, "fold_blur", on)
        real = x.clone().requires_grad_(True)
        d.zero_grad()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            logits = d(real)
            r1 = r1_penalty(logits, real)
            r1.backward()
        convolutions = sum(e.count for e in prof.key_averages() if e.key == "aten::convolution")
        grads = torch.cat([p.grad.flatten() for p in d.parameters() if p.grad is not None])
        runs[on] = logits.detach(), r1.detach(), grads, convolutions
    (l0, r0, g0, c0), (l1, r1_, g1, c1) = runs[False], runs[True]
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r1_, r0, rtol=1e-5, atol=1e-7)
    assert float((g1 - g0).norm() / g0.norm()) < 1e-5
    assert c1 < c0 * 0.8, (c1, c0)  # 64 against 88 on this D
    from copy import deepcopy

    assert uses(deepcopy(d), "fold_blur")  # what Trainer does with the source D


def test_a_measured_choice_is_kept_for_the_next_start(tmp_path) -> None:
    from models.inference.speed_choices import KeptChoices, SpeedChoice

    kept = KeptChoices(tmp_path / "cache" / "speed-choices.json")
    assert kept.get("channels_last | cpu") is None
    kept.put("channels_last | cpu", SpeedChoice("channels_last", False, 0.02, 0.01))
    again = KeptChoices(tmp_path / "cache" / "speed-choices.json").get("channels_last | cpu")
    assert again == SpeedChoice("channels_last", False, 0.02, 0.01, kept=True)
    assert "kept from an earlier start" in again.describe()
    assert kept.get("channels_last | NVIDIA H200") is None  # another device measures anew
    kept.path.write_text("{not json")
    assert kept.get("channels_last | cpu") is None  # a damaged file: measured again


def test_a_flag_starts_on_its_setting_or_its_preferred_side() -> None:
    """Before any measurement: `on`/`off` as named; `auto` and `measure` on the preferred (CPU) side."""
    table = {flag: [initial_flag(flag, s) for s in ("on", "off", "auto", "measure")] for flag in FLAGS}
    assert table == {"channels_last": [True, False, True, True], "fold_blur": [True, False, False, False]}
