"""Anatomical remodelling of the embedded simulator's tissue fractions: sulcal widening (cortical
atrophy) and cortical thickness change, applied after the template is sampled on a subject's grid.

Each is an exchange of partial volume between neighbouring tissues, so the fractions keep their sum
(the brain keeps its outline; what changes is which tissue fills it):

- **sulcal widening** ``a`` (0..1): GM next to CSF becomes CSF, ``dGM = -a * GM * N(CSF)``: the
  sulci open and the cortex thins from outside, as in atrophy with age;
- **cortical thickness** ``t`` (-1..1): for ``t > 0`` WM next to GM becomes GM
  (``dWM = -t * WM * N(GM)``: a thicker cortex), for ``t < 0`` GM next to WM becomes WM.

``N(x)`` is the neighbourhood of a tissue: ``x`` smoothed by a Gaussian of ``reach_mm`` FWHM and
scaled by 2, clipped to [0, 1], so only voxels within about ``reach_mm`` of it exchange. Ventricle
enlargement is geometric instead (:class:`robustmri.data.deform.RadialExpansion`).
"""

from __future__ import annotations

import numpy as np


def neighbourhood(fraction: np.ndarray, voxel_mm: tuple[float, float, float], reach_mm: float) -> np.ndarray:
    """Where a tissue of ``fraction`` (H, W, S) is near: smoothed (FWHM ``reach_mm``) x 2, in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    sigma = [reach_mm / 2.355 / v for v in voxel_mm]
    return np.clip(2.0 * gaussian_filter(fraction, sigma=sigma, mode="nearest", truncate=3.0), 0.0, 1.0)


def remodel(
    fractions: dict[str, np.ndarray],
    voxel_mm: tuple[float, float, float],
    sulcal: float,
    cortical: float,
    reach_mm: float = 3.0,
) -> dict[str, np.ndarray]:
    """Return ``fractions`` (``csf``, ``gm``, ``wm`` of one shape; others passed through) after
    sulcal widening ``sulcal`` in [0, 1] and cortical thickness change ``cortical`` in [-1, 1]."""
    if not 0.0 <= sulcal <= 1.0 or not -1.0 <= cortical <= 1.0:
        raise ValueError(f"sulcal must be in [0, 1] and cortical in [-1, 1], got {sulcal}, {cortical}")
    csf, gm, wm = (fractions[k].astype(np.float32, copy=True) for k in ("csf", "gm", "wm"))
    if sulcal > 0:
        moved = sulcal * gm * neighbourhood(csf, voxel_mm, reach_mm)
        gm -= moved
        csf += moved
    if cortical > 0:
        moved = cortical * wm * neighbourhood(gm, voxel_mm, reach_mm)
        wm -= moved
        gm += moved
    elif cortical < 0:
        moved = -cortical * gm * neighbourhood(wm, voxel_mm, reach_mm)
        gm -= moved
        wm += moved
    return {**fractions, "csf": csf, "gm": gm, "wm": wm}
