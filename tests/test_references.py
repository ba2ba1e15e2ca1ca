"""Outside references for every part that makes a reported number and had only our own tests:
MONAI (DDIM step and schedule, Cartesian undersampling masks and their zero-filled images, SSIM and
PSNR), torchattacks (APGD, step for step) and SimpleITK (the rotations of the motion artifact).

Each comparison states its tolerance: exact (float round-off) where both compute the same thing,
or a measured bound where the two differ by a documented choice.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

monai = pytest.importorskip("monai")


def _phantom(n: int = 3, size: int = 48, seed: int = 0) -> torch.Tensor:
    """Smooth random images inside a disk (zero border): (n, 1, size, size) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = (((yy - (size - 1) / 2) ** 2 + (xx - (size - 1) / 2) ** 2) < (0.36 * size) ** 2).float()
    img = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 5, 1, 2)
    return (img * disk).clamp(0, 1)


# ------------------------------------------------------------------------------------ DDIM


def test_ddim_step_equals_monai() -> None:
    """One DDIM step (eta 0) against ``monai.networks.schedulers.DDIMScheduler.step``.

    Without clipping both are eq. 12 of Song et al. exactly. With clipping, ours re-derives eps from
    the clipped x0 (improved-diffusion): that is MONAI's step for a "sample" prediction equal to the
    clipped x0, while MONAI's "epsilon" path keeps the network's eps, so the two differ there."""
    from monai.networks.schedulers import DDIMScheduler

    from baselines.diffusion import beta_schedule, ddim_step

    T, n_steps = 1000, 10
    ours_abar = torch.cumprod(1.0 - beta_schedule("linear", T), 0)
    ref = DDIMScheduler(num_train_timesteps=T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, clip_sample=False)
    # the linear schedule itself (T = 1000: improved-diffusion's scale factor is 1)
    assert ref.alphas_cumprod.double().numpy() == pytest.approx(ours_abar.numpy(), rel=1e-5)
    ref.set_timesteps(n_steps)
    abar = ours_abar.float()
    ref.alphas_cumprod = abar  # the same numbers on both sides: the step is what is compared
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 16, 16, generator=g)
    eps = torch.randn(2, 1, 16, 16, generator=g)
    for t in (900, 500, 100, 0):
        prev = t - T // n_steps
        abar_prev = abar[prev] if prev >= 0 else torch.tensor(1.0)
        ours, x0 = ddim_step(x, eps, abar[t], abar_prev)
        unclipped = ((x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt())
        if unclipped.abs().max() <= 1.0:  # nothing to clip: eq. 12 on both sides
            want, _ = ref.step(eps, t, x)
            assert ours == pytest.approx(want, abs=1e-5)
        clip_ref = DDIMScheduler(num_train_timesteps=T, schedule="linear_beta", clip_sample=True, prediction_type="sample")
        clip_ref.set_timesteps(n_steps)
        clip_ref.alphas_cumprod = abar
        want, want_x0 = clip_ref.step(unclipped.clamp(-1, 1), t, x)
        assert x0 == pytest.approx(want_x0, abs=1e-6)
        assert ours == pytest.approx(want, abs=1e-4)
    # where clipping acts, MONAI's epsilon path keeps eps and lands elsewhere: the documented difference
    eps_ref = DDIMScheduler(num_train_timesteps=T, schedule="linear_beta", clip_sample=True)
    eps_ref.set_timesteps(n_steps)
    eps_ref.alphas_cumprod = abar
    big = 3.0 * x
    ours, _ = ddim_step(big, eps, abar[100], abar[0])
    theirs, _ = eps_ref.step(eps, 100, big)
    assert (ours - theirs).abs().max() > 1e-2


# ------------------------------------------------------------------------ undersampling masks


@pytest.mark.parametrize("pattern", ["random", "equispaced"])
@pytest.mark.parametrize(("acceleration", "center_fraction", "width"), [(4.0, 0.08, 64), (2.3, 0.10, 128), (8.0, 0.04, 96), (4.3, 0.06, 100)])
def test_undersampling_masks_and_images_equal_monai(monkeypatch: pytest.MonkeyPatch, pattern: str, acceleration: float,
                                                   center_fraction: float, width: int) -> None:
    """Our mask for MONAI's random draws is MONAI's mask (centre width, line pattern, sampling
    rate), and our zero-filled magnitude image is MONAI's (centred orthonormal FFTs)."""
    from monai.apps.reconstruction.transforms.array import EquispacedKspaceMask, RandomKspaceMask

    import robustmri.perturb.kspace as K

    seed = 7
    cls = RandomKspaceMask if pattern == "random" else EquispacedKspaceMask
    transform = cls(center_fractions=[center_fraction], accelerations=[acceleration], spatial_dims=2, is_complex=True)
    transform.set_random_state(seed)
    x = _phantom(1, width, seed=1)
    kspace = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x[0, 0].double()), norm="ortho"))
    _, image = transform(torch.view_as_real(kspace)[None, None])  # (coil 1, 1, H, W, re/im) -> (1, H, W) magnitude
    theirs = transform.mask.reshape(-1).bool()

    # MONAI's draws: randint(0, 1) for the (single) acceleration, then the mask's own
    state = np.random.RandomState(seed)
    state.randint(0, 1)
    if pattern == "random":
        draws = torch.from_numpy(state.uniform(size=width)).float()
    else:
        n_low = int(round(width * center_fraction))
        adjusted = acceleration * (n_low - width) / (n_low * acceleration - width)
        step = round(adjusted)
        draws = torch.tensor([(state.randint(0, step) + 0.5) / step]).float()  # floor(u * step) = MONAI's offset

    def fake_rand(shape: tuple[int, ...], generator: object, device: object) -> torch.Tensor:
        return draws.view(shape)

    monkeypatch.setattr(K, "rand", fake_rand)
    ours = K.cartesian_mask(1, width, acceleration, center_fraction, pattern, None, torch.device("cpu"))[0]
    assert torch.equal(ours, theirs), (ours.nonzero().flatten().tolist(), theirs.nonzero().flatten().tolist())
    zero_filled = K.undersample(x.double(), ours[None])
    assert zero_filled[0, 0].numpy() == pytest.approx(image[0].numpy(), abs=1e-6)


