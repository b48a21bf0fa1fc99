"""Compiled inference programs (models/inference/compiled.py): weights as inputs, batch buckets, and no compile
after warm-up.

These run dynamo's real tracing, guards and graph caches with the `aot_eager` backend, which skips
kernel generation (inductor takes ~10 s per tiny graph on this 2-core CPU); the worker test
(tests/service/test_compiled_worker.py) runs the inductor backend end to end.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from models.inference.compiled import CompileConfig, Programs, default_buckets, resolve_compile_mode
from models.inference.stylizer import Stylizer
from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from service.portrait.configs import EncoderConfig, GeneratorConfig, InverterConfig
from tests.conftest import seeded

BACKEND = "aot_eager"


def graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    return counters["stats"]["unique_graphs"]


@pytest.fixture(scope="module")
def warmed() -> tuple[Programs, Inverter, Generator]:
    generator = seeded(Generator(GeneratorConfig.tiny(32)), 1)
    inverter = seeded(Inverter(InverterConfig(encoder=EncoderConfig.tiny(8), mapping=generator.config.mapping)), 3)
    programs = Programs(CompileConfig("default", (1, 4), BACKEND))
    before = graphs()
    programs.warm_encoder(inverter, "fp32")
    programs.warm_generator(generator, "fp32")
    assert graphs() - before == 4  # two buckets of two programs
    assert len(programs.stats.warmed) == 4 and programs.stats.warm_s > 0
    return programs, inverter, generator


def test_any_weights_of_a_warmed_architecture_run_compiled_without_compiling(warmed) -> None:
    programs, _, generator = warmed
    other = seeded(Generator(GeneratorConfig.tiny(32)), 2)  # a style trained after the worker started
    before, calls = graphs(), programs.stats.compiled_calls
    with torch.inference_mode():
        w = torch.randn(3, generator.n_latent, generator.config.style_dim)  # padded to the bucket of 4
        for model in (generator, other):
            out = programs.synthesize(model, w, "fp32")
            assert out is not None and out.shape == (3, 3, 32, 32)
            torch.testing.assert_close(out, model(w, space="wplus"), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(programs.synthesize(generator, w, "fp32"), programs.synthesize(other, w, "fp32"))
    assert graphs() == before  # the weights are inputs: nothing was compiled for the new style
    assert programs.stats.compiled_calls == calls + 4


def test_batches_are_padded_to_a_bucket_or_chunked_by_the_largest(warmed) -> None:
    programs, inverter, _ = warmed
    size = inverter.config.encoder.input_size
    before = graphs()
    with torch.inference_mode():
        for n in (1, 2, 4, 6, 9):  # 2 → 4; 6 → 4 + (2 → 4); 9 → 4 + 4 + (1)
            x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(n)) * 2 - 1
            out = programs.encode(inverter, x, "fp32")
            assert out is not None and out.shape == (n, inverter.config.encoder.n_styles, 32)
            torch.testing.assert_close(out, inverter(x).wplus, rtol=1e-5, atol=1e-5)
    assert graphs() == before


def test_what_was_not_warmed_runs_eager_and_never_compiles(warmed) -> None:
    programs, inverter, generator = warmed
    bigger = seeded(Generator(GeneratorConfig.tiny(64)), 1)
    eager, before = programs.stats.eager_calls, graphs()
    with torch.inference_mode():
        w = torch.randn(1, generator.n_latent, generator.config.style_dim)
        assert programs.synthesize(bigger, torch.randn(1, bigger.n_latent, 32), "fp32") is None  # architecture
        assert programs.synthesize(generator, w, "bf16") is None  # precision
        assert programs.synthesize(generator, w, "fp32", noise="zero") is None  # noise mode
        # a warmed graph whose guards refuse the input (float64): fail_on_recompile, then eager
        assert programs.synthesize(generator, w.double(), "fp32") is None
    assert programs.stats.eager_calls == eager + 4
    assert graphs() == before


def test_inputs_made_outside_inference_mode_run_compiled(warmed) -> None:
    """The video path runs under no_grad: its tensors are not inference tensors (a guard of the graphs)."""
    programs, _, generator = warmed
    with torch.no_grad():
        w = torch.randn(2, generator.n_latent, generator.config.style_dim)
        out = programs.synthesize(generator, w, "fp32")
        assert out is not None
        torch.testing.assert_close(out, generator(w, space="wplus"), rtol=1e-5, atol=1e-5)


def test_a_stylizer_reports_whether_its_networks_ran_compiled(warmed) -> None:
    from PIL import Image

    programs, inverter, generator = warmed
    compiled = Stylizer(inverter, generator, programs=programs)
    plain = Stylizer(inverter, generator)
    crop = Image.new("RGB", (64, 64), (200, 120, 90))
    a, b = compiled(crop), plain(crop)
    assert a.compiled and not b.compiled
    torch.testing.assert_close(a.wplus, b.wplus, rtol=1e-5, atol=1e-5)
    assert not compiled(crop, noise="random").compiled  # random noise always runs eager


def test_default_buckets_and_config_checks() -> None:
    assert default_buckets(8, per_sample=False) == (1, 2, 4, 8)
    assert default_buckets(6, per_sample=False) == (1, 2, 4, 6)
    assert default_buckets(1, per_sample=False) == (1,)
    assert default_buckets(16, per_sample=True) == (1,)  # the CPU renders sample by sample
    with pytest.raises(ValueError, match="compile mode"):
        CompileConfig("fast")
    with pytest.raises(ValueError, match="ascending"):
        CompileConfig("default", (4, 1))
    assert not CompileConfig().enabled
    assert Programs(CompileConfig()).synthesize(torch.nn.Linear(1, 1), torch.zeros(1, 1), "fp32") is None


def test_cuda_graphs_are_the_default_on_cuda_only() -> None:
    """Issue 26: `auto` (the setting's default) replays CUDA graphs on CUDA, where a batch-1 forward is
    bound by kernel launches, and compiles nothing on the CPU; a named mode is kept on either."""
    from service.platform.settings import Settings

    assert Settings.model_fields["compile"].default == "auto"
    assert resolve_compile_mode("auto", "cuda") == "reduce-overhead"
    assert resolve_compile_mode("auto", "cpu") == "off"
    assert resolve_compile_mode("default", "cpu") == "default"
    assert resolve_compile_mode("off", "cuda") == "off"
