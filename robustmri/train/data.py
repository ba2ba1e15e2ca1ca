"""The deterministic batch order of the engine (and :class:`PairedTensors`, re-exported from
:mod:`robustmri.data.paired`)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from robustmri.data.paired import PairedTensors
from robustmri.errors import DataError

__all__ = ["BatchOrder", "PairedTensors"]


class BatchOrder:
    """Deterministic, stateless batch order: epoch ``e`` is a permutation seeded by ``(seed, e)``.

    The stream of sample positions is the concatenation of the epochs' permutations; step ``k`` of
    process ``rank`` (of ``world_size``) takes positions ``[(k * world_size + rank) * B, ... + B)``.
    Because the order is a pure function of ``(seed, step, rank)``, a resumed run sees exactly the
    batches an uninterrupted run would, with no sampler state to checkpoint.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if n < 1:
            raise DataError("the training split has no slices: check the data split and slice selection")
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self._epoch = -1
        self._perm: Tensor | None = None

    def _permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm

    def indices(self, step: int) -> Tensor:
        """Sample indices (batch_size,) for training step ``step`` (0-based) of this process."""
        return self.schedule(step, 1)[0]

    def schedule(self, first: int, steps: int) -> Tensor:
        """Sample indices (steps, batch_size) of steps ``first .. first + steps - 1``, computed in
        one pass (a Python loop per epoch touched, not per sample)."""
        b, w = self.batch_size, self.world_size
        step = torch.arange(first, first + steps, dtype=torch.int64)[:, None]
        pos = (step * w + self.rank) * b + torch.arange(b, dtype=torch.int64)[None, :]
        epoch, offset = pos // self.n, pos % self.n
        out = torch.empty_like(pos)
        for e in torch.unique(epoch).tolist():
            sel = epoch == e
            out[sel] = self._permutation(int(e))[offset[sel]]
        return out

    def stream(self, first: int, end: int, device: torch.device | str = "cpu", chunk: int = 1024) -> Iterator[Tensor]:
        """The indices (batch_size,) of steps ``first .. end - 1`` on ``device``, made ``chunk``
        steps at a time and copied there once per chunk (pinned and asynchronous on a GPU: no
        host sync per step)."""
        dev = torch.device(device)
        for start in range(first, end, chunk):
            block = self.schedule(start, min(chunk, end - start))
            if dev.type == "cuda":
                block = block.pin_memory().to(dev, non_blocking=True)
            elif dev.type != "cpu":
                block = block.to(dev)
            yield from block
