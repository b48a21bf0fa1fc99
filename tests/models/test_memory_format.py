"""Channels-last or contiguous feature maps (models/inference/memory_format.py): the same images either way, and
the measured choice is the faster one, applied to every network."""

from __future__ import annotations

import time

import pytest
import torch

from models.inference.memory_format import measure, set_channels_last, uses_channels_last
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from service.core.configs import EncoderConfig, GeneratorConfig, InverterConfig
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
        set_channels_last(inverter, on)
        set_channels_last(generator, on)
        assert uses_channels_last(inverter) is on and uses_channels_last(generator) is on
        wplus = inverter(x).wplus
        outputs[on] = (wplus, generator(wplus, space="wplus"))
    torch.testing.assert_close(outputs[True][0], outputs[False][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs[True][1], outputs[False][1], rtol=1e-5, atol=1e-5)


def test_measure_keeps_the_faster_format_on_every_network() -> None:
    inverter, generator = _models()

    def slow_when_channels_last() -> None:  # a device where NHWC loses (cuDNN can, for some layers)
        generator(torch.zeros(1, generator.n_latent, 32), space="wplus")
        time.sleep(0.03 if uses_channels_last(generator) else 0.0)

    choice = measure([inverter, generator], slow_when_channels_last, runs=3)
    assert not choice.channels_last and choice.channels_last_s > choice.contiguous_s + 0.02
    assert not uses_channels_last(inverter) and not uses_channels_last(generator)
    assert "contiguous" in choice.describe()

    def slow_when_contiguous() -> None:
        time.sleep(0.0 if uses_channels_last(generator) else 0.03)

    choice = measure([inverter, generator], slow_when_contiguous, runs=3)
    assert choice.channels_last and uses_channels_last(inverter) and uses_channels_last(generator)