# ------------------------------------------------------------------------------- metrics


def test_ssim_and_psnr_equal_monai_unmasked() -> None:
    """A second witness beside scikit-image: MONAI's SSIMMetric (Gaussian 11x11, sigma 1.5, valid
    region) and PSNRMetric on whole images equal robustmri.metrics unmasked."""
    from monai.metrics import PSNRMetric, SSIMMetric

    from robustmri.metrics import psnr, ssim

    t = _phantom(4, 40, seed=2).double()
    p = (t + 0.05 * torch.randn(t.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)).clamp(0, 1)
    ours_ssim = ssim(p, t, data_range=1.0, window="gaussian")
    theirs_ssim = SSIMMetric(spatial_dims=2, data_range=1.0, kernel_type="gaussian", win_size=11, kernel_sigma=1.5)(p.float(), t.float())
    assert ours_ssim.numpy() == pytest.approx(theirs_ssim.flatten().double().numpy(), abs=2e-5)  # MONAI computes in float32
    theirs_psnr = PSNRMetric(max_val=1.0)(p, t)
    assert psnr(p, t, data_range=1.0).numpy() == pytest.approx(theirs_psnr.flatten().double().numpy(), abs=1e-6)


# -------------------------------------------------------------------------------- APGD


class _DistortionAsLogits(torch.nn.Module):
    """torchattacks attacks classifiers: logits [L(x), 0] with label 1 make its cross-entropy
    softplus(L(x)), strictly increasing in our per-image distortion L, with gradients of the same
    sign (and direction) as L's, so both APGDs take the same steps and the same decisions."""

    def __init__(self, generator: torch.nn.Module, target: torch.Tensor) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("target", target)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from robustmri.perturb.adversarial import per_image_loss

        loss = per_image_loss(self.generator(x), self.target, "mse")
        return torch.stack([loss, torch.zeros_like(loss)], dim=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("steps", [10, 20])
def test_apgd_equals_torchattacks(norm: str, steps: int) -> None:
    """Our APGD (start, first step, momentum, checkpoints, step-size halving, resets, best point)
    against torchattacks.APGD's ``perturb(best_loss=True)``, for the same random start."""
    import torchattacks

    from robustmri.perturb.adversarial import AttackContext, apgd_attack

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, 1, 3, padding=1),
                              torch.nn.Sigmoid()).eval()
    x = _phantom(3, 16, seed=4)
    target = _phantom(3, 16, seed=5)
    eps = 4 / 255 if norm == "linf" else 0.02
    eps_abs = eps if norm == "linf" else eps * math.sqrt(x[0].numel())
    ours = apgd_attack(AttackContext(net, target=target), x, eps=eps, steps=steps, norm=norm,  # type: ignore[arg-type]
                       generator=torch.Generator().manual_seed(11))
    atk = torchattacks.APGD(_DistortionAsLogits(net, target), norm="Linf" if norm == "linf" else "L2", eps=eps_abs,
                            steps=steps, n_restarts=1, loss="ce", rho=0.75)
    torch.manual_seed(11)
    _, theirs = atk.perturb(x, torch.ones(3, dtype=torch.long), best_loss=True)
    # float32 (torchattacks' own dtype): L-inf agrees to round-off; L2 to 1.7e-5 after 20 steps
    # (measured; eps is 0.32 here), as the reference puts its 1e-12 guards in other places
    tol = 1e-6 if norm == "linf" else 1e-4
    assert (ours - theirs).abs().max().item() < tol
    assert (ours - x).abs().max() > 0  # the attack moved


