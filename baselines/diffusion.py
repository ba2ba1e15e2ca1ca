"""Conditional denoising diffusion for image translation: DDPM training, DDIM sampling.

A U-Net denoiser ``eps_theta(cat(x_t, source), t)`` is trained with the DDPM objective (Ho et al.,
NeurIPS 2020): ``x_t = sqrt(abar_t) y + sqrt(1 - abar_t) eps``, loss = MSE(eps_theta, eps), t uniform
in {0, ..., T-1}, T = 1000, linear betas 1e-4 .. 0.02 (or the cosine schedule of Nichol & Dhariwal,
ICML 2021). Conditioning on the source by channel concatenation, as in SR3 (Saharia et al. 2021)
and Palette (Saharia et al. 2022). Sampling is DDIM (Song et al., ICLR 2021) with eta = 0 over
``sample_steps`` evenly spaced timesteps: deterministic given the initial noise, which is drawn from
the ``generator`` passed to :meth:`ConditionalDiffusion.translate` (a torch generator, a
:class:`robustmri.rng.KeyedStream` with one stream per image, or ``None``: torch's global RNG).
The predicted ``x_0`` is clipped to [-1, 1] at every step and ``eps`` re-derived from it (as
openai/improved-diffusion's ``ddim_sample`` with ``clip_denoised``); the output is the last ``x_0``.

U-Net (DDPM's, written from the paper and openai/improved-diffusion / ermongroup/ddim for
understanding): sinusoidal timestep embedding -> MLP (4 ch); a 3x3 input conv; per resolution
level ``num_res_blocks`` residual blocks (GroupNorm, SiLU, 3x3 conv, + projected timestep
embedding, GroupNorm, SiLU, dropout, 3x3 conv; 1x1 skip when the width changes) with
single-head self-attention at the resolutions in ``attn_resolutions``, then a strided 3x3 conv
downsampling; a middle res-attn-res; a mirrored decoder with ``num_res_blocks + 1`` blocks per level
on concatenated skips and nearest-neighbour upsampling + 3x3 conv; GroupNorm, SiLU, 3x3 output conv.
The last conv of every residual block, the attention output projection and the output conv are
zero-initialised (DDPM's ``init_scale=0``-style), so every block starts as the identity.

Size presets: ``paper`` = DDPM's 256^2 U-Net (ch 128, multipliers 1, 1, 2, 2, 4, 4, 2 blocks per
level, attention at 16x16, dropout 0), T = 1000 linear, lr 2e-5 as DDPM at 256^2, 50 DDIM steps;
``small`` = ch 64, multipliers 1, 2, 2, 4, 2 blocks, attention at 1/8 of the image size, dropout
0.1, cosine schedule, lr 1e-4, 50 steps; ``tiny`` = ch 16, multipliers 1, 2, 2, 1 block, attention
only in the middle block, cosine schedule (about 1 dB better than linear after a minute of
training), lr 1e-3, 10 steps (trains in about a minute on 2 CPU cores at 64^2). All presets use
T = 1000.

EMA and sample averaging: sampling uses an exponential moving average of the denoiser's weights
(DDPM's 0.9999 at ``paper``; 0.999 ``small``; 0.99 ``tiny``, whose runs are a few hundred steps), with
the usual warm-up ``min(decay, (1 + n) / (10 + n))`` after n updates; ``ema_decay=0`` samples the
trained weights. ``samples`` DDIM samples (independent initial noises) are averaged per prediction
(``paper``: 4; ``tiny``/``small``: 1, for cost): the mean is the estimate of E[y | x] that PSNR rewards;
a single sample is a draw from the posterior. Differences from DDPM: Adam betas (0.9, 0.999)
without warm-up, and the network is conditioned on the source. Image sizes: multiples of
2^(levels - 1).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from baselines.layers import check_image_size
from robustmri import rng
from robustmri.errors import ConfigError
from robustmri.models.base import Batch, OptimizerSpec, StepContext, TranslationModel, to_signed, to_unit
from robustmri.rng import RandomSource

PRESETS: dict[str, dict[str, object]] = {
    "tiny": {
        "ch": 16,
        "channel_mult": (1, 2, 2),
        "num_res_blocks": 1,
        "attn_div": (),
        "dropout": 0.0,
        "schedule": "cosine",
        "lr": 1e-3,
        "sample_steps": 10,
        "ema_decay": 0.99,
        "samples": 1,
    },
    "small": {
        "ch": 64,
        "channel_mult": (1, 2, 2, 4),
        "num_res_blocks": 2,
        "attn_div": (8,),
        "dropout": 0.1,
        "schedule": "cosine",
        "lr": 1e-4,
        "sample_steps": 50,
        "ema_decay": 0.999,
        "samples": 1,
    },
    "paper": {
        "ch": 128,
        "channel_mult": (1, 1, 2, 2, 4, 4),
        "num_res_blocks": 2,
        "attn_div": (16,),
        "dropout": 0.0,
        "schedule": "linear",
        "lr": 2e-5,
        "sample_steps": 50,
        "ema_decay": 0.9999,
        "samples": 4,
    },
}
"""``attn_div``: self-attention at feature maps of size image_size / d for each d (16 -> 16x16 at 256^2)."""


def beta_schedule(kind: str, steps: int) -> Tensor:
    """Noise variances ``beta_t`` (float64, shape (steps,)): ``"linear"`` 1e-4 .. 0.02 (scaled by
    1000 / steps as improved-diffusion) or ``"cosine"`` (abar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), s = 0.008,
    betas clipped at 0.999)."""
    if kind == "linear":
        scale = 1000.0 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        abar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return torch.clamp(1.0 - abar[1:] / abar[:-1], max=0.999)
    raise ConfigError(f"unknown beta schedule {kind!r}: use 'linear' or 'cosine'")


def ddim_step(x: Tensor, eps: Tensor, abar: Tensor, abar_prev: Tensor) -> tuple[Tensor, Tensor]:
    """One DDIM step with eta = 0 (Song et al., eq. 12): ``(x_prev, x0)`` from ``x_t`` and the
    predicted noise ``eps``, with ``abar`` = alpha-bar at t and ``abar_prev`` at the previous
    sampling timestep (1 after the last). ``x0 = (x - sqrt(1 - abar) eps) / sqrt(abar)`` is
    clipped to [-1, 1] and eps re-derived from the clipped x0 (openai/improved-diffusion's
    ``ddim_sample`` with ``clip_denoised``), so x_prev stays consistent with the clipped x0. This
    equals MONAI's ``DDIMScheduler.step`` fed the clipped x0 as a ``"sample"`` prediction; MONAI's
    ``"epsilon"`` path clips x0 but keeps the network's eps (tests/test_references.py)."""
    x0 = ((x - (1.0 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1.0, 1.0)
    eps = (x - abar.sqrt() * x0) / (1.0 - abar).sqrt()
    return abar_prev.sqrt() * x0 + (1.0 - abar_prev).sqrt() * eps, x0


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps ``t`` (B,) -> (B, dim) (dim even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _groups(channels: int) -> int:
    """GroupNorm groups: 32 as DDPM when the width allows, else the largest of 16, 8, 4, 2, 1 dividing it."""
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``(B, cin, H, W), temb (B, temb_dim) -> (B, cout, H, W)``: two GroupNorm-SiLU-conv3x3 stages
    with the projected time embedding added in between; identity or 1x1 skip."""

    def __init__(self, cin: int, cout: int, temb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual: ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # (B, HW, HW)
        out = (v @ weights.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj(out)


class UNet(nn.Module):
    """DDPM U-Net: ``forward(x (B, in_ch, H, W), t (B,)) -> (B, out_ch, H, W)``.

    ``attn_resolutions``: feature-map sizes (pixels) at which self-attention follows each residual block.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        image_size: int,
        ch: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.ch = ch
        temb_dim = 4 * ch
        self.temb = nn.Sequential(nn.Linear(ch, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [ch]
        cur, res = ch, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                blocks: list[nn.Module] = [ResBlock(cur, ch * mult, temb_dim, dropout)]
                cur = ch * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(cur))
                self.down.append(nn.ModuleList(blocks))
                skips.append(cur)
            if level != len(channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(cur, cur, temb_dim, dropout), AttnBlock(cur), ResBlock(cur, cur, temb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                blocks = [ResBlock(cur + skips.pop(), ch * mult, temb_dim, dropout)]
                cur = ch * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(cur))
                if level != 0 and i == num_res_blocks:
                    blocks.append(_Upsample(cur))
                    res *= 2
                self.up.append(nn.ModuleList(blocks))
        self.out = nn.Sequential(nn.GroupNorm(_groups(cur), cur), nn.SiLU(), _zero(nn.Conv2d(cur, out_ch, 3, padding=1)))

    @staticmethod
    def _run(blocks: nn.ModuleList, h: Tensor, temb: Tensor) -> Tensor:
        for block in blocks:
            h = block(h, temb) if isinstance(block, ResBlock) else block(h)
        return h

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        temb = self.temb(timestep_embedding(t, self.ch))
        hs = [self.conv_in(x)]
        for blocks in self.down:
            hs.append(self._run(blocks, hs[-1], temb))
        h = self._run(self.mid, hs[-1], temb)
        for blocks in self.up:
            h = self._run(blocks, torch.cat([h, hs.pop()], 1), temb)
        return self.out(h)


class _Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ConditionalDiffusion(TranslationModel):
    """Source-conditioned DDPM with DDIM sampling (see the module docstring); I/O in [0, 1].

    ``sample_steps``: DDIM steps used by :meth:`translate` (recorded in results; change it freely
    after training). ``timesteps``: T of the training process.
    """

    name = "diffusion"
    stochastic = True

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 256,
        ch: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_div: Sequence[int] = (16,),
        dropout: float = 0.0,
        timesteps: int = 1000,
        schedule: str = "linear",
        sample_steps: int = 50,
        lr: float = 2e-5,
        ema_decay: float = 0.9999,
        samples: int = 1,
    ) -> None:
        super().__init__(in_channels, image_size)
        depth = 2 ** (len(channel_mult) - 1)
        check_image_size("diffusion U-Net", image_size, multiple=depth, minimum=max(depth, 8))
        if not 1 <= sample_steps <= timesteps:
            raise ConfigError(f"sample_steps must be in 1..{timesteps} (the training timesteps), got {sample_steps}")
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 = no EMA), got {ema_decay}")
        if int(samples) < 1:
            raise ConfigError(f"samples (DDIM samples averaged per prediction) must be >= 1, got {samples}")
        self.timesteps = timesteps
        self.schedule = schedule
        self.sample_steps = sample_steps
        self.samples = int(samples)
        self.ema_decay = float(ema_decay)
        self.lr = lr
        attn_resolutions = [image_size // d for d in attn_div]
        self.denoiser = UNet(1 + in_channels, 1, image_size, ch, channel_mult, num_res_blocks, attn_resolutions, dropout)
        self.ema_denoiser: UNet | None = None
        if self.ema_decay > 0:
            self.ema_denoiser = copy.deepcopy(self.denoiser).requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        abar = torch.cumprod(1.0 - beta_schedule(schedule, timesteps), dim=0)
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)

    def inference_modules(self) -> list[nn.Module]:
        return [self.sampling_denoiser]

    @property
    def sampling_denoiser(self) -> nn.Module:
        """The network sampling uses: the EMA copy when ``ema_decay > 0``, else the trained one."""
        return self.ema_denoiser if self.ema_denoiser is not None else self.denoiser

    @torch.no_grad()
    def update_ema(self) -> None:
        """``ema = d * ema + (1 - d) * weights`` with ``d = min(ema_decay, (1 + n) / (10 + n))``;
        buffers (none in this U-Net, GroupNorm only) are copied."""
        if self.ema_denoiser is None:
            return
        n = self.ema_updates.float()  # stays on the device: no host sync per training step
        d = torch.clamp((1.0 + n) / (10.0 + n), max=self.ema_decay)
        for e, p in zip(self.ema_denoiser.parameters(), self.denoiser.parameters()):
            e.lerp_(p.detach(), 1.0 - d)  # d * e + (1 - d) * p
        for e, b in zip(self.ema_denoiser.buffers(), self.denoiser.buffers()):
            e.copy_(b)
        self.ema_updates += 1

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {"G": OptimizerSpec(list(self.denoiser.parameters()), lr=self.lr, betas=(0.9, 0.999))}

    def q_sample(self, y0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Forward process: ``x_t = sqrt(abar_t) y0 + sqrt(1 - abar_t) noise`` (y0 in [-1, 1], t (B,) long)."""
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return abar.sqrt() * y0 + (1.0 - abar).sqrt() * noise

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        src = to_signed(batch["source"])
        y0 = to_signed(batch["target"])
        t = torch.randint(0, self.timesteps, (y0.shape[0],), device=y0.device)
        noise = torch.randn_like(y0)
        with ctx.autocast():
            eps = self.denoiser(torch.cat([self.q_sample(y0, t, noise), src], 1), t)
            loss = F.mse_loss(eps.float(), noise)
        ctx.optimize("G", loss)
        self.update_ema()
        return {"loss_eps": loss.detach()}

    def sampling_timesteps(self) -> list[int]:
        """The DDIM timesteps, descending: ``sample_steps`` values evenly spaced over [0, T-1]."""
        seq = torch.linspace(0, self.timesteps - 1, self.sample_steps).round().long().tolist()
        return sorted(set(int(s) for s in seq), reverse=True)

    def translate(self, source: Tensor, generator: RandomSource | None = None, target: Tensor | None = None) -> Tensor:
        """The mean of ``samples`` DDIM (eta = 0) samples, each from noise drawn with ``generator``:
        (B, C_in, H, W) -> (B, 1, H, W) in [0, 1]."""
        out = self.sample(source, generator)
        for _ in range(self.samples - 1):
            out = out + self.sample(source, generator)
        return out / self.samples

    def sample(self, source: Tensor, generator: RandomSource | None = None) -> Tensor:
        """One DDIM (eta = 0) sample from noise drawn with ``generator``: (B, 1, H, W) in [0, 1]."""
        net = self.sampling_denoiser
        src = to_signed(source)
        shape = (source.shape[0], 1, source.shape[2], source.shape[3])
        x = rng.normal(shape, generator, source.device)
        steps = self.sampling_timesteps()
        x0 = x
        for i, t in enumerate(steps):
            abar = self.alphas_cumprod[t]
            abar_prev = self.alphas_cumprod[steps[i + 1]] if i + 1 < len(steps) else torch.ones_like(abar)
            tt = torch.full((shape[0],), t, device=source.device, dtype=torch.long)
            inp = torch.cat([x, src], 1)
            if torch.is_grad_enabled() and inp.requires_grad:
                # an attack differentiates through the whole sampler: recompute each denoiser call
                # in the backward pass instead of keeping sample_steps sets of activations
                eps = checkpoint(net, inp, tt, use_reentrant=False).float()
            else:
                eps = net(inp, tt).float()
            x, x0 = ddim_step(x, eps, abar, abar_prev)
        return to_unit(x0).clamp(0.0, 1.0)


def build(size: str = "tiny", in_channels: int = 1, image_size: int = 64, **options: object) -> ConditionalDiffusion:
    """Registry builder: conditional diffusion at preset ``size`` (see :data:`PRESETS`) for ``image_size``^2 inputs."""
    if size not in PRESETS:
        raise ConfigError(f"unknown size {size!r}: use one of {', '.join(PRESETS)}")
    kwargs: dict[str, object] = dict(PRESETS[size])
    kwargs.update(options)
    return ConditionalDiffusion(in_channels=in_channels, image_size=image_size, **kwargs)  # type: ignore[arg-type]
