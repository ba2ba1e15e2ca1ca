"""Known answers for the corruption cores: closed-form statistics, zero-strength identities, and
agreement with TorchIO's deterministic transforms / scipy on the same parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustmri.perturb import get_perturbation, make_generator
from robustmri.perturb.geometric import rigid_warp
from robustmri.perturb.image import bias_field, gaussian_blur, polynomial_terms
from robustmri.perturb.kspace import cartesian_mask, ghosting, motion, spike, undersample
from robustmri.perturb.noise import rician_noise

tio = pytest.importorskip("torchio")


@pytest.fixture(scope="module")
def slices() -> torch.Tensor:
    from robustmri.data.embedded import embedded_slices

    return embedded_slices(n_subjects=1, size=64, n_slices=2, seed=0, contrasts=("t1",))["t1"]


def _tio(x2d: torch.Tensor, transform) -> torch.Tensor:
    """Apply a TorchIO transform to one (H, W) slice as a (1, H, W, 1) volume."""
    img = tio.ScalarImage(tensor=x2d[None, :, :, None].double().numpy())
    return torch.as_tensor(transform(img).data[0, :, :, 0]).float()


def test_rician_background_bias_is_rayleigh_mean() -> None:
    g = make_generator(0)
    sigma = 0.05
    zero = torch.zeros(4, 1, 128, 128)
    y = rician_noise(zero, sigma, torch.randn(zero.shape, generator=g), torch.randn(zero.shape, generator=g))
    assert float(y.mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.01)
    assert float((y**2).mean()) == pytest.approx(2 * sigma**2, rel=0.01)  # Rayleigh second moment
    # and through the public class (data_range [0, 1], clamped at 0 from below: no effect here)
    y2 = get_perturbation("rician_noise").run(zero, {"sigma": sigma}, generator=1)
    assert float(y2.mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.01)
    # Gaussian noise has no such bias
    y3 = get_perturbation("gaussian_noise").run(zero + 0.5, {"sigma": sigma}, generator=1)
    assert float(y3.mean()) == pytest.approx(0.5, abs=1e-3)


def test_kspace_cores_at_zero_strength_return_input(slices) -> None:
    x = slices
    b, _, h, w = x.shape
    torch.testing.assert_close(ghosting(x, 2, 0.0), x)
    torch.testing.assert_close(spike(x, torch.rand(b, 1, 2), 0.0), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(motion(x, torch.zeros(b, 3), torch.zeros(b, 3, 2), torch.tensor([[0.3, 0.6]] * b)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(undersample(x, torch.ones(b, w, dtype=torch.bool)), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(rigid_warp(x, torch.zeros(b), torch.zeros(b, 2)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(bias_field(x, torch.zeros(b, len(polynomial_terms(3)))), x)


def test_rigid_warp_directions() -> None:
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 6] = 1.0  # 2 px right of the centre
    down_right = rigid_warp(x, torch.zeros(1), torch.tensor([[1.0, -2.0]]))
    assert down_right[0, 0, 5, 4] == pytest.approx(1.0)  # moved 1 row down, 2 cols left
    ccw = rigid_warp(x, torch.tensor([90.0]), torch.zeros(1, 2))
    assert ccw[0, 0, 2, 4] == pytest.approx(1.0, abs=1e-5)  # right of centre -> above the centre


def test_undersampling_mask_matches_acceleration() -> None:
    g = make_generator(0)
    for pattern in ("random", "equispaced"):
        m = cartesian_mask(400, 256, 4.0, 0.08, pattern, g, torch.device("cpu"))
        assert m[:, 118:138].all()  # round(256*0.08)=20 central lines
        assert float(m.float().mean()) == pytest.approx(0.25, abs=0.01)
    eq = cartesian_mask(2, 256, 4.0, 0.08, "equispaced", g, torch.device("cpu"))
    outside = eq[0, :100].nonzero().flatten()
    # fastMRI's fractional spacing: R' = 4 (20 - 256) / (20 * 4 - 256) = 5.36 columns, lines rounded
    gaps = torch.diff(outside)
    assert set(gaps.tolist()) <= {5, 6}
    assert float(gaps.double().mean()) == pytest.approx(4 * (20 - 256) / (20 * 4 - 256), abs=0.1)


def test_spike_stripe_amplitude_closed_form() -> None:
    x = torch.full((1, 1, 64, 64), 0.3)
    y = spike(x, torch.tensor([[[0.5 + 5 / 64, 0.5]]]), 0.1, output="real")
    # one k-space peak of height 0.1 * max|k| = 0.1 * sum(x) -> complex exponential of amplitude
    # 0.1 * mean(x); its real part is a cosine along the rows.
    stripe = y[0, 0, :, 0] - 0.3
    assert float(stripe.abs().max()) == pytest.approx(0.03, rel=1e-4)
    assert torch.allclose(y[0, 0], y[0, 0, :, :1].expand(64, 64))  # constant along the columns


# ---------------------------------------------------------------- agreement with TorchIO / scipy


def test_ghosting_matches_torchio(slices) -> None:
    x = slices[:1]
    ref = _tio(x[0, 0], tio.Ghosting(num_ghosts=4, axis=1, intensity=0.7, restore=0.125))
    ours = ghosting(x, 4, 0.7, 0.125, axis=-1, output="real")[0, 0]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert float((ours - x[0, 0]).abs().max()) > 0.05  # the artifact is really there


def test_spike_matches_torchio(slices) -> None:
    x = slices[:1]
    pos = np.array([[0.3, 0.55, 0.0], [0.9, 0.1, 0.0]])
    ref = _tio(x[0, 0], tio.Spike(spikes_positions=pos, intensity=0.3))
    ours = spike(x, torch.tensor(pos[None, :, :2], dtype=torch.float32), 0.3, output="real")[0, 0]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert float((ours - x[0, 0]).abs().max()) > 0.05


def test_bias_field_matches_torchio(slices) -> None:
    x = slices[:1]
    order = 3
    coeffs = torch.linspace(-0.4, 0.4, len(polynomial_terms(order)))
    it = iter(coeffs.tolist())
    tio_coeffs = []  # TorchIO loops (x, y, z) orders; z is 0 on a single slice, so z terms vanish
    for i in range(order + 1):
        for j in range(order + 1 - i):
            for k in range(order + 1 - (i + j)):
                tio_coeffs.append(next(it) if k == 0 else 0.0)
    ref = _tio(x[0, 0], tio.BiasField(coefficients=tio_coeffs, order=order))
    ours = bias_field(x, coeffs[None], order)[0, 0]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_blur_matches_torchio_and_scipy(slices) -> None:
    from scipy.ndimage import gaussian_filter

    x = slices[:1]
    for sigma in (0.7, 2.5, 20.0):  # 20 px: the kernel is wider than the image
        ours = gaussian_blur(x, sigma)[0, 0]
        torch.testing.assert_close(ours, torch.from_numpy(gaussian_filter(x[0, 0].double().numpy(), sigma)).float(), atol=1e-5, rtol=0)
    ref = _tio(x[0, 0], tio.Blur(std=(2.5, 2.5, 0.0)))
    torch.testing.assert_close(gaussian_blur(x, 2.5)[0, 0], ref, atol=1e-5, rtol=0)


def _cosine(n: int, cycles: int, period_axis: int = -1) -> torch.Tensor:
    """(1, 1, n, n) cosine with ``cycles`` whole periods across the last axis, 0.5 +- 0.25."""
    t = torch.arange(n, dtype=torch.float64)
    wave = 0.5 + 0.25 * torch.cos(2 * math.pi * cycles * t / n)
    return wave.view(1, 1, 1, n).expand(1, 1, n, n).clone()


@pytest.mark.parametrize("sigma", [0.3, 0.8, 3.0])
def test_band_limited_blur_scales_a_cosine_by_the_gaussian_transfer(sigma: float) -> None:
    from robustmri.perturb.image import band_limited_gaussian_blur

    # A DCT-II basis function cos(pi k (t + 1/2) / n) is its own half-sample mirror image, so the
    # mirrored boundary is exact: its frequency is k / 2n cycles per pixel (0.3 here).
    n, k = 64, 39
    t = torch.arange(n, dtype=torch.float64)
    wave = torch.cos(math.pi * k * (t + 0.5) / n).view(1, 1, 1, n).expand(1, 1, n, n)
    out = band_limited_gaussian_blur(0.5 + 0.25 * wave, sigma)
    gain = math.exp(-2 * math.pi**2 * sigma**2 * (k / (2 * n)) ** 2)
    torch.testing.assert_close(out, 0.5 + 0.25 * gain * wave, atol=1e-9, rtol=0)


def test_band_limited_blur_agrees_with_scipy_from_one_pixel_on(slices) -> None:
    from scipy.ndimage import gaussian_filter

    from robustmri.perturb.image import band_limited_gaussian_blur

    x = slices[:1]
    for sigma, tol in ((1.0, 5e-4), (2.5, 1e-4), (20.0, 1e-4)):
        ref = torch.from_numpy(gaussian_filter(x[0, 0].double().numpy(), sigma)).float()
        torch.testing.assert_close(band_limited_gaussian_blur(x, sigma)[0, 0], ref, atol=tol, rtol=0)
    # below a pixel the sampled kernel is nearly the identity and the true blur is not
    ref = torch.from_numpy(gaussian_filter(x[0, 0].double().numpy(), 0.3)).float()
    assert float((band_limited_gaussian_blur(x, 0.3)[0, 0] - ref).abs().max()) > 1e-2


def test_resolution_loss_keeps_the_band_of_the_voxel_and_nothing_above() -> None:
    from robustmri.perturb.image import resolution_loss

    n = 64
    low, high = _cosine(n, 5), _cosine(n, 12)
    # factor 2: 32 of 64 samples kept per axis, frequencies -16..15 cycles per field of view
    torch.testing.assert_close(resolution_loss(low, 2.0), low, atol=1e-9, rtol=0)
    torch.testing.assert_close(resolution_loss(high, 4.0), torch.full_like(high, 0.5), atol=1e-9, rtol=0)
    assert torch.equal(resolution_loss(high, 1.0), high)


def test_band_limit_is_the_coarse_sampling_of_a_band_limited_image() -> None:
    from robustmri.perturb.kspace import band_limit

    fine = _cosine(256, 7)
    coarse = band_limit(fine, 64)
    torch.testing.assert_close(coarse, _cosine(64, 7), atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="even size"):
        band_limit(fine, 63)


@pytest.mark.parametrize("time", [0.3, 0.45, 0.7])
def test_motion_matches_torchio_for_translations(slices, time: float) -> None:
    # TorchIO's Motion segments the LAST axis: the slice goes in as a (1, 1, H, W) volume. Its
    # translation (0, ty, tz) mm is (rows +ty, cols -tz) px in our convention. Rotations are not
    # compared: TorchIO rebuilds its Euler transforms without their centre and so rotates about
    # the corner voxel, not the image centre.
    x = slices[:1]
    img = tio.ScalarImage(tensor=x[0].unsqueeze(0).numpy())
    out = tio.Motion(
        degrees=np.zeros((1, 3)), translation=np.array([[0.0, 5.0, 3.0]]), times=np.array([time]),
        image_interpolation="linear",
    )(img)
    ref = torch.as_tensor(out.data[0, 0]).float()
    moved = [[5.0, -3.0], [0.0, 0.0]] if time < 0.5 else [[0.0, 0.0], [5.0, -3.0]]  # centre segment clean
    ours = motion(x, torch.zeros(1, 2), torch.tensor([moved]), torch.tensor([[time]]), output="real")[0, 0]
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=0)
    assert float((ref - x[0, 0]).abs().max()) > 0.05


def test_fast_affine_grid_and_stacked_warps_equal_torch_reference() -> None:
    import torch.nn.functional as F

    from robustmri.perturb.geometric import affine_grid_2d, rigid_warp_copies

    g = torch.Generator().manual_seed(0)
    theta = torch.randn(6, 2, 3, generator=g)
    for h, w in [(32, 32), (17, 24)]:
        torch.testing.assert_close(affine_grid_2d(theta, h, w), F.affine_grid(theta, [6, 1, h, w], align_corners=False), atol=2e-6, rtol=0)
    x = torch.rand(3, 1, 24, 20, generator=g)
    angles, shifts = torch.rand(3, 4, generator=g) * 30 - 15, torch.rand(3, 4, 2, generator=g) * 6 - 3
    copies = rigid_warp_copies(x, angles, shifts)
    assert copies.shape == (3, 4, 1, 24, 20)
    for s in range(4):
        torch.testing.assert_close(copies[:, s], rigid_warp(x, angles[:, s], shifts[:, s]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(32, 32), (24, 31)])
def test_motion_equals_direct_kspace_composition(size) -> None:
    # The definition, computed the slow way: full 2-D centred spectra of every moved copy, each
    # phase-encode column taken from the copy whose segment holds it, then the 2-D inverse.
    from robustmri.perturb.kspace import fft2c, ifft2c

    h, w = size
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, h, w, generator=g)
    angles, shifts = torch.rand(2, 3, generator=g) * 20 - 10, torch.rand(2, 3, 2, generator=g) * 4 - 2
    times = torch.tensor([[0.2, 0.7], [0.4, 0.55]])
    ours = motion(x, angles, shifts, times)
    for b in range(2):
        k = torch.zeros(h, w, dtype=torch.complex64)
        bounds = [0, *(math.floor(float(t) * w) for t in times[b]), w]
        for s in range(3):
            moved = rigid_warp(x[b : b + 1], angles[b, s : s + 1], shifts[b, s : s + 1])[0, 0]
            k[:, bounds[s] : bounds[s + 1]] = fft2c(moved)[:, bounds[s] : bounds[s + 1]]
        torch.testing.assert_close(ours[b, 0], ifft2c(k).abs(), atol=1e-5, rtol=0)
