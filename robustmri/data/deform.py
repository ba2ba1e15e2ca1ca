"""Random spatial transforms of the embedded simulator (all coordinates in mm, RAS world space).

A subject is the template seen through a *subject transform*: a small affine (rotation, anisotropic
scaling, translation about the slab centre) plus a smooth random elastic displacement. Each
contrast may additionally be *misregistered* by a small rigid motion, the residual misalignment
that real paired multi-contrast data has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import zoom

Grid = tuple[np.ndarray, np.ndarray, np.ndarray]
"""World coordinates (mm) of every output voxel: three float32 arrays of shape (H, W, S)."""


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """3x3 rotation for Euler angles (degrees) about x, then y, then z."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class AffineMotion:
    """``x -> M (x - c) + c + t``: a 3x3 matrix ``M`` about centre ``c`` (mm) plus translation ``t`` (mm)."""

    matrix: np.ndarray
    centre: np.ndarray
    translation: np.ndarray

    def apply(self, grid: Grid) -> Grid:
        x, y, z = (g - c for g, c in zip(grid, self.centre))
        m = self.matrix
        out = []
        for row in range(3):
            out.append(
                (m[row, 0] * x + m[row, 1] * y + m[row, 2] * z + self.centre[row] + self.translation[row]).astype(
                    np.float32
                )
            )
        return out[0], out[1], out[2]

    def to_json(self) -> dict[str, list]:
        return {
            "matrix": np.round(self.matrix, 8).tolist(),
            "centre_mm": np.round(self.centre, 6).tolist(),
            "translation_mm": np.round(self.translation, 6).tolist(),
        }


def random_affine(
    rng: np.random.Generator,
    centre: np.ndarray,
    rotation_deg: float,
    scale_fraction: float,
    translation_mm: float,
) -> tuple[AffineMotion, dict[str, list[float]]]:
    """Random affine: rotations U(-r, r) degrees per axis, scales 1 + U(-s, s), shifts U(-t, t) mm."""
    angles = rng.uniform(-rotation_deg, rotation_deg, size=3)
    scales = 1.0 + rng.uniform(-scale_fraction, scale_fraction, size=3)
    shift = rng.uniform(-translation_mm, translation_mm, size=3)
    motion = AffineMotion(rotation_matrix(angles) @ np.diag(scales), np.asarray(centre, float), shift)
    params = {
        "rotation_deg": np.round(angles, 6).tolist(),
        "scale": np.round(scales, 6).tolist(),
        "translation_mm": np.round(shift, 6).tolist(),
    }
    return motion, params


def random_rigid_inplane(
    rng: np.random.Generator, centre: np.ndarray, max_shift_mm: float, max_rotation_deg: float
) -> tuple[AffineMotion, dict[str, list[float] | float]]:
    """Misregistration: in-plane rotation U(-r, r) degrees about z, shifts U(-m, m) mm on x, y and z."""
    angle = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
    shift = rng.uniform(-max_shift_mm, max_shift_mm, size=3)
    motion = AffineMotion(rotation_matrix(np.array([0.0, 0.0, angle])), np.asarray(centre, float), shift)
    return motion, {"rotation_deg": round(angle, 6), "translation_mm": np.round(shift, 6).tolist()}


def random_elastic(
    rng: np.random.Generator, shape: tuple[int, int, int], amplitude_mm: float, control_points: tuple[int, int, int] = (6, 6, 4)
) -> Grid | None:
    """Smooth displacement field (mm) of shape ``shape``: N(0, amplitude) on a coarse control grid,
    upsampled with cubic splines. Returns ``None`` for a zero amplitude."""
    if amplitude_mm <= 0:
        return None
    fields = []
    for _ in range(3):
        coarse = rng.normal(0.0, amplitude_mm, size=control_points)
        factors = [s / c for s, c in zip(shape, control_points)]
        fine = zoom(coarse, factors, order=3, mode="nearest", grid_mode=True)
        fields.append(fine[: shape[0], : shape[1], : shape[2]].astype(np.float32))
    return fields[0], fields[1], fields[2]


def _upsample(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Cubic-spline upsampling of a control grid to ``shape`` (the construction of :func:`random_elastic`)."""
    factors = [s / c for s, c in zip(shape, coarse.shape)]
    fine = zoom(coarse, factors, order=3, mode="nearest", grid_mode=True)
    return fine[: shape[0], : shape[1], : shape[2]].astype(np.float32)


def random_elastic_multiscale(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    amplitude_mm: float,
    levels: int,
    coarsest: tuple[int, int, int] = (4, 4, 3),
) -> Grid | None:
    """Sum of ``levels`` smooth displacement fields (mm), as in SynthSeg's multi-scale deformation:
    level ``k`` has ``coarsest * 2^k`` control points (at most the grid's size) drawn N(0,
    ``amplitude_mm / 2^k``), so large fields bend the whole brain and small ones the folds. The
    levels are summed on the finest control grid and upsampled once (cubic splines). The control
    grids are fixed per field of view, so a seed deforms alike at any matrix size. ``None`` for a
    zero amplitude."""
    if amplitude_mm <= 0 or levels < 1:
        return None
    grids = [tuple(min(max(2, c * 2**k), s) for c, s in zip(coarsest, shape)) for k in range(levels)]
    finest = grids[-1]
    fields = []
    for _ in range(3):
        total = np.zeros(finest, dtype=np.float64)
        for k, cp in enumerate(grids):
            coarse = rng.normal(0.0, amplitude_mm / 2**k, size=cp)
            total += coarse if cp == finest else _upsample(coarse, finest)
        fields.append(_upsample(total, shape))
    return fields[0], fields[1], fields[2]


@dataclass(frozen=True)
class RadialExpansion:
    """Ventricle enlargement as a smooth local dilation about ``centre`` (template mm):
    ``x -> c + (x - c) (1 - beta w(x))`` with ``w = exp(-|x - c|^2 / (2 r^2))``. Applied to the
    coordinates where the template is sampled, it shows the template's structures near ``c``
    enlarged by about ``1 / (1 - beta)`` (invertible for ``beta < 1``)."""

    centre: np.ndarray
    radius_mm: float
    beta: float

    def apply(self, grid: Grid) -> Grid:
        if self.beta == 0:
            return grid
        d = [g - c for g, c in zip(grid, self.centre)]
        w = np.exp(-(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) / (2.0 * self.radius_mm**2))
        s = 1.0 - self.beta * w
        return tuple((c + di * s).astype(np.float32) for c, di in zip(self.centre, d))  # type: ignore[return-value]
