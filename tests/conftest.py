"""Shared fixtures: tiny seeded models on the CPU, and the test session's own Redis.

Redis: a redis-server started here on a free port, in a temporary directory, for this test session
alone: the tests flush it between tests, so they never touch a Redis they did not start (a developer's,
or a second test run's). AGILEGAN_TEST_REDIS_URL names one to use instead, explicitly (it is flushed).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import torch
from redis import Redis

from models.networks.stylegan2 import Generator
from service.portrait.configs import AttributeGeneratorConfig, GeneratorConfig
from workers.launcher.redis_server import redis_answers, start_redis

# Under pytest-xdist two test processes share the 2 cores (with the workers they start): one thread each, or
# torch's OpenMP threads spin against each other (a 0.5 s gradient check took 38 s beside another process).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


def seeded(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Fill every parameter and buffer-free weight with seeded values (latent_avg computed)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("modulation.bias"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("bias", "noise.weight")):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen))
    if hasattr(module, "compute_latent_avg"):
        module.compute_latent_avg(256, seed=seed)
    return module.eval()


@pytest.fixture
def tiny_generator() -> Generator:
    return seeded(Generator(GeneratorConfig.tiny(32)), 1)


@pytest.fixture
def tiny_attribute_config() -> AttributeGeneratorConfig:
    return AttributeGeneratorConfig(generator=GeneratorConfig.tiny(64), split_resolution=16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("AGILEGAN_TEST_REDIS_URL")
    proc = None
    if url is None:
        url = f"redis://127.0.0.1:{free_port()}/0"
        proc = start_redis(url, tmp_path_factory.mktemp("redis"))
    elif not redis_answers(url):
        raise RuntimeError(f"AGILEGAN_TEST_REDIS_URL={url} does not answer")
    yield url
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    conn = Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()
