"""Conditional diffusion baseline: schedule, U-Net parameter counts, DDIM determinism, a training
step, bad sizes, and (slow) a short training run that beats copying the source."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.diffusion import ConditionalDiffusion, beta_schedule, build, timestep_embedding
from robustmri.errors import ConfigError
from robustmri.models.base import count_parameters
from robustmri.models.registry import build_model
from robustmri.train.context import SimpleStepContext

from learning import train_and_score



pytestmark = pytest.mark.usefixtures("two_threads")  # at most 2 intra-op threads, restored after


# --- parameter counts by hand -------------------------------------------------------------------
def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def _gn(c: int) -> int:
    return 2 * c


def _res(cin: int, cout: int, temb: int) -> int:
    skip = _conv(cin, cout, 1) if cin != cout else 0
    return _gn(cin) + _conv(cin, cout, 3) + temb * cout + cout + _gn(cout) + _conv(cout, cout, 3) + skip


def _attn(c: int) -> int:
    return _gn(c) + _conv(c, 3 * c, 1) + _conv(c, c, 1)


def test_tiny_unet_parameter_count_by_hand() -> None:
    # tiny: ch 16, levels (16, 32, 32) at 64, 32, 16 px, 1 res block per level, no attention but the middle one
    m = build("tiny", in_channels=1, image_size=64)
    ch, t = 16, 64
    n = (ch * t + t) + (t * t + t)  # time MLP: Linear(16, 64) + Linear(64, 64)
    n += _conv(2, ch, 3)  # input: cat(x_t, source)
    # encoder: res(16->16), down, res(16->32), down, res(32->32); skips: 16, 16, 16, 32, 32, 32
    n += _res(16, 16, t) + _conv(16, 16, 3) + _res(16, 32, t) + _conv(32, 32, 3) + _res(32, 32, t)
    n += _res(32, 32, t) + _attn(32) + _res(32, 32, t)  # middle
    # decoder level 2 (32): 2 blocks on skips 32, 32 + upsample; level 1 (32): skips 32, 16 + upsample; level 0 (16): 16, 16
    n += _res(64, 32, t) + _res(64, 32, t) + _conv(32, 32, 3)
    n += _res(64, 32, t) + _res(48, 32, t) + _conv(32, 32, 3)
    n += _res(48, 16, t) + _res(32, 16, t)
    n += _gn(16) + _conv(16, 1, 3)
    assert count_parameters(m) == n == 267_457


def test_paper_preset_parameter_count() -> None:
    # DDPM's 256^2 U-Net (reported as 114M) with a 2-channel input (noisy target + source); its
    # parameters do not depend on the image size, so it is built at 64^2 (bottleneck 2x2, attention at 4x4)
    m = build_model("diffusion", size="paper", in_channels=1, image_size=64)
    assert count_parameters(m) == 113_669_761
    assert m.sample_steps == 50 and m.timesteps == 1000
    # attention after every res block of the image_size / 16 level (2 down + 3 up) and in the middle
    assert sum(1 for mod in m.denoiser.modules() if type(mod).__name__ == "AttnBlock") == 6


def test_beta_schedules() -> None:
    lin = beta_schedule("linear", 1000)
    assert lin.shape == (1000,) and float(lin[0]) == pytest.approx(1e-4) and float(lin[-1]) == pytest.approx(0.02)
    cos = beta_schedule("cosine", 1000)
    abar = torch.cumprod(1 - cos, 0)
    # abar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi / 2)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(abar[499]) == pytest.approx(f(500) / f(0), rel=1e-6)
    with pytest.raises(ConfigError):
        beta_schedule("quadratic", 10)
    emb = timestep_embedding(torch.tensor([0, 7]), 8)
    assert torch.equal(emb[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    assert float(emb[1, 4]) == pytest.approx(math.sin(7.0))


def test_sampling_timesteps() -> None:
    m = build("tiny", image_size=64)
    assert m.sampling_timesteps() == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    m.sample_steps = 1
    assert m.sampling_timesteps() == [0]


def test_every_preset_builds_at_64_and_sampling_keeps_shape_and_range() -> None:
    assert isinstance(build_model("diffusion", size="small", image_size=64), ConditionalDiffusion)
    torch.manual_seed(0)
    m = build_model("diffusion", size="tiny", in_channels=2, image_size=64).eval()
    assert m.stochastic
    with torch.no_grad():
        y = m.translate(torch.rand(2, 2, 64, 64), generator=torch.Generator().manual_seed(0))
    assert y.shape == (2, 1, 64, 64)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_ddim_is_deterministic_for_a_generator_and_differs_for_another_seed() -> None:
    torch.manual_seed(0)
    m = build("tiny", image_size=32, sample_steps=3)
    # give the zero-initialised output layers non-zero weights so the noise matters
    for p in m.parameters():
        torch.nn.init.normal_(p, 0.0, 0.05)
    m.eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        a = m.translate(x, generator=torch.Generator().manual_seed(1))
        b = m.translate(x, generator=torch.Generator().manual_seed(1))
        c = m.translate(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert float((a - c).abs().mean()) > 1e-3


def test_untrained_sampler_returns_the_clipped_noise_estimate() -> None:
    # eps_theta == 0 at initialisation (zero output conv): x0 = x_T / sqrt(abar_T) clipped, then
    # deterministic DDIM moves x_t to sqrt(abar_prev) x0 and the last x0 is the clipped first one.
    m = build("tiny", image_size=32, sample_steps=4, schedule="linear").eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        y = m.translate(x, generator=torch.Generator().manual_seed(3))
    noise = torch.randn((1, 1, 32, 32), generator=torch.Generator().manual_seed(3))
    expected = ((noise / m.alphas_cumprod[999].sqrt()).clamp(-1, 1) + 1) / 2
    assert torch.allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("image", [34, 2])
def test_bad_image_size_is_a_one_line_config_error(image: int) -> None:
    with pytest.raises(ConfigError) as err:
        build("tiny", image_size=image)
    assert "\n" not in str(err.value) and str(image) in str(err.value)


def test_bad_sample_steps_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sample_steps"):
        build("tiny", sample_steps=0)


def test_training_step_updates_the_denoiser_and_loss_falls() -> None:
    torch.manual_seed(0)
    m = build("tiny", image_size=16)
    ctx = SimpleStepContext.for_model(m, total_steps=30)
    batch = {"source": torch.rand(4, 1, 16, 16), "target": torch.rand(4, 1, 16, 16), "mask": torch.ones(4, 1, 16, 16, dtype=torch.bool)}
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    losses = [m.training_step(batch, ctx)["loss_eps"] for _ in range(30)]
    changed = [n for n, p in m.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)
    assert losses[0] == pytest.approx(1.0, abs=0.2)  # eps_theta starts at 0: loss = E[eps^2] = 1
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10


# --- slow: learns t1 -> t2 on the embedded data -------------------------------------------------
@pytest.mark.slow
def test_tiny_diffusion_beats_copying_the_source() -> None:
    torch.manual_seed(0)
    model = build("tiny", image_size=64)
    psnr, copy_psnr, seconds = train_and_score(model, steps=250, batch_size=8)
    print(f"diffusion tiny ({model.sample_steps} DDIM steps): PSNR {psnr:.2f} dB vs copy-source {copy_psnr:.2f} dB in {seconds:.0f} s")
    # samples keep some sampling noise, so the margin is smaller than for the GANs (15.7 vs 9.4 dB measured)
    assert psnr > copy_psnr + 4.0


def test_ema_follows_its_formula_and_is_what_sampling_uses() -> None:
    """After the first update (n = 0, d = min(decay, 1/10) = 0.1): ema = 0.1 * init + 0.9 * trained."""
    torch.manual_seed(0)
    m = build("tiny", image_size=16)
    assert m.sampling_denoiser is m.ema_denoiser and m.inference_modules() == [m.ema_denoiser]
    init = [p.detach().clone() for p in m.denoiser.parameters()]
    ctx = SimpleStepContext.for_model(m, total_steps=5)
    batch = {"source": torch.rand(4, 1, 16, 16), "target": torch.rand(4, 1, 16, 16), "mask": torch.ones(4, 1, 16, 16, dtype=torch.bool)}
    m.training_step(batch, ctx)
    for e, p0, p in zip(m.ema_denoiser.parameters(), init, m.denoiser.parameters()):
        assert torch.allclose(e, 0.1 * p0 + 0.9 * p, atol=1e-6)
        assert not e.requires_grad
    assert int(m.ema_updates) == 1
    assert "ema_updates" in m.state_dict() and any(k.startswith("ema_denoiser.") for k in m.state_dict())
    plain = build("tiny", image_size=16, ema_decay=0.0)
    assert plain.ema_denoiser is None and plain.sampling_denoiser is plain.denoiser
    with pytest.raises(ConfigError, match="ema_decay"):
        build("tiny", ema_decay=1.0)


def test_several_samples_average_independent_draws() -> None:
    torch.manual_seed(0)
    m = build("tiny", image_size=16, sample_steps=3, samples=3).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, 0.0, 0.05)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        mean = m.translate(x, generator=torch.Generator().manual_seed(4))
        g = torch.Generator().manual_seed(4)
        draws = [m.sample(x, g) for _ in range(3)]
    assert torch.allclose(mean, sum(draws) / 3, atol=1e-6)
    assert float((draws[0] - draws[1]).abs().mean()) > 1e-3  # the draws differ: the mean is not one of them
    assert build("paper", image_size=64).samples == 4 and build("tiny").samples == 1
    with pytest.raises(ConfigError, match="samples"):
        build("tiny", samples=0)
