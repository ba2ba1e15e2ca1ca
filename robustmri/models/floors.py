"""No-learning floors: what a translation model must beat before its scores mean anything.

- ``lookup``: the conditional mean of the target given the source intensity, ``E[y | x in bin b]``,
  fitted on the training slices. :data:`BINS` equal bins over the source range [0, 1] (channel 0);
  only pixels inside the training slices' brain masks enter the fit (the scored region). A bin
  that no training pixel fell in takes the value interpolated between its nearest filled
  neighbours (held constant beyond the first and last). Background rule: the model sees no mask
  at test time, so a pixel whose source is below a threshold (:attr:`IntensityLookup.background`)
  is taken as background and maps to 0. The threshold is fitted on the training slices too: the
  source level that misclassifies the fewest pixels, counting brain pixels below it and pixels
  outside the brain masks at or above it (on a 4096-bin histogram). Pixels outside the brain but
  bright (scalp, skull) count the same at every level, so they do not move it.
- ``lookup_oracle``: the same table fitted on each test slice itself, over all its pixels, from
  that slice's own target: an upper bound for any intensity mapping, and an **oracle** (it needs
  the target, :attr:`~robustmri.models.base.TranslationModel.needs_target`), labelled so and never
  ranked. Fitted per slice, so its output does not depend on the batch.

Both are gradient-free (a piecewise-constant map has zero gradient almost everywhere):
:attr:`IntensityLookup.differentiable` is False, so the bench runs no white-box attack on them
and the report says so. ``lookup`` is fitted by :meth:`IntensityLookup.fit`, which the training
engine calls once with the training slices (:attr:`IntensityLookup.fits_data`); its steps are
no-ops, so it trains in the time it takes to read the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from robustmri.errors import ConfigError
from robustmri.models.base import Batch, OptimizerSpec, StepContext, TranslationModel

BINS = 128
"""Source-intensity bins of the lookup table (equal width over [0, 1])."""

_FINE = 4096  # histogram resolution of the background threshold


def bin_index(x: Tensor, bins: int) -> Tensor:
    """The bin (int64, same shape) of each intensity of ``x`` in [0, 1] (clamped)."""
    return (x.clamp(0.0, 1.0) * bins).long().clamp_(max=bins - 1)


def fill_empty(sums: Tensor, counts: Tensor) -> Tensor:
    """``sums / counts`` per bin (float64 (bins,)), empty bins interpolated between the nearest
    filled ones by bin centre (held constant at the ends); all zeros when every bin is empty."""
    s, c = sums.double().cpu().numpy(), counts.double().cpu().numpy()
    filled = c > 0
    if not filled.any():
        return torch.zeros_like(sums, dtype=torch.float64)
    centres = np.arange(len(c), dtype=np.float64)
    table = np.interp(centres, centres[filled], s[filled] / c[filled])
    return torch.from_numpy(table)


class IntensityLookup(TranslationModel):
    """``lookup``: the target's mean per bin of source intensity, fitted on training slices."""

    name = "lookup"
    #: no useful gradient: white-box attacks are not run on it
    differentiable = False
    #: the engine calls :meth:`fit` with the training slices before the (no-op) steps
    fits_data = True

    def __init__(self, in_channels: int = 1, image_size: int = 64, bins: int = BINS) -> None:
        super().__init__(in_channels, image_size)
        if int(bins) < 2:
            raise ConfigError(f"lookup bins must be >= 2, got {bins!r}")
        self.bins = int(bins)
        self.register_buffer("table", torch.zeros(self.bins))
        self.register_buffer("background", torch.zeros(()))
        self.register_buffer("fitted_pixels", torch.zeros((), dtype=torch.int64))
        #: training brain pixels per bin (0: an interpolated bin)
        self.register_buffer("counts", torch.zeros(self.bins))

    @torch.no_grad()
    def fit(self, data: Any, chunk: int = 256) -> None:
        """Fit the table on ``data`` (a :class:`~robustmri.data.paired.PairedTensors`: source
        channel 0, target, brain mask), ``chunk`` slices at a time (memory-mapped data stay on disk)."""
        sums = torch.zeros(self.bins, dtype=torch.float64)
        counts = torch.zeros(self.bins, dtype=torch.float64)
        fine = torch.zeros(_FINE, dtype=torch.float64)  # source histogram inside the brain masks
        outside = torch.zeros(_FINE, dtype=torch.float64)  # and outside them
        for start in range(0, len(data), chunk):
            x = torch.as_tensor(data.source[start : start + chunk, :1]).float().cpu()
            y = torch.as_tensor(data.target[start : start + chunk]).float().cpu()
            m = torch.as_tensor(data.mask[start : start + chunk]).bool().cpu()
            xs, ys = x[m], y[m]
            idx = bin_index(xs, self.bins)
            sums.index_add_(0, idx, ys.double())
            counts += torch.bincount(idx, minlength=self.bins).double()
            fine += torch.bincount(bin_index(xs, _FINE), minlength=_FINE).double()
            outside += torch.bincount(bin_index(x[~m], _FINE), minlength=_FINE).double()
        if counts.sum() == 0:
            raise ConfigError("the lookup floor found no brain pixels in its training slices: check the masks of the data")
        self.table.copy_(fill_empty(sums, counts).to(self.table))
        # threshold k / _FINE: brain pixels in bins < k and outside pixels in bins >= k are misclassified
        brain_below = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(fine, 0)[:-1]])
        outside_above = outside.sum() - torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(outside, 0)[:-1]])
        k = int(torch.argmin(brain_below + outside_above))  # the first of equal minima: the lowest threshold
        self.background.fill_(k / _FINE)
        self.fitted_pixels.fill_(int(counts.sum()))
        self.counts.copy_(counts.to(self.counts))

    def translate(self, source: Tensor, generator: Any = None, target: Tensor | None = None) -> Tensor:
        x = source[:, :1]
        out = self.table.to(x.dtype)[bin_index(x, self.bins)]
        return torch.where(x < self.background.to(x.dtype), torch.zeros_like(out), out)

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {}

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor | float]:
        return {}  # fitted once by fit(); nothing to optimise


