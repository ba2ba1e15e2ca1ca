"""Paired slices for training and evaluation, and the deterministic batch order of the engine."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robustmri.errors import DataError
from robustmri.models.base import Batch


@dataclass
class PairedTensors:
    """Source/target slice pairs held as tensors (CPU memory or memory-mapped arrays).

    source: (N, C_in, H, W) float32 in [0, 1]; target: (N, 1, H, W) float32 in [0, 1];
    mask: (N, 1, H, W) bool brain mask; subject: (N,) int64 subject index; slice: (N,) int64;
    subject_names: optional names indexed by ``subject`` (e.g. the prepared dataset's subject ids).
    """

    source: Tensor
    target: Tensor
    mask: Tensor
    subject: Tensor
    slice: Tensor | None = None
    subject_names: list[str] | None = None

    def __post_init__(self) -> None:
        n = self.source.shape[0]
        if self.source.ndim != 4 or self.target.ndim != 4 or self.target.shape[1] != 1:
            raise DataError(
                f"paired slices need source (N, C, H, W) and target (N, 1, H, W), got {tuple(self.source.shape)} "
                f"and {tuple(self.target.shape)}"
            )
        if self.target.shape[0] != n or self.mask.shape[0] != n or self.subject.shape[0] != n:
            raise DataError("source, target, mask and subject must have the same number of slices")
        if self.source.shape[-2:] != self.target.shape[-2:]:
            raise DataError(f"source and target sizes differ: {tuple(self.source.shape)} vs {tuple(self.target.shape)}")
        if self.slice is None:
            self.slice = torch.zeros(n, dtype=torch.int64)

    def __len__(self) -> int:
        return int(self.source.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.source.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.source.shape[-1])

    def batch(self, index: Tensor, device: torch.device | str = "cpu") -> Batch:
        """Slices ``index`` (1-D LongTensor) as a batch on ``device``."""
        return {
            "source": self.source[index].to(device, torch.float32),
            "target": self.target[index].to(device, torch.float32),
            "mask": self.mask[index].to(device, torch.bool),
        }

    def subset(self, keep: Tensor) -> PairedTensors:
        """The slices where the bool vector ``keep`` (N,) is true."""
        assert self.slice is not None
        return PairedTensors(
            self.source[keep], self.target[keep], self.mask[keep], self.subject[keep], self.slice[keep], self.subject_names
        )

    def subject_labels(self, rows: slice | Tensor) -> list[str]:
        """Subject names of ``rows`` (the integer index as text when no names are known)."""
        idx = self.subject[rows].tolist()
        if self.subject_names is None:
            return [str(i) for i in idx]
        return [self.subject_names[i] for i in idx]


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
