"""From 3-D volumes to 2-D square slices: axis choice, slice selection, square fitting.

Order of operations applied by :mod:`robustmri.data.prepare` to every subject:

1. intensity normalisation of the whole 3-D volume (:mod:`robustmri.data.normalize`);
2. the slicing axis is moved first: volume (X, Y, Z) -> stack (S, H, W);
   default axis ``"axial"`` = the last voxel axis (inferior -> superior after RAS reorientation);
3. slice selection (:func:`select_slices`): ``central:N`` or ``brain:F`` or ``all``;
4. square fitting, centred: ``fit="pad"`` zero-pads the shorter in-plane side (nothing is lost),
   ``fit="crop"`` crops the longer side to the shorter one;
5. resize of the square to ``size x size``: bilinear with antialiasing for images (a convex
   combination, so the value range is kept), nearest for masks and labels. Skipped when the side
   already equals ``size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from robustmri.errors import ConfigError

AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
"""Named slicing axes, as voxel axes of a RAS-reoriented volume."""

FITS: tuple[str, ...] = ("pad", "crop")


def parse_axis(axis: str | int) -> int:
    """Voxel axis (0, 1 or 2) for ``"axial"`` / ``"coronal"`` / ``"sagittal"`` or an integer (-3..2)."""
    if isinstance(axis, str) and axis.strip().lower() in AXES:
        return AXES[axis.strip().lower()]
    try:
        value = int(axis)
    except (TypeError, ValueError):
        value = 99
    if -3 <= value <= 2:
        return value % 3
    raise ConfigError(f"unknown slicing axis {axis!r}: use axial, coronal, sagittal or 0, 1, 2")


@dataclass(frozen=True)
class SliceSpec:
    """Slice selection: ``kind`` is ``"central"`` (``value`` = count), ``"brain"`` (``value`` =
    minimum fraction of brain voxels in the slice, 0..1) or ``"all"``."""

    kind: str
    value: float = 0.0

    def __str__(self) -> str:
        if self.kind == "central":
            return f"central:{int(self.value)}"
        if self.kind == "brain":
            return f"brain:{self.value:g}"
        return "all"


def parse_slices(spec: str) -> SliceSpec:
    """Parse ``"central:64"``, ``"brain:0.1"`` (or ``"brain:10%"``) or ``"all"``."""
    text = str(spec).strip().lower()
    if text == "all":
        return SliceSpec("all")
    kind, _, arg = text.partition(":")
    try:
        if kind == "central":
            n = int(arg)
            if n >= 1:
                return SliceSpec("central", float(n))
        elif kind == "brain":
            frac = float(arg[:-1]) / 100.0 if arg.endswith("%") else float(arg)
            if 0.0 <= frac <= 1.0:
                return SliceSpec("brain", frac)
    except ValueError:
        pass
    raise ConfigError(
        f"invalid slice selection {spec!r}: use central:N (N >= 1 central slices), brain:F "
        "(slices with at least a fraction F in [0, 1] of brain voxels, e.g. brain:0.1) or all"
    )


def to_stack(volume: np.ndarray, axis: int) -> np.ndarray:
    """Volume (X, Y, Z) -> stack (S, H, W) of slices along voxel ``axis`` (a view, no copy)."""
    return np.moveaxis(volume, axis, 0)


def select_slices(mask_stack: np.ndarray, spec: SliceSpec) -> np.ndarray:
    """Indices (int64, ascending) of the slices to keep from a bool stack (S, H, W).

    ``central:N``: the N slices around the middle, ``start = (S - N) // 2`` (all S when N >= S).
    ``brain:F``: every slice whose fraction of brain voxels (over H * W) is >= F; may be empty.
    """
    n_slices = mask_stack.shape[0]
    if spec.kind == "all":
        return np.arange(n_slices, dtype=np.int64)
    if spec.kind == "central":
        n = min(int(spec.value), n_slices)
        start = (n_slices - n) // 2
        return np.arange(start, start + n, dtype=np.int64)
    frac = mask_stack.reshape(n_slices, -1).mean(axis=1)
    return np.flatnonzero(frac >= spec.value - 1e-12).astype(np.int64)


def fit_square(stack: np.ndarray, size: int, fit: str = "pad", label: bool = False) -> np.ndarray:
    """Stack (S, H, W) -> (S, size, size): centred pad or crop to a square, then resize.

    ``label=True`` (masks, segmentations) resizes with nearest neighbour; images use bilinear
    interpolation with antialiasing. Returns float32 for images, the input dtype for labels.
    """
    if fit not in FITS:
        raise ConfigError(f"unknown fit {fit!r}: use pad or crop")
    if size < 1:
        raise ConfigError(f"invalid size {size}: use a positive number of pixels, e.g. --size 128")
    s, h, w = stack.shape
    side = max(h, w) if fit == "pad" else min(h, w)
    out = np.zeros((s, side, side), dtype=stack.dtype)
    # centred placement: source window [sy, sy+ch) x [sx, sx+cw) goes to [dy, dy+ch) x [dx, dx+cw)
    ch, cw = min(h, side), min(w, side)
    sy, sx = (h - ch) // 2, (w - cw) // 2
    dy, dx = (side - ch) // 2, (side - cw) // 2
    out[:, dy : dy + ch, dx : dx + cw] = stack[:, sy : sy + ch, sx : sx + cw]
    if side == size:
        return out if label else out.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[:, None]
    if label:
        r = F.interpolate(t, size=(size, size), mode="nearest-exact")
        return r[:, 0].numpy().astype(stack.dtype)
    r = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return r[:, 0].numpy().astype(np.float32, copy=False)
