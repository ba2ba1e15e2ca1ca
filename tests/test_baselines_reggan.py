"""Reg-GAN baseline: architecture (exact parameter counts), warp geometry, losses, a training step,
and (slow) a short training run that must beat copying the source on held-out subjects."""

from __future__ import annotations

import pytest
import torch

from baselines.reggan import PRESETS, RegGAN, RegistrationNet, SpatialTransformer, build, smoothness_loss
from robustmri.errors import ConfigError
from robustmri.models.base import count_parameters
from robustmri.models.registry import build_model
from robustmri.train.context import SimpleStepContext

from learning import train_and_score



pytestmark = pytest.mark.usefixtures("two_threads")  # at most 2 intra-op threads, restored after


# --- parameter counts by hand -------------------------------------------------------------------
def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _resblock(dim: int) -> int:  # two 3x3 convs with bias, InstanceNorm without parameters
    return 2 * _conv(dim, dim, 3)


def _generator_params(cin: int, ngf: int, blocks: int) -> int:
    return (
        _conv(cin, ngf, 7)
        + _conv(ngf, 2 * ngf, 3)
        + _conv(2 * ngf, 4 * ngf, 3)
        + blocks * _resblock(4 * ngf)
        + _conv(4 * ngf, 2 * ngf, 3)  # transposed convs: same count
        + _conv(2 * ngf, ngf, 3)
        + _conv(ngf, 1, 7)
    )


def _registration_params(down: tuple[int, ...], up: tuple[int, ...], bottleneck: int) -> int:
    n, ch = 0, 2
    for f in down:
        n += _conv(ch, f, 3) + _resblock(f)
        ch = f
    n += _conv(ch, 2 * ch, 1) + bottleneck * _resblock(2 * ch) + _conv(2 * ch, ch, 1)
    for skip, f in zip(reversed(down), up):
        n += _conv(ch + skip, f, 3)
        ch = f
    return n + _resblock(ch) + _conv(ch, ch, 1) + _conv(ch, 2, 3)


def _discriminator_params(ndf: int) -> int:
    return _conv(1, ndf, 4) + _conv(ndf, 2 * ndf, 4) + _conv(2 * ndf, 4 * ndf, 4) + _conv(4 * ndf, 8 * ndf, 4) + _conv(8 * ndf, 1, 4)


@pytest.mark.parametrize("size,image", [("tiny", 64), ("small", 64), ("paper", 256)])
def test_parameter_counts_match_the_architecture(size: str, image: int) -> None:
    p = PRESETS[size]
    m = build(size, in_channels=1, image_size=image)
    assert count_parameters(m.generator) == _generator_params(1, p["ngf"], p["n_res_blocks"])  # type: ignore[arg-type]
    assert count_parameters(m.registration) == _registration_params(p["reg_down"], p["reg_up"], p["reg_bottleneck_blocks"])  # type: ignore[arg-type]
    assert count_parameters(m.discriminator) == _discriminator_params(p["ndf"])  # type: ignore[arg-type]


def test_paper_preset_counts() -> None:
    m = build("paper", in_channels=1, image_size=256)
    # CycleGAN ResNet-9 generator for 1 -> 1 channels; Reg-GAN's R (7 levels); Reg-GAN's D
    assert count_parameters(m.generator) == 11_365_633
    assert count_parameters(m.registration) == 2_058_018
    assert count_parameters(m.discriminator) == 2_762_689


def test_registry_builds_every_preset_and_forward_keeps_shape_and_range() -> None:
    torch.manual_seed(0)
    for size, image in (("tiny", 64), ("small", 64)):
        m = build_model("reggan", size=size, in_channels=2, image_size=image).eval()
        x = torch.rand(2, 2, image, image)
        with torch.no_grad():
            y = m.translate(x)
        assert y.shape == (2, 1, image, image)
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert isinstance(build_model("reggan", size="paper", image_size=256), RegGAN)
    tiny = build("tiny")
    assert list(tiny.inference_modules()) == [tiny.generator]


@pytest.mark.parametrize("size,image", [("tiny", 40), ("tiny", 16), ("paper", 64), ("paper", 128)])
def test_bad_image_size_is_a_one_line_config_error(size: str, image: int) -> None:
    with pytest.raises(ConfigError) as err:
        build(size, image_size=image)
    assert "\n" not in str(err.value) and str(image) in str(err.value)


