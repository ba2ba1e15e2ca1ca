"""Reg-GAN (Kong et al., NeurIPS 2021, "Breaking the dilemma of medical image-to-image translation").

A translation generator trained through a registration network: instead of an L1 loss between
``G(x)`` and a possibly misaligned target ``y``, a network ``R`` predicts a dense displacement field
``flow = R(cat(G(x), y))`` that registers ``G(x)`` to ``y``, and the loss is taken after warping.
Written from the description in the paper and the public code (Kid-Liet/Reg-GAN: Model/CycleGan.py
``Generator``/``Discriminator``, trainer/reg.py ``ResUnet``, trainer/layers.py, trainer/transformer.py
``Transformer_2D``, trainer/CycTrainer.py, the "NC+R" branch = unidirectional + registration, and
Yaml/CycleGan.yaml for the weights):

- Generator ``G``: CycleGAN ResNet generator -- reflect-pad 7x7 conv (ngf), two stride-2 3x3
  convolutions (2 ngf, 4 ngf), ``n_res_blocks`` residual blocks (9 in the paper), two stride-2
  transposed convolutions, 7x7 conv, Tanh; InstanceNorm (no affine), convolutions with bias.
- Registration network ``R`` (:class:`RegistrationNet`): a residual U-Net on ``cat(G(x), y)``:
  per level a 3x3 conv + LeakyReLU(0.2) + one residual block, then 2x2 max-pooling (filters
  32, 64, 64, 64, 64, 64, 64 over 7 levels in the paper; no normalisation except InstanceNorm inside
  residual blocks); a bottleneck 1x1 conv to twice the width, residual blocks (3), 1x1 conv back;
  a decoder that bilinearly upsamples to each skip's size, concatenates and applies 3x3 conv +
  LeakyReLU (filters 64, ..., 64, 32); a refine block (residual block + 1x1 conv + LeakyReLU); a
  3x3 output conv to 2 channels with weights ~ N(0, 1e-5) and zero bias so the warp starts as
  the identity. Kaiming-normal initialisation elsewhere (as their ``init_func='kaiming'``).
- Spatial transformer (:class:`SpatialTransformer`): ``warp(img, flow)(p) = img(p + flow(p))``,
  bilinear ``grid_sample`` with ``align_corners=True`` and border padding; ``flow`` is in pixels,
  channel 0 = displacement along H (rows), channel 1 = along W (columns).
- Discriminator ``D``: Reg-GAN's unconditional one on the target contrast only: 4x4 convs ndf,
  2 ndf, 4 ndf (stride 2), 8 ndf (stride 1), InstanceNorm except on the first, LeakyReLU 0.2, a
  1-channel 4x4 conv, then the logit map is averaged to one score per image.
- Losses (NC+R): ``G, R``: 20 * L1(warp(G(x), flow), y) + 10 * smoothness(flow) + 1 * LSGAN(D(G(x)), 1)
  -- no direct L1 between ``G(x)`` and ``y``; ``D``: LSGAN(D(y), 1) + LSGAN(D(G(x)), 0) with ``G(x)``
  recomputed without gradient after the generator step (as their code). Smoothness =
  mean((d flow / dH)^2) + mean((d flow / dW)^2) (their trainer/utils.py ``smooothing_loss``).
- Optimisation: Adam lr 1e-4, betas (0.5, 0.999). Reg-GAN uses two Adam optimisers (G and R)
  stepped together on the same loss; Adam is per-parameter, so robustmri uses ONE optimiser "G"
  over the parameters of both networks (identical updates; one gradient-clipping norm over both
  when clipping is on), then "D".

Inference returns ``G(x)``, what Reg-GAN's code evaluates; ``R`` is training-only.

Size presets: ``paper`` = ngf 64, 9 residual blocks, ndf 64, R with 7 levels (needs image size a
multiple of 128, >= 256); ``small`` = ngf 32, 6 blocks, ndf 32, R with 5 levels (32, 64, 64, 64, 64
filters), 3 bottleneck blocks; ``tiny`` = ngf 16, 3 blocks, ndf 16, R with 4 levels (16, 32, 32, 32),
1 bottleneck block, lr 5e-4 (so it learns within a minute on a CPU). Differences from the paper:
no replay buffer of fakes (their NC+R branch does not use one either), masks are ignored in the
losses (as theirs), and weights are initialised with pix2pix's N(0, 0.02) for G and D.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.layers import ResnetBlock, check_image_size, lsgan_loss
from robustmri.errors import ConfigError
from robustmri.models.base import Batch, OptimizerSpec, SignedGeneratorModel, StepContext, init_normal, to_signed

PRESETS: dict[str, dict[str, object]] = {
    "tiny": {
        "ngf": 16,
        "n_res_blocks": 3,
        "ndf": 16,
        "reg_down": (16, 32, 32, 32),
        "reg_up": (32, 32, 32, 16),
        "reg_bottleneck_blocks": 1,
        "lr": 5e-4,
    },
    "small": {
        "ngf": 32,
        "n_res_blocks": 6,
        "ndf": 32,
        "reg_down": (32, 64, 64, 64, 64),
        "reg_up": (64, 64, 64, 64, 32),
        "reg_bottleneck_blocks": 3,
        "lr": 1e-4,
    },
    "paper": {
        "ngf": 64,
        "n_res_blocks": 9,
        "ndf": 64,
        "reg_down": (32, 64, 64, 64, 64, 64, 64),
        "reg_up": (64, 64, 64, 64, 64, 64, 32),
        "reg_bottleneck_blocks": 3,
        "lr": 1e-4,
    },
}


class ResnetGenerator(nn.Module):
    """CycleGAN/Reg-GAN ResNet generator: ``(B, in_channels, H, W)`` in [-1, 1] -> ``(B, 1, H, W)`` Tanh.

    H and W must be multiples of 4 (two stride-2 downsamplings undone by two transposed convs).
    """

    def __init__(self, in_channels: int, out_channels: int = 1, ngf: int = 64, n_res_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(True),
        ]
        ch = ngf
        for _ in range(2):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch, norm="instance", bias=True) for _ in range(n_res_blocks)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class ImageDiscriminator(nn.Module):
    """Reg-GAN's discriminator: PatchGAN logits averaged to one score per image, ``(B, C, H, W) -> (B, 1)``."""

    def __init__(self, in_channels: int = 1, ndf: int = 64) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, stride=2, padding=1),
            nn.InstanceNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, stride=2, padding=1),
            nn.InstanceNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, padding=1),
            nn.InstanceNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 8, 1, 4, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).mean(dim=(2, 3))


