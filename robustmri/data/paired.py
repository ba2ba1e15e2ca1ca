"""Paired source/target slices as tensors: what training, scoring and attacks consume."""

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
    subject_names: optional names indexed by ``subject`` (e.g. the prepared dataset's subject ids);
    spacing: (N,) float64 in-plane pixel spacing in mm (the mean of the row and column spacing),
    None when unknown (then perturbations with lengths in mm refuse to run);
    labels: optional (N, 1, H, W) uint8 tissue labels of the real anatomy
    (:data:`robustmri.data.tissues.SEG_LABELS`), when the data have a seg file per subject;
    slice_mm: optional (N,) float64 through-plane position of each slice in mm (whole-volume
    scores stack a subject's slices by it), None when unknown.
    """

    source: Tensor
    target: Tensor
    mask: Tensor
    subject: Tensor
    slice: Tensor | None = None
    subject_names: list[str] | None = None
    spacing: Tensor | None = None
    labels: Tensor | None = None
    slice_mm: Tensor | None = None

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
        if self.spacing is not None:
            self.spacing = torch.as_tensor(self.spacing, dtype=torch.float64).flatten()
            if self.spacing.shape[0] != n:
                raise DataError(f"spacing has {self.spacing.shape[0]} values for {n} slices")
        if self.slice_mm is not None:
            self.slice_mm = torch.as_tensor(self.slice_mm, dtype=torch.float64).flatten()
            if self.slice_mm.shape[0] != n:
                raise DataError(f"slice_mm has {self.slice_mm.shape[0]} values for {n} slices")
        if self.labels is not None and tuple(self.labels.shape) != (n, 1, *self.target.shape[-2:]):
            raise DataError(f"labels {tuple(self.labels.shape)} do not match the targets {tuple(self.target.shape)}")

    def __len__(self) -> int:
        return int(self.source.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.source.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.source.shape[-1])

    def batch(self, index: Tensor, device: torch.device | str = "cpu") -> Batch:
        """Slices ``index`` (1-D LongTensor) as a batch on ``device``: one indexed read per tensor
        (on the device itself when the slices are resident there, see :meth:`resident`)."""
        return {
            "source": self.source[index].to(device, torch.float32),
            "target": self.target[index].to(device, torch.float32),
            "mask": self.mask[index].to(device, torch.bool),
        }

    def resident(self, device: torch.device | str) -> PairedTensors:
        """The same slices with source, target and mask held on ``device`` (float32, bool), so that
        :meth:`batch` gathers a batch there without a host round trip."""
        return PairedTensors(
            self.source.to(device, torch.float32), self.target.to(device, torch.float32), self.mask.to(device, torch.bool),
            self.subject, self.slice, self.subject_names, self.spacing, self.labels, self.slice_mm,
        )

    def nbytes(self) -> int:
        """Bytes of source, target and mask as :meth:`resident` holds them."""
        return 4 * (self.source.numel() + self.target.numel()) + self.mask.numel()

    def subset(self, keep: Tensor) -> PairedTensors:
        """The slices where the bool vector ``keep`` (N,) is true."""
        assert self.slice is not None
        return PairedTensors(
            self.source[keep], self.target[keep], self.mask[keep], self.subject[keep], self.slice[keep], self.subject_names,
            None if self.spacing is None else self.spacing[keep], None if self.labels is None else self.labels[keep],
            None if self.slice_mm is None else self.slice_mm[keep],
        )

    def subject_labels(self, rows: slice | Tensor) -> list[str]:
        """Subject names of ``rows`` (the integer index as text when no names are known)."""
        idx = self.subject[rows].tolist()
        if self.subject_names is None:
            return [str(i) for i in idx]
        return [self.subject_names[i] for i in idx]
