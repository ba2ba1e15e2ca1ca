"""Anatomy of the embedded dataset: the MNI ICBM152 2009a tissue maps shipped inside nilearn's wheel.

The grey-matter (GM) and white-matter (WM) probability maps and the brain mask of the MNI ICBM 2009a
nonlinear symmetric template (1 mm isotropic, 197 x 233 x 189 voxels, RAS world coordinates in mm)
are read offline with ``nilearn.datasets.load_mni152_gm_template``, ``..._wm_template`` and
``..._brain_mask``. Cerebrospinal fluid is the rest of the brain mask: ``CSF = clip(mask - GM - WM,
0, 1)``. Copyright of the template: see the NOTICE file shipped with robustmri.

:func:`template_tissues` returns the maps cropped to an axial slab and smoothed with a Gaussian
matched to the output voxel size (anti-aliasing, so that partial-volume effects appear at coarse
resolutions instead of aliasing); results are cached per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from robustmri.errors import DependencyError

TEMPLATE_VOXEL_MM = 1.0


@dataclass(frozen=True)
class TemplateTissues:
    """Tissue fraction maps on a crop of the 1 mm MNI grid.

    ``maps`` holds float32 arrays ``csf``, ``gm``, ``wm`` of one shape (X, Y, Z) with values in [0, 1]
    summing to at most 1. ``voxel_to_world`` is the 4x4 affine of the crop (mm).
    """

    maps: dict[str, np.ndarray]
    voxel_to_world: np.ndarray

    @property
    def world_to_voxel(self) -> np.ndarray:
        return np.linalg.inv(self.voxel_to_world)


@functools.lru_cache(maxsize=1)
def _load_full_template() -> tuple[dict[str, np.ndarray], np.ndarray]:
    try:
        from nilearn import datasets
    except ImportError as exc:  # pragma: no cover - exercised through a monkeypatched import in tests
        raise DependencyError(
            "nilearn is not installed: the embedded dataset is built on its MNI152 template; "
            "install it with `pip install nilearn`"
        ) from exc
    try:
        gm_img = datasets.load_mni152_gm_template(resolution=1)
        wm_img = datasets.load_mni152_wm_template(resolution=1)
        mask_img = datasets.load_mni152_brain_mask(resolution=1)
    except Exception as exc:  # a broken nilearn install
        raise DependencyError(
            f"could not read the MNI152 template from nilearn ({type(exc).__name__}: {exc}); "
            "reinstall it with `pip install --force-reinstall nilearn`"
        ) from exc
    gm = np.clip(np.asarray(gm_img.get_fdata(), dtype=np.float32), 0.0, 1.0)
    wm = np.clip(np.asarray(wm_img.get_fdata(), dtype=np.float32), 0.0, 1.0)
    mask = (np.asarray(mask_img.get_fdata()) > 0.5).astype(np.float32)
    gm *= mask
    wm *= mask
    total = gm + wm
    over = total > 1.0
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    return {"csf": csf, "gm": gm, "wm": wm}, np.asarray(gm_img.affine, dtype=np.float64)


def template_tissues(z_range_mm: tuple[float, float], voxel_mm: tuple[float, float, float]) -> TemplateTissues:
    """Tissue maps for world z in ``z_range_mm`` (plus a margin), smoothed for ``voxel_mm`` output voxels.

    The Gaussian width per axis is ``sigma = sqrt(max(v^2 - 1, 0)) / 2.355`` voxels (the output voxel
    size as a FWHM, less the template's own 1 mm). Cached per process (the key is rounded to 0.01 mm).
    """
    key_z = (round(float(z_range_mm[0]), 2), round(float(z_range_mm[1]), 2))
    key_v = tuple(round(float(v), 2) for v in voxel_mm)
    return _template_tissues_cached(key_z, key_v)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=8)
def _template_tissues_cached(z_range_mm: tuple[float, float], voxel_mm: tuple[float, float, float]) -> TemplateTissues:
    from scipy.ndimage import gaussian_filter

    maps, affine = _load_full_template()
    margin = 45.0  # mm: room for the subject's affine (12 degrees at 90 mm is 19 mm), slab shift, deformation
    world_to_vox = np.linalg.inv(affine)
    k_lo = int(np.floor(world_to_vox[2, 2] * (min(z_range_mm) - margin) + world_to_vox[2, 3]))
    k_hi = int(np.ceil(world_to_vox[2, 2] * (max(z_range_mm) + margin) + world_to_vox[2, 3])) + 1
    n_z = next(iter(maps.values())).shape[2]
    k_lo, k_hi = max(k_lo, 0), min(k_hi, n_z)
    sigma = [float(np.sqrt(max(v * v - TEMPLATE_VOXEL_MM**2, 0.0)) / 2.355) for v in voxel_mm]
    cropped: dict[str, np.ndarray] = {}
    for name, arr in maps.items():
        crop = arr[:, :, k_lo:k_hi]
        if max(sigma) > 0:
            crop = gaussian_filter(crop, sigma=sigma, mode="constant", truncate=3.0)
        cropped[name] = np.ascontiguousarray(crop, dtype=np.float32)
    shift = np.eye(4)
    shift[2, 3] = k_lo
    return TemplateTissues(maps=cropped, voxel_to_world=affine @ shift)
