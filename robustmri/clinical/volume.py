"""Whole-volume scores of one test subject: volume PSNR and 3-D SSIM (BraSyn's practice).

The BraSyn challenge (BraTS 2023-24 missing-modality synthesis) scores each synthesized *volume*,
not its slices one by one. robustmri scores the slices a suite evaluates (a slab of each test
subject), so a subject's "volume" here is its test slices stacked in through-plane order, and
these scores sit beside the slice-wise ones (``results.csv``'s ``psnr`` / ``ssim``, averaged
over slices) in ``clinical.csv``'s ``volume_psnr`` / ``volume_ssim`` columns.

The rule (the same for every protocol preset; inferred, as BraSyn's exact code is not ours to copy):

- intensities in robustmri's [0, 1] model space, data range 1, inside the brain mask (the same
  region as the ``robustmri`` protocol's masked slice scores);
- ``volume_psnr``: ``10 log10(1 / MSE)`` with the squared error pooled over every brain voxel of
  the stack (a slice with more brain weighs more, unlike a mean of slice PSNRs); +inf when equal;
- ``volume_ssim``: SSIM (Wang et al. 2004; K1 0.01, K2 0.03, population covariance) with a 3-D
  Gaussian window of sigma 1.5 *pixels* in-plane and the same physical width through the plane,
  ``1.5 * pixel spacing / slice gap`` slices, truncated at 3.5 sigma (scikit-image's rule, with
  which it agrees exactly for an isotropic window), reflected at the borders; its map is averaged
  over the brain voxels at least the window's radius away from every border (scikit-image's
  crop). It needs evenly spaced slices (gaps within 1 % of their median): otherwise, or when the
  data record no slice positions, it is NaN and ``slice_gap_mm`` says why (NaN).

Shapes: a subject's stack is (D, H, W), D slices in through-plane order, H x W pixels.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SSIM_SIGMA_PX", "VOLUME_SCORES", "slice_gap", "ssim3d", "subject_volume_scores", "volume_psnr"]

VOLUME_SCORES: tuple[str, ...] = ("volume_psnr", "volume_ssim", "volume_slices", "slice_gap_mm")
"""Columns of a subject's whole-volume scores: dB, SSIM in [-1, 1], slices stacked, mm between them."""

SSIM_SIGMA_PX = 1.5
"""In-plane sigma of the SSIM window, in pixels (Wang et al. 2004; scikit-image's default)."""

_TRUNCATE = 3.5  # scikit-image: an 11-tap window for sigma 1.5
_K1, _K2 = 0.01, 0.03
_GAP_TOLERANCE = 0.01  # relative spread of the slice gaps still called even


def _radius(sigma: float) -> int:
    """The window's radius in voxels for ``sigma`` (scipy.ndimage's rule)."""
    return int(_TRUNCATE * sigma + 0.5)


def ssim3d(pred: np.ndarray, target: np.ndarray, *, sigma: tuple[float, float, float], data_range: float = 1.0,
           mask: np.ndarray | None = None) -> float:
    """Mean 3-D SSIM of ``pred`` against ``target`` ((D, H, W) float arrays) with a Gaussian window
    of ``sigma`` voxels per axis (an axis whose radius rounds to 0 is not filtered), over the voxels
    at least the window's radius from every border and inside ``mask`` ((D, H, W) bool) when
    given. NaN when no voxel qualifies (a stack thinner than the window)."""
    from scipy import ndimage

    x = np.asarray(pred, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 3:
        raise ValueError(f"ssim3d needs two (D, H, W) volumes of one shape, got {x.shape} and {y.shape}")

    def smooth(a: np.ndarray) -> np.ndarray:
        for axis, s in enumerate(sigma):
            if _radius(s) > 0:
                a = ndimage.gaussian_filter1d(a, s, axis=axis, mode="reflect", truncate=_TRUNCATE)
        return a

    ux, uy = smooth(x), smooth(y)
    vx = smooth(x * x) - ux * ux
    vy = smooth(y * y) - uy * uy
    vxy = smooth(x * y) - ux * uy
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    valid = np.zeros(x.shape, dtype=bool)
    r = [_radius(s) for s in sigma]
    if all(n > 2 * k for n, k in zip(x.shape, r)):
        valid[r[0]:x.shape[0] - r[0], r[1]:x.shape[1] - r[1], r[2]:x.shape[2] - r[2]] = True
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    return float(ssim_map[valid].mean()) if valid.any() else math.nan


def volume_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB of the squared error pooled over the ``mask`` voxels of two volumes (any equal
    shapes); +inf when they are equal there, NaN when the mask is empty."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return math.nan
    err = np.asarray(pred, dtype=np.float64)[m] - np.asarray(target, dtype=np.float64)[m]
    mse = float(np.mean(err * err))
    return math.inf if mse == 0.0 else 10.0 * math.log10(data_range**2 / mse)


def slice_gap(positions_mm: np.ndarray | None) -> float:
    """The even gap in mm between consecutive sorted slice ``positions_mm``, or NaN when they are
    unknown, fewer than two, repeated or unevenly spaced (beyond 1 % of the median gap)."""
    if positions_mm is None or len(positions_mm) < 2:
        return math.nan
    gaps = np.diff(np.sort(np.asarray(positions_mm, dtype=np.float64)))
    mid = float(np.median(gaps))
    if not mid > 0 or np.max(np.abs(gaps - mid)) > _GAP_TOLERANCE * mid:
        return math.nan
    return mid


def subject_volume_scores(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, pixel_mm: float,
                          positions_mm: np.ndarray | None) -> dict[str, float]:
    """:data:`VOLUME_SCORES` of one subject: ``pred``, ``target`` (D, H, W) in [0, 1] and its brain
    ``mask`` (D, H, W), slices already in through-plane order; ``pixel_mm`` the in-plane pixel
    spacing, ``positions_mm`` (D,) the slices' through-plane positions (None when unknown)."""
    gap = slice_gap(positions_mm)
    if math.isfinite(gap) and pixel_mm > 0:
        ssim = ssim3d(pred, target, sigma=(SSIM_SIGMA_PX * pixel_mm / gap, SSIM_SIGMA_PX, SSIM_SIGMA_PX), mask=mask)
    else:
        ssim = math.nan
    return {"volume_psnr": volume_psnr(pred, target, mask), "volume_ssim": ssim, "volume_slices": float(len(pred)),
            "slice_gap_mm": gap}