def test_zero_flow_is_the_identity_warp() -> None:
    torch.manual_seed(0)
    img = torch.rand(2, 3, 20, 24)
    out = SpatialTransformer()(img, torch.zeros(2, 2, 20, 24))
    assert torch.allclose(out, img, atol=1e-5)


def test_registration_net_starts_as_identity_warp() -> None:
    torch.manual_seed(0)
    net = RegistrationNet(2, (8, 16, 16), (16, 16, 8), 1)
    moving, fixed = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        flow = net(moving, fixed)
    assert flow.shape == (2, 2, 32, 32)
    assert float(flow.abs().max()) < 1e-2  # output conv ~ N(0, 1e-5): sub-pixel displacement
    warped = SpatialTransformer()(moving, flow)
    assert float((warped - moving).abs().max()) < 1e-2
    net_zero = RegistrationNet(2, (8, 16, 16), (16, 16, 8), 1, init_std=0.0)
    with torch.no_grad():
        flow0 = net_zero(moving, fixed)
    assert float(flow0.abs().max()) == 0.0
    assert torch.allclose(SpatialTransformer()(moving, flow0), moving, atol=1e-5)


def test_known_translation_shifts_by_the_right_number_of_pixels() -> None:
    torch.manual_seed(0)
    img = torch.rand(1, 1, 16, 20)
    flow = torch.zeros(1, 2, 16, 20)
    flow[:, 0] = 2.0  # rows: out[i, j] = img[i + 2, j]
    flow[:, 1] = -3.0  # columns: out[i, j] = img[i + 2, j - 3]
    out = SpatialTransformer()(img, flow)
    assert torch.allclose(out[..., :14, 3:], img[..., 2:, :17], atol=1e-5)
    # beyond the border: nearest border value (border padding)
    assert torch.allclose(out[..., 14:, 3:], img[..., 15:16, :17].expand(1, 1, 2, 17), atol=1e-5)
    assert torch.allclose(out[..., :14, :3], img[..., 2:, 0:1].expand(1, 1, 14, 3), atol=1e-5)
    # half a pixel: the bilinear average of neighbours
    flow = torch.zeros(1, 2, 16, 20)
    flow[:, 1] = 0.5
    out = SpatialTransformer()(img, flow)
    assert torch.allclose(out[..., :, :19], 0.5 * (img[..., :, :19] + img[..., :, 1:]), atol=1e-5)


def test_smoothness_loss() -> None:
    const = torch.full((2, 2, 8, 8), 3.7)
    assert float(smoothness_loss(const)) == 0.0
    ramp = torch.zeros(1, 2, 4, 5)
    ramp[:, 1] = torch.arange(5.0).view(1, 5)  # d/dW = 1 everywhere on channel 1, 0 on channel 0
    # mean over (1, 2, 4, 4) differences along W = 16 ones out of 32 -> 0.5; along H: 0
    assert float(smoothness_loss(ramp)) == pytest.approx(0.5)


def test_training_step_updates_generator_registration_and_discriminator() -> None:
    torch.manual_seed(0)
    m = build("tiny", image_size=64)
    ctx = SimpleStepContext.for_model(m, total_steps=10)
    batch = {"source": torch.rand(2, 1, 64, 64), "target": torch.rand(2, 1, 64, 64), "mask": torch.ones(2, 1, 64, 64, dtype=torch.bool)}
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    logs = m.training_step(batch, ctx)
    assert set(logs) >= {"loss_G_corr", "loss_G_smooth", "loss_G_adv", "loss_D"}
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in logs.values())  # no host read per step
    for prefix in ("generator.", "registration.", "discriminator."):
        changed = [n for n, p in m.named_parameters() if n.startswith(prefix) and not torch.equal(p, before[n])]
        assert changed, f"no parameter of {prefix} changed"
    assert set(m.optimizers()) == {"G", "D"}
    n_g = sum(p.numel() for p in m.optimizers()["G"].params)
    assert n_g == count_parameters(m.generator) + count_parameters(m.registration)


# --- slow: learns t1 -> t2 on the embedded data -------------------------------------------------
@pytest.mark.slow
def test_tiny_reggan_beats_copying_the_source() -> None:
    torch.manual_seed(0)
    model = build("tiny", image_size=64)
    psnr, copy_psnr, seconds = train_and_score(model, steps=400)
    print(f"reggan tiny: PSNR {psnr:.2f} dB vs copy-source {copy_psnr:.2f} dB in {seconds:.0f} s")
    assert psnr > copy_psnr + 5.0
