"""The deterministic batch order of the engine (and :class:`PairedTensors`, re-exported from
:mod:`robustmri.data.paired`)."""

from __future__ import annotations

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
        start = (step * self.world_size + self.rank) * self.batch_size
        out = []
        for pos in range(start, start + self.batch_size):
            epoch, offset = divmod(pos, self.n)
            out.append(self._permutation(epoch)[offset])
        return torch.stack(out)