# ------------------------------------------------------------------- motion rotations


@pytest.mark.parametrize("angle", [-7.0, 3.0, 12.0])
def test_motion_rotation_equals_simpleitk(angle: float) -> None:
    """The motion artifact with one segment rotated: each segment's moved image from SimpleITK
    (Euler2DTransform about the image centre, linear interpolation, background 0), the k-space
    columns combined with numpy's FFT. Tolerance: float32 interpolation round-off (the phantom's
    border is empty, where the two interpolators' edge rules differ)."""
    sitk = pytest.importorskip("SimpleITK")

    from robustmri.perturb.kspace import motion

    size = 48
    x = _phantom(1, size, seed=6)
    start = 0.6
    ours = motion(x, torch.tensor([[0.0, angle]]), torch.zeros(1, 2, 2), torch.tensor([[start]]))[0, 0].double().numpy()

    img = sitk.GetImageFromArray(x[0, 0].double().numpy())  # x = column, y = row, spacing 1
    rot = sitk.Euler2DTransform()
    rot.SetCenter(((size - 1) / 2.0, (size - 1) / 2.0))
    rot.SetAngle(math.radians(angle))  # output(p) = input(R(p - c) + c): our counter-clockwise convention
    moved = sitk.GetArrayFromImage(sitk.Resample(img, img, rot, sitk.sitkLinear, 0.0))
    ours_moved = None
    from robustmri.perturb.geometric import rigid_warp

    ours_moved = rigid_warp(x.double(), torch.tensor([angle]), torch.zeros(1, 2))[0, 0].numpy()
    assert ours_moved == pytest.approx(moved, abs=1e-6)

    spectra = [np.fft.fftshift(np.fft.fft(im, axis=-1), axes=-1) for im in (x[0, 0].double().numpy(), moved)]
    cols = np.arange(size)
    k = np.where(cols >= math.floor(size * start), spectra[1], spectra[0])  # centred column order
    reference = np.abs(np.fft.ifft(np.fft.ifftshift(k, axes=-1), axis=-1))
    assert ours == pytest.approx(reference, abs=2e-5)
