"""Per-volume intensity normalisation. The method names are part of the benchmark protocol.

All statistics are computed on the whole 3-D volume (before slicing), inside the brain mask where
stated; the result is float32 with the volume's shape.

- ``"none"``: unchanged.
- ``"minmax"``: ``(v - min) / (max - min)`` over the whole volume -> [0, 1].
- ``"percentile"``: clip to the 0.5th and 99.5th percentiles of the brain voxels, then scale that
  range to [0, 1] (every voxel, inside or outside the brain, ends in [0, 1]).
- ``"mean"`` (SynDiff / IXI style): ``v / mean(v inside the brain)``, then every volume of the same
  contrast is divided by ONE dataset-level constant: the largest value reached by any of them
  after the first step. So all values are <= 1 and relative intensities across subjects are
  kept. With a single volume the constant is that volume's own maximum, which makes ``"mean"``
  equal to ``v / max(v)``. :func:`normalize_volume` does the first step;
  :func:`normalize_volumes` (or the slice cache) does both.
- ``"zscore"``: ``(v - mean) / std`` with mean and std over the brain voxels (not bounded).

A volume that cannot be normalised (constant, or zero brain mean / spread) raises
:class:`DataError` naming ``source``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robustmri.errors import ConfigError, DataError

NORMALIZATIONS: tuple[str, ...] = ("none", "minmax", "percentile", "mean", "zscore")
"""Exact method names accepted by :func:`normalize_volume` (recorded by the protocol)."""

PERCENTILES: tuple[float, float] = (0.5, 99.5)
"""Lower and upper clipping percentiles of ``"percentile"`` (computed inside the brain)."""


def check_method(method: str) -> str:
    """Return ``method`` if it is a known normalisation, else raise :class:`ConfigError`."""
    if method not in NORMALIZATIONS:
        raise ConfigError(f"unknown normalisation {method!r}: use one of {', '.join(NORMALIZATIONS)}")
    return method


def _brain_values(volume: np.ndarray, mask: np.ndarray | None, source: str | Path) -> np.ndarray:
    if mask is None:
        return volume.reshape(-1)
    if mask.shape != volume.shape:
        raise ValueError(f"mask shape {mask.shape} != volume shape {volume.shape}")
    values = volume[mask]
    if values.size == 0:
        raise DataError(f"{source}: the brain mask is empty: fix the mask file or remove the subject")
    return values


def normalize_volume(
    volume: np.ndarray,
    mask: np.ndarray | None,
    method: str,
    source: str | Path = "volume",
) -> np.ndarray:
    """Normalise one volume (any shape) with ``method``; ``mask`` is a bool array of the same shape.

    ``mask=None`` uses every voxel. For ``"mean"`` this returns only the per-volume step
    ``v / mean(brain)``; divide by the dataset-level maximum afterwards (:func:`normalize_volumes`).
    """
    check_method(method)
    v = np.asarray(volume, dtype=np.float32)
    if method == "none":
        return v.copy()
    if method == "minmax":
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            raise DataError(f"{source}: the volume is constant ({lo:g}), minmax is undefined: check the file")
        return ((v - lo) / (hi - lo)).astype(np.float32)
    brain = _brain_values(v, mask, source).astype(np.float64)
    if method == "percentile":
        lo, hi = (float(x) for x in np.percentile(brain, PERCENTILES))
        if hi <= lo:
            raise DataError(
                f"{source}: brain intensities are constant ({lo:g}), percentile scaling is undefined: "
                "check the file or use --norm minmax"
            )
        return ((np.clip(v, lo, hi) - lo) / (hi - lo)).astype(np.float32)
    if method == "mean":
        mean = float(brain.mean())
        if mean <= 0:
            raise DataError(
                f"{source}: mean brain intensity is {mean:g} (<= 0), mean scaling is undefined: "
                "check the file or use --norm percentile"
            )
        return (v / mean).astype(np.float32)
    # zscore
    mean, std = float(brain.mean()), float(brain.std())
    if std <= 0:
        raise DataError(
            f"{source}: brain intensities are constant ({mean:g}), zscore is undefined: check the file"
        )
    return ((v - mean) / std).astype(np.float32)


def normalize_volumes(
    volumes: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    method: str,
) -> list[np.ndarray]:
    """Normalise several volumes of ONE contrast; handles the dataset-level step of ``"mean"``."""
    pairs = enumerate(zip(volumes, masks, strict=True))
    out = [normalize_volume(v, m, method, source=f"volume {i}") for i, (v, m) in pairs]
    if method == "mean" and out:
        scale = max(float(v.max()) for v in out)
        out = [(v / scale).astype(np.float32) for v in out]
    return out
