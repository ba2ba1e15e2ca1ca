"""Whole-volume scores (robustmri.clinical.volume): 3-D SSIM against scikit-image's, volume PSNR
against its formula, the through-plane window from the slice gap, and the rows of a cell."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from robustmri.clinical.volume import SSIM_SIGMA_PX, slice_gap, ssim3d, subject_volume_scores, volume_psnr


def _pair(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    target = ndimage.gaussian_filter(rng.random(shape), 1.0)
    pred = np.clip(target + 0.05 * rng.standard_normal(shape), 0.0, 1.0)
    return pred, target


def test_an_isotropic_window_gives_scikit_image_3d_ssim() -> None:
    pred, target = _pair((13, 20, 24))
    ours = ssim3d(pred, target, sigma=(1.5, 1.5, 1.5))
    ref = structural_similarity(pred, target, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ours == pytest.approx(ref, abs=1e-12)
    assert ours < 0.99  # the noise costs something: the comparison is not between two ones


def test_ssim3d_is_one_for_equal_volumes_and_nan_for_a_stack_thinner_than_its_window() -> None:
    _, target = _pair((9, 16, 16))
    assert ssim3d(target, target, sigma=(0.3, 1.5, 1.5)) == pytest.approx(1.0, abs=1e-12)
    assert math.isnan(ssim3d(target, target, sigma=(1.5, 1.5, 1.5)))  # 11 taps through 9 slices


def test_the_mask_restricts_the_mean_of_the_ssim_map() -> None:
    pred, target = _pair((7, 24, 24), seed=1)
    pred[:, :, 12:] = target[:, :, 12:]  # the right half is exact
    right = np.zeros(pred.shape, dtype=bool)
    right[:, :, 18:] = True  # far enough from the noisy half for the window (radius 5)
    assert ssim3d(pred, target, sigma=(0.25, 1.5, 1.5), mask=right) == pytest.approx(1.0, abs=1e-12)
    assert ssim3d(pred, target, sigma=(0.25, 1.5, 1.5)) < 0.99


def test_volume_psnr_pools_the_squared_error_over_the_brain_voxels() -> None:
    target = np.zeros((2, 4, 4))
    pred = target.copy()
    mask = np.zeros((2, 4, 4), dtype=bool)
    mask[0] = True  # 16 voxels, error 0.1 everywhere
    mask[1, 0, :2] = True  # 2 voxels, error 0.4
    pred[0] += 0.1
    pred[1] += 0.4
    mse = (16 * 0.01 + 2 * 0.16) / 18
    assert volume_psnr(pred, target, mask) == pytest.approx(10 * math.log10(1 / mse), abs=1e-10)
    slice_mean = (10 * math.log10(1 / 0.01) + 10 * math.log10(1 / 0.16)) / 2
    assert abs(volume_psnr(pred, target, mask) - slice_mean) > 1.0  # not the mean of the slices' PSNRs
    assert volume_psnr(target, target, mask) == math.inf
    assert math.isnan(volume_psnr(pred, target, np.zeros_like(mask)))


def test_the_slice_gap_is_the_even_spacing_of_the_positions_or_nan() -> None:
    assert slice_gap(np.array([20.0, 10.0, 30.0, 0.0])) == pytest.approx(10.0)
    assert math.isnan(slice_gap(np.array([0.0, 10.0, 25.0])))  # a missing slice: uneven
    assert math.isnan(slice_gap(np.array([0.0, 0.0, 10.0])))
    assert math.isnan(slice_gap(None)) and math.isnan(slice_gap(np.array([3.0])))


def test_the_through_plane_window_has_the_in_plane_window_s_width_in_mm() -> None:
    pred, target = _pair((12, 20, 20), seed=2)
    mask = np.ones(pred.shape, dtype=bool)
    pixel_mm, gap = 1.6, 4.0
    scores = subject_volume_scores(pred, target, mask, pixel_mm, np.arange(12) * gap + 7.0)
    expected = ssim3d(pred, target, sigma=(SSIM_SIGMA_PX * pixel_mm / gap, 1.5, 1.5), mask=mask)
    assert scores["volume_ssim"] == pytest.approx(expected, abs=1e-12)
    assert scores["slice_gap_mm"] == pytest.approx(gap) and scores["volume_slices"] == 12
    # the same stack read as 1.6 mm apart (isotropic) is scored with another window
    assert abs(subject_volume_scores(pred, target, mask, pixel_mm, np.arange(12) * 1.6)["volume_ssim"] - expected) > 1e-4
    unknown = subject_volume_scores(pred, target, mask, pixel_mm, None)
    assert math.isnan(unknown["volume_ssim"]) and unknown["volume_psnr"] == pytest.approx(scores["volume_psnr"])


def test_the_clinical_rows_carry_volume_scores_in_through_plane_order() -> None:
    """A model that returns the real target scores +inf and 1; slices given out of order are
    stacked by their positions, so a shuffled test set scores the same."""
    from robustmri.clinical import clinical_frame
    from robustmri.data.paired import PairedTensors

    n, size = 8, 32
    rng = np.random.default_rng(3)
    from scipy import ndimage

    vol = ndimage.gaussian_filter(rng.random((n, size, size)), (1.0, 2.0, 2.0)).astype(np.float32)
    target = torch.from_numpy(vol)[:, None]
    mask = torch.zeros(n, 1, size, size, dtype=torch.bool)
    mask[:, :, 4:28, 4:28] = True
    labels = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    labels[mask] = 2
    data = PairedTensors(target, target, mask, torch.zeros(n, dtype=torch.long), torch.arange(n), ["s0"],
                         torch.full((n,), 1.6, dtype=torch.float64), labels, slice_mm=torch.arange(n) * 5.0)
    exact = clinical_frame(target, data)
    assert exact["volume_psnr"].iloc[0] == math.inf and exact["volume_ssim"].iloc[0] == pytest.approx(1.0, abs=1e-12)
    noisy = (target + 0.05 * torch.from_numpy(rng.standard_normal(target.shape)).float()).clamp(0, 1)
    ordered = clinical_frame(noisy, data)
    perm = torch.from_numpy(rng.permutation(n))
    # no slice indices (all 0): only the positions give the order
    shuffled = PairedTensors(target[perm], target[perm], mask[perm], data.subject[perm], torch.zeros(n, dtype=torch.long), ["s0"],
                             data.spacing[perm], labels[perm], slice_mm=data.slice_mm[perm])
    again = clinical_frame(noisy[perm], shuffled)
    assert again["volume_ssim"].iloc[0] == pytest.approx(ordered["volume_ssim"].iloc[0], abs=1e-12)
    assert 0.3 < ordered["volume_ssim"].iloc[0] < 0.99 and ordered["slice_gap_mm"].iloc[0] == pytest.approx(5.0)


def test_prepared_slices_record_their_through_plane_positions_from_the_affine() -> None:
    from robustmri.data.prepare import slice_positions

    affine = np.diag([1.0, 1.2, 2.5, 1.0])
    affine[:3, 3] = (-90.0, -120.0, -60.0)  # the origin does not matter: only gaps are used
    assert slice_positions(affine, 2, np.array([3, 4, 6])) == pytest.approx([7.5, 10.0, 15.0])
    rotated = np.eye(4)
    rotated[:3, :3] = [[0.0, 0.0, 3.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]  # the slicing axis tilted: its length counts
    assert slice_positions(rotated, 0, np.array([0, 2])) == pytest.approx([0.0, 2.0])
    assert slice_positions(rotated, 2, np.array([0, 2])) == pytest.approx([0.0, 6.0])