class LookupOracle(IntensityLookup):
    """``lookup_oracle``: the lookup fitted on each test slice itself, from its own target (an oracle)."""

    name = "lookup_oracle"
    needs_target = True
    fits_data = False

    def translate(self, source: Tensor, generator: Any = None, target: Tensor | None = None) -> Tensor:
        if target is None:
            raise ConfigError("lookup_oracle is an oracle: it needs the real target (translate(x, target=y))")
        x = source[:, :1].flatten(1)
        y = target.to(x.dtype).flatten(1)
        idx = bin_index(x, self.bins)
        sums = torch.zeros(x.shape[0], self.bins, dtype=torch.float64, device=x.device).scatter_add_(1, idx, y.double())
        counts = torch.zeros_like(sums).scatter_add_(1, idx, torch.ones(idx.shape, dtype=torch.float64, device=x.device))
        mean = sums / counts.clamp(min=1.0)
        return mean.gather(1, idx).to(x.dtype).view_as(source[:, :1])


def build_lookup(size: str = "tiny", in_channels: int = 1, image_size: int = 64, **options: Any) -> IntensityLookup:
    """Registry builder of ``lookup`` (every size is the same table; option ``bins``)."""
    return IntensityLookup(in_channels=in_channels, image_size=image_size, **options)


def build_lookup_oracle(size: str = "tiny", in_channels: int = 1, image_size: int = 64, **options: Any) -> LookupOracle:
    """Registry builder of ``lookup_oracle`` (option ``bins``)."""
    return LookupOracle(in_channels=in_channels, image_size=image_size, **options)


build_lookup.differentiable = False  # type: ignore[attr-defined]  (read by robustmri.models.registry.is_differentiable)
build_lookup_oracle.differentiable = False  # type: ignore[attr-defined]
