"""Geometric perturbations (family ``geometric``): rigid in-plane misregistration of the input.

Conventions for every rigid transform in this package (also used by the motion artifact):
``angle`` in degrees, positive = counter-clockwise on a display with row 0 at the top, about the
image centre; ``shift`` (B, 2) in pixels as (rows, cols): positive moves the content down / right.
Sampling is bilinear; pixels coming from outside the field of view are background (0 in
normalised units).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustmri.perturb.base import Params, Perturbation, need_spacing, rand, random_sign, register
from robustmri.rng import RandomSource


def rigid_theta(angle_deg: torch.Tensor, shift_px: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3) ``affine_grid`` matrices (align_corners=False) for rigid motions.

    The output image is ``out(p) = in(R^-1 (p - t))`` in centred pixel coordinates (x = col,
    y = row), i.e. the content is rotated by ``angle_deg`` (N,) and moved by ``shift_px`` (N, 2)
    = (rows, cols).
    """
    a = angle_deg.float() * (math.pi / 180.0)
    c, s = torch.cos(a), torch.sin(a)
    # Inverse rotation in (x=col, y=row) coordinates: R^-1 = [[c, -s], [s, c]].
    sx, sy = 2.0 / width, 2.0 / height
    theta = torch.zeros(a.shape[0], 2, 3, dtype=torch.float32, device=a.device)
    theta[:, 0, 0] = c
    theta[:, 0, 1] = -s * sx / sy
    theta[:, 1, 0] = s * sy / sx
    theta[:, 1, 1] = c
    tx, ty = shift_px[:, 1].float(), shift_px[:, 0].float()
    # -S R^-1 t
    theta[:, 0, 2] = -sx * (c * tx - s * ty)
    theta[:, 1, 2] = -sy * (s * tx + c * ty)
    return theta


def affine_grid_2d(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, height, width), align_corners=False)`` for (N, 2, 3) ``theta``,
    computed as two broadcast multiply-adds per coordinate (N, height, width, 2).

    Same values as ``F.affine_grid`` (within float round-off), several times faster on CPU, where
    ``affine_grid`` runs a batched matrix product against a materialised base grid.
    """
    dev, dt = theta.device, theta.dtype
    xs = (torch.arange(width, device=dev, dtype=dt) * 2 + 1) / width - 1  # pixel centres in [-1, 1]
    ys = (torch.arange(height, device=dev, dtype=dt) * 2 + 1) / height - 1
    grid = torch.empty(theta.shape[0], height, width, 2, device=dev, dtype=dt)
    for k in range(2):
        row = theta[:, k].reshape(-1, 3, 1, 1)
        torch.add(row[:, 0] * xs.view(1, 1, width), row[:, 1] * ys.view(1, height, 1) + row[:, 2], out=grid[..., k])
    return grid


def rigid_warp(u: torch.Tensor, angle_deg: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Rotate by ``angle_deg`` (N,) and shift by ``shift_px`` (N, 2) every image of ``u`` (N, C, H, W)."""
    n, ch, h, w = u.shape
    theta = rigid_theta(angle_deg.to(u.device), shift_px.to(u.device), h, w).to(u.dtype)
    grid = affine_grid_2d(theta, h, w)
    return F.grid_sample(u, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rigid_warp_copies(u: torch.Tensor, angle_deg: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """S rigidly moved copies of every image: ``u`` (B, C, H, W), ``angle_deg`` (B, S) degrees,
    ``shift_px`` (B, S, 2) pixels -> (B, S, C, H, W); copy s equals
    ``rigid_warp(u, angle_deg[:, s], shift_px[:, s])``.

    One ``grid_sample`` call reads each input image once: the S sampling grids are stacked along
    the output rows, so the input is never repeated S times in memory.
    """
    b, ch, h, w = u.shape
    s = angle_deg.shape[1]
    theta = rigid_theta(angle_deg.reshape(-1).to(u.device), shift_px.reshape(-1, 2).to(u.device), h, w).to(u.dtype)
    grid = affine_grid_2d(theta, h, w).view(b, s * h, w, 2)
    out = F.grid_sample(u, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, S*H, W)
    return out.view(b, ch, s, h, w).transpose(1, 2)


def misregister(u: torch.Tensor, angle_deg: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Deterministic core of :class:`Misregistration`: one rigid motion per image of (B, 1, H, W)."""
    return rigid_warp(u, angle_deg, shift_px)


@register
class Misregistration(Perturbation):
    """Rigid in-plane misregistration: rotation by +-``rotation_deg`` degrees and a shift of
    ``shift_mm`` mm in a random direction (each image draws its own sign and direction)."""

    name = "misregistration"
    family = "geometric"
    stochastic = True
    needs_spacing = True
    severities = {
        1: {"shift_mm": 0.35, "rotation_deg": 0.35},
        2: {"shift_mm": 0.6, "rotation_deg": 0.6},
        3: {"shift_mm": 1.05, "rotation_deg": 1.05},
        4: {"shift_mm": 2.0, "rotation_deg": 2.0},
        5: {"shift_mm": 4.1, "rotation_deg": 4.1},
    }

    def resolve(self, params: Params, u: torch.Tensor, mask: torch.Tensor | None, spacing: torch.Tensor | None) -> Params:
        if "shift_mm" in params:
            params["shift_px"] = (float(params.pop("shift_mm")) / need_spacing(spacing, self.name)).float()
        return params

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        b = shape[0]
        rot = float(params.pop("rotation_deg"))
        shift = torch.as_tensor(params.pop("shift_px"), dtype=torch.float32).to(device).expand(b)
        params["angle_deg"] = random_sign((b,), generator, device) * rot
        phi = rand((b,), generator, device) * (2.0 * math.pi)
        params["shift_px"] = shift.view(b, 1) * torch.stack([torch.sin(phi), torch.cos(phi)], dim=1)
        return params

    def apply(self, u: torch.Tensor, angle_deg: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
        return misregister(u, angle_deg, shift_px)
