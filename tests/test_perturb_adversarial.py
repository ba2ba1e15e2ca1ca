"""Adversarial attacks against a tiny trained translation model: white-box gradients are real,
attacks beat random noise of the same budget, PGD >= FGSM, the black-box attack never computes a
gradient, EOT is seeded, and torchattacks' classification attacks fail on regression models."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from robustmri.errors import ConfigError
from robustmri.perturb import AttackContext, attack, get_perturbation, gradient_attack, square_attack
from robustmri.perturb.adversarial import _call_model, _seeds, distortion_gradient, expected_loss, per_image_loss
from robustmri.perturb.base import make_generator


def _smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Sums of random Gaussian blobs scaled to [0, 1]: smooth synthetic 'anatomy'."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    c = torch.rand(n, 6, 2, generator=g) * 1.4 - 0.7
    s = torch.rand(n, 6, generator=g) * 0.3 + 0.15
    a = torch.rand(n, 6, generator=g) + 0.3
    blobs = a[..., None, None] * torch.exp(-((yy - c[..., 0, None, None]) ** 2 + (xx - c[..., 1, None, None]) ** 2) / (2 * s[..., None, None] ** 2))
    img = blobs.sum(1, keepdim=True)
    return img / img.amax(dim=(2, 3), keepdim=True)


def _target(x: torch.Tensor) -> torch.Tensor:
    """A contrast-like nonlinear mapping the tiny model learns (inverted and gamma-shifted)."""
    return 1.0 - x**2


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny convolutions on a shared 2-core machine: one thread is ~50x faster than oversubscribing.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model(_one_thread) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 1, 3, padding=1),
    )
    x = _smooth_images(32, 24, seed=1)
    y = _target(x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(120):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.005  # it learned the mapping (the target's variance is ~0.04)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return _smooth_images(8, 24, seed=2)


def _distortion(model: nn.Module, x: torch.Tensor, x_pert: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((model(x_pert) - model(x)) ** 2).mean())


def test_our_gradient_is_nonzero_but_zero_at_the_clean_point(model, x) -> None:
    ctx = AttackContext(model)
    gen = make_generator(0)
    ref = model(x)
    g0, _ = distortion_gradient(ctx, x, ref, gen)
    assert float(g0.abs().max()) == 0.0  # MSE to f(x) is minimal at x: why every attack starts randomly
    g, loss = distortion_gradient(ctx, x + 0.01 * torch.randn(x.shape, generator=gen), ref, gen)
    assert float(g.abs().mean()) > 1e-6 and (loss > 0).all()
    assert (g.flatten(1).abs().sum(1) > 0).all()  # every image has its own non-zero gradient


def test_torchattacks_pgd_silently_does_nothing_on_a_regression_model(model, x) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    y = model(x)
    atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=5, random_start=False)
    adv = atk(x, y)
    assert torch.equal(adv, x)  # CrossEntropyLoss over one output channel: constant loss, zero gradient
    xr = x.clone().requires_grad_(True)
    nn.CrossEntropyLoss()(model(xr), y).backward()
    assert float(xr.grad.abs().max()) == 0.0
    ours = gradient_attack(AttackContext(model), x, eps=8 / 255, alpha=2 / 255, steps=5, generator=0)
    assert _distortion(model, x, ours) > 0


def test_linf_pgd_matches_torchattacks_upgd_with_a_loss_callable(model, x) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    y = _target(x)  # a given target: the gradient is non-zero at the clean point

    def loss(images, labels, target_labels=None):
        return per_image_loss(model(images), labels, "mse").sum()

    upgd = torchattacks.UPGD(model, eps=4 / 255, alpha=1 / 255, steps=5, random_start=False, loss=loss, decay=0.0)
    ref = upgd(x, y)
    ours = gradient_attack(AttackContext(model, target=y), x, eps=4 / 255, alpha=1 / 255, steps=5, random_start=False, keep_best=False)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_attack_beats_random_noise_of_the_same_linf_norm(model, x) -> None:
    eps = 4 / 255
    adv = attack(model, x, "pgd_linf", severity=3, generator=0)
    g = torch.Generator().manual_seed(0)
    noise = (x + eps * torch.where(torch.rand(x.shape, generator=g) < 0.5, -1.0, 1.0)).clamp(0, 1)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert _distortion(model, x, adv) > 3.0 * _distortion(model, x, noise)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_at_least_fgsm_and_budgets_hold(model, x, norm: str) -> None:
    fgsm = get_perturbation(f"fgsm_{norm}")
    pgd = get_perturbation(f"pgd_{norm}")
    ctx = AttackContext(model)
    a_f = fgsm(x, 3, generator=0, context=ctx)
    a_p = pgd(x, 3, generator=0, context=ctx)
    assert _distortion(model, x, a_p) >= _distortion(model, x, a_f) > 0
    eps = pgd.params(3)["eps"]
    for a in (a_f, a_p):
        d = a - x
        assert a.min() >= 0 and a.max() <= 1
        if norm == "linf":
            assert float(d.abs().max()) <= eps + 1e-6
        else:
            assert float(d.flatten(1).norm(dim=1).max()) <= eps * (x[0].numel() ** 0.5) + 1e-5


def test_attack_respects_mask_and_data_range(model, x) -> None:
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[..., 6:18, 6:18] = True
    adv = attack(model, x, "pgd_linf", 4, mask=mask, generator=0)
    assert torch.equal(adv[~mask], x[~mask]) and not torch.equal(adv[mask], x[mask])
    xs = x * 2 - 1

    def model_pm(z: torch.Tensor) -> torch.Tensor:
        return model((z + 1) / 2)

    adv_pm = attack(model_pm, xs, "fgsm_linf", 4, generator=0, data_range=(-1.0, 1.0))
    assert adv_pm.min() >= -1 and adv_pm.max() <= 1
    assert float((adv_pm - xs).abs().max()) == pytest.approx(2 * 8 / 255, abs=1e-5)  # eps scales with the range


def test_square_attack_raises_loss_without_any_backward(model, x) -> None:
    calls = []

    def spy(z: torch.Tensor) -> torch.Tensor:
        calls.append((torch.is_grad_enabled(), z.requires_grad))
        return model(z)

    eps = 8 / 255
    adv = square_attack(AttackContext(spy), x, eps=eps, queries=60, generator=0)
    assert len(calls) == 61  # clean reference + 60 loss evaluations
    assert not any(g or r for g, r in calls)
    g = torch.Generator().manual_seed(0)
    noise = (x + eps * torch.where(torch.rand(x.shape, generator=g) < 0.5, -1.0, 1.0)).clamp(0, 1)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert _distortion(model, x, adv) > 1.5 * _distortion(model, x, noise)
    # the registered attack is the same code path, seeded
    sq = get_perturbation("square_linf")
    a1 = sq(x, 1, generator=3, context=AttackContext(model))
    a2 = sq(x, 1, generator=3, context=AttackContext(model))
    assert torch.equal(a1, a2)


def test_eot_averages_seeded_model_calls(model, x) -> None:
    def noisy(z: torch.Tensor) -> torch.Tensor:  # a stochastic model drawing from the global RNG
        return model(z) + 0.05 * torch.randn_like(z)

    ctx = AttackContext(noisy, eot_samples=4)
    ref = model(x)
    est = expected_loss(ctx, x, ref, make_generator(3))
    seeds = _seeds(make_generator(3), 4)
    manual = sum(per_image_loss(_call_model(ctx, x, s), ref, "mse") for s in seeds) / 4
    torch.testing.assert_close(est, manual)
    state = torch.get_rng_state()
    a1 = attack(noisy, x, "pgd_linf", 2, eot_samples=4, generator=5)
    a2 = attack(noisy, x, "pgd_linf", 2, eot_samples=4, generator=5)
    assert torch.equal(a1, a2)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is untouched
    assert not torch.equal(a1, attack(noisy, x, "pgd_linf", 2, eot_samples=4, generator=6))


def test_attack_api_errors_and_identity(model, x) -> None:
    with pytest.raises(ConfigError, match="needs context"):
        get_perturbation("pgd_linf")(x, 2)
    with pytest.raises(ConfigError, match="not an attack"):
        attack(model, x, "gaussian_noise", 2)
    with pytest.raises(ConfigError, match="loss"):
        AttackContext(model, loss="ce")  # type: ignore[arg-type]
    assert torch.equal(attack(model, x, "pgd_l2", 0), x)