class _ConvAct(nn.Module):
    """3x3 (or 1x1) conv with bias + LeakyReLU(0.2), optionally followed by a residual block."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, residual: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
        self.act = nn.LeakyReLU(0.2)
        self.res = ResnetBlock(out_ch, norm="instance", bias=True) if residual else None
        nn.init.kaiming_normal_(self.conv.weight, a=0.2, nonlinearity="leaky_relu")
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.conv(x))
        return self.res(x) if self.res is not None else x


class RegistrationNet(nn.Module):
    """Reg-GAN's registration network: a residual U-Net predicting a dense 2-D displacement field.

    ``forward(moving, fixed)``: ``moving`` (B, C_m, H, W) and ``fixed`` (B, C_f, H, W) (Reg-GAN:
    ``G(x)`` and ``y`` in [-1, 1]) -> ``flow`` (B, 2, H, W) in pixels (channel 0 along H, channel 1
    along W) such that ``SpatialTransformer()(moving, flow)`` is aligned with ``fixed``.

    ``down_filters``: filters per encoder level (each level ends with 2x2 max-pooling, so H and W
    must be at least ``2 * 2**levels`` for the bottleneck's reflection padding); ``up_filters``:
    filters of the decoder levels, deepest first (same length); ``bottleneck_blocks``: residual blocks
    at the bottleneck (at twice the deepest width); ``init_std``: std of the output conv's weights
    (1e-5: the warp starts as the identity).
    """

    def __init__(
        self,
        in_channels: int = 2,
        down_filters: Sequence[int] = (32, 64, 64, 64, 64, 64, 64),
        up_filters: Sequence[int] = (64, 64, 64, 64, 64, 64, 32),
        bottleneck_blocks: int = 3,
        init_std: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(down_filters) != len(up_filters) or not down_filters:
            raise ConfigError(
                f"RegistrationNet needs as many up_filters as down_filters, got {list(down_filters)} and {list(up_filters)}"
            )
        self.levels = len(down_filters)
        self.down = nn.ModuleList()
        ch = in_channels
        for out in down_filters:
            self.down.append(_ConvAct(ch, out, 3, residual=True))
            ch = out
        self.bottleneck_in = _ConvAct(ch, 2 * ch, 1)
        self.bottleneck = nn.Sequential(*[ResnetBlock(2 * ch, norm="instance", bias=True) for _ in range(bottleneck_blocks)])
        self.bottleneck_out = _ConvAct(2 * ch, ch, 1)
        for m in self.bottleneck.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]
        self.up = nn.ModuleList()
        for skip, out in zip(reversed(list(down_filters)), up_filters):
            self.up.append(_ConvAct(ch + skip, out, 3))
            ch = out
        self.refine = nn.Sequential(ResnetBlock(ch, norm="instance", bias=True), _ConvAct(ch, ch, 1))
        self.output = nn.Conv2d(ch, 2, 3, padding=1)
        nn.init.normal_(self.output.weight, 0.0, init_std)
        nn.init.zeros_(self.output.bias)

    def forward(self, moving: Tensor, fixed: Tensor) -> Tensor:
        return self.output(self.features(moving, fixed))

    def features(self, moving: Tensor, fixed: Tensor) -> Tensor:
        """The last feature map before the flow head: (B, up_filters[-1], H, W)."""
        x = torch.cat([moving, fixed], 1)
        skips: list[Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck_out(self.bottleneck(self.bottleneck_in(x)))
        for block, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.refine(x)


class SpatialTransformer(nn.Module):
    """Warp images with a dense displacement field: ``out(p) = img(p + flow(p))`` (bilinear).

    ``img`` (B, C, H, W), ``flow`` (B, 2, H, W) in pixels (channel 0: rows/H, channel 1: columns/W)
    -> (B, C, H, W). Positions outside the image take the nearest border value
    (``grid_sample(..., align_corners=True, padding_mode="border")``). Computed in float32.
    """

    def forward(self, img: Tensor, flow: Tensor) -> Tensor:
        _, _, h, w = flow.shape
        flow = flow.float()
        rows = torch.arange(h, device=flow.device, dtype=torch.float32).view(1, h, 1)
        cols = torch.arange(w, device=flow.device, dtype=torch.float32).view(1, 1, w)
        y = rows + flow[:, 0]
        x = cols + flow[:, 1]
        # normalise to [-1, 1] (align_corners=True: -1 and 1 are the centres of the corner pixels)
        grid = torch.stack([2.0 * x / max(w - 1, 1) - 1.0, 2.0 * y / max(h - 1, 1) - 1.0], dim=-1)
        return F.grid_sample(img.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def smoothness_loss(flow: Tensor) -> Tensor:
    """Diffusion regulariser of a displacement field ``(B, 2, H, W)``:
    ``mean((flow[..., 1:, :] - flow[..., :-1, :])^2) + mean((flow[..., :, 1:] - flow[..., :, :-1])^2)``
    (pixels^2; 0 for any constant field)."""
    dh = flow[:, :, 1:, :] - flow[:, :, :-1, :]
    dw = flow[:, :, :, 1:] - flow[:, :, :, :-1]
    return (dh.float() ** 2).mean() + (dw.float() ** 2).mean()


class RegGAN(SignedGeneratorModel):
    """Reg-GAN translation model (see the module docstring); I/O in [0, 1], networks in [-1, 1]."""

    name = "reggan"

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 256,
        ngf: int = 64,
        n_res_blocks: int = 9,
        ndf: int = 64,
        reg_down: Sequence[int] = (32, 64, 64, 64, 64, 64, 64),
        reg_up: Sequence[int] = (64, 64, 64, 64, 64, 64, 32),
        reg_bottleneck_blocks: int = 3,
        lambda_corr: float = 20.0,
        lambda_smooth: float = 10.0,
        lambda_adv: float = 1.0,
        lr: float = 1e-4,
    ) -> None:
        super().__init__(in_channels, image_size)
        levels = len(reg_down)
        check_image_size("Reg-GAN", image_size, multiple=max(4, 2**levels), minimum=2 * 2**levels)
        self.lambda_corr = lambda_corr
        self.lambda_smooth = lambda_smooth
        self.lambda_adv = lambda_adv
        self.lr = lr
        self.generator = ResnetGenerator(in_channels, 1, ngf, n_res_blocks)
        self.discriminator = ImageDiscriminator(1, ndf)
        self.registration = RegistrationNet(2, reg_down, reg_up, reg_bottleneck_blocks)
        self.transformer = SpatialTransformer()
        init_normal(self.generator)
        init_normal(self.discriminator)

    def optimizers(self) -> dict[str, OptimizerSpec]:
        g_and_r = list(self.generator.parameters()) + list(self.registration.parameters())
        return {
            "G": OptimizerSpec(g_and_r, lr=self.lr),
            "D": OptimizerSpec(list(self.discriminator.parameters()), lr=self.lr),
        }

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        src = to_signed(batch["source"])
        real = to_signed(batch["target"])
        # generator + registration network, jointly
        self.discriminator.requires_grad_(False)
        with ctx.autocast():
            fake = self.generator(src)
            flow = self.registration(fake, real)
            registered = self.transformer(fake, flow)
            corr = F.l1_loss(registered.float(), real)
            smooth = smoothness_loss(flow)
            adv = lsgan_loss(self.discriminator(fake), True)
            loss_g = self.lambda_corr * corr + self.lambda_smooth * smooth + self.lambda_adv * adv
        ctx.optimize("G", loss_g)
        self.discriminator.requires_grad_(True)
        # discriminator on the updated generator's output
        with ctx.autocast():
            with torch.no_grad():
                fake = self.generator(src)
            loss_d = self.lambda_adv * (lsgan_loss(self.discriminator(fake), False) + lsgan_loss(self.discriminator(real), True))
        ctx.optimize("D", loss_d)
        return {
            "loss_G_corr": corr.detach(),
            "loss_G_smooth": smooth.detach(),
            "loss_G_adv": adv.detach(),
            "loss_D": loss_d.detach(),
            "flow_abs_mean": flow.detach().abs().mean(),
        }


def build(size: str = "tiny", in_channels: int = 1, image_size: int = 64, **options: object) -> RegGAN:
    """Registry builder: Reg-GAN at preset ``size`` (see :data:`PRESETS`) for ``image_size``^2 inputs."""
    if size not in PRESETS:
        raise ConfigError(f"unknown size {size!r}: use one of {', '.join(PRESETS)}")
    kwargs: dict[str, object] = dict(PRESETS[size])
    kwargs.update(options)
    return RegGAN(in_channels=in_channels, image_size=image_size, **kwargs)  # type: ignore[arg-type]
