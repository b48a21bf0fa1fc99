"""A training step never makes the CPU wait for the device, but once at its end (issue 25).

On a GPU every read of a tensor's value (`float(loss)`, `.item()`, `allclose`, `bool(t)`) and every
blocking host → device copy (`t.to("cuda")`) drains the command queue: the GPU idles while the CPU
queues the next kernels. Those calls are the same on every device, so they are counted here on the CPU
with a `TorchFunctionMode`: each value read in a step must come from one of the places that are meant
to read (the step's losses, once; ADA's signs, once per interval; the augmentation's matrices, which
live on the CPU), and no copy to a device may block.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from models.training.transfer import Trainer
from service.portrait.configs import TransferConfig
from tests.models.test_transfer import FAST, exemplars, source  # noqa: F401 - the fixture

READS = {"item", "__float__", "__int__", "__bool__", "__index__", "tolist", "allclose", "equal", "numpy"}
#  the places allowed to read a value: (file, function)
ALLOWED = {
    ("transfer.py", "read_scalars"),  # the step's losses, once, at its end
    ("augment.py", "update"),  # ADA's signs, once per `ada_every` steps
    ("augment.py", "augment"),  # the augmentation's own CPU-side matrices
    ("torch.optim", "step count"),  # Adam's step counters: host tensors (a fused Adam on CUDA reads none)
}


class HostWaits(TorchFunctionMode):
    """Records where values are read and which copies to a device block."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []
        self.blocking_copies: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in READS:
            self.reads.append(self._caller())
        elif name == "to" and not kwargs.get("non_blocking", False):
            targets = list(args[1:]) + [kwargs.get("device")]
            if any(isinstance(t, (str, torch.device, torch.Tensor)) for t in targets):
                self.blocking_copies.append(":".join(self._caller()))
        return func(*args, **kwargs)

    @staticmethod
    def _caller() -> tuple[str, str]:
        """The innermost frame of the project's model code, or of torch's optimisers."""
        for frame in reversed(traceback.extract_stack()[:-2]):
            if "/torch/optim/" in frame.filename:
                return "torch.optim", "step count"
            if "/models/" in frame.filename:
                return Path(frame.filename).name, frame.name
        return "?", "?"


def test_a_step_reads_its_values_once_and_never_blocks_on_a_copy(source, tmp_path: Path) -> None:  # noqa: F811
    g, d = source
    config = TransferConfig(ada_p_init=0.5, ada_every=4, perceptual_weight=1.0, **FAST)
    trainer = Trainer(g, d, exemplars(), config, tmp_path)
    trainer.step = 3  # with FAST's r1_every 4 and pl_every 2: a plain step, then R1 + path length, …
    for _ in range(4):
        step = trainer.step
        with HostWaits() as waits:
            losses = trainer.train_step()
        assert not waits.blocking_copies, waits.blocking_copies
        assert set(waits.reads) <= ALLOWED, set(waits.reads) - ALLOWED
        assert waits.reads.count(("transfer.py", "read_scalars")) == 1
        assert waits.reads.count(("augment.py", "update")) == (1 if (step + 1) % 4 == 0 else 0)
        assert waits.reads.count(("augment.py", "augment")) == 3  # real and fake for D, fake for G
        assert ("r1" in losses) == (step % 4 == 0) and ("pl" in losses) == (step % 2 == 0)
        assert all(isinstance(v, float) for v in losses.values())
