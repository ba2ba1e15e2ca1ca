"""pix2pix (Isola et al., CVPR 2017): U-Net generator with skips + 70x70 PatchGAN, GAN + 100 * L1.

Faithful to the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py:
``UnetGenerator``, ``UnetSkipConnectionBlock``, ``NLayerDiscriminator``; models/pix2pix_model.py):

- Generator: ``num_downs`` 4x4 stride-2 convolutions (8 at 256^2, i.e. down to 1x1), LeakyReLU 0.2
  on the way down, ReLU + transposed convolutions on the way up, BatchNorm (convolutions before a
  BatchNorm have no bias), skip connections by concatenation, dropout 0.5 in the three decoder
  blocks after the innermost, Tanh output.
- Discriminator: conditional PatchGAN on cat(source, target), ``n_layers`` = 3 gives the 70x70
  receptive field; BatchNorm; raw logits (vanilla GAN loss = BCE with logits).
- Losses and optimisers: G: GAN + ``lambda_l1`` (100) * L1; D: 0.5 * (BCE(real) + BCE(fake));
  Adam lr 2e-4, betas (0.5, 0.999); weights ~ N(0, 0.02).
- Learning rate: the reference's default ``--lr_policy linear`` (``n_epochs`` = ``n_epochs_decay``
  = 100): constant for the first half of training, then linear to zero
  (``lr_policy="linear_decay"``, the default; ``"constant"`` keeps it fixed).

Size presets: ``paper`` = ngf 64, ndf 64, n_layers_D 3, num_downs = log2(image_size) (8 at 256^2);
``small`` = 32/32/3; ``tiny`` = 16/16/2 with num_downs = log2(image_size) - 1 (4x4 bottleneck).

One choice differs from the reference test script, which keeps BatchNorm and dropout in training
mode at test time by default: robustmri evaluates in eval mode (running statistics, no dropout) so
every number is deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustmri.errors import ConfigError
from robustmri.models.base import Batch, OptimizerSpec, SignedGeneratorModel, StepContext, init_normal, to_signed

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"ngf": 16, "ndf": 16, "n_layers_d": 2, "downs_below_max": 1},
    "small": {"ngf": 32, "ndf": 32, "n_layers_d": 3, "downs_below_max": 0},
    "paper": {"ngf": 64, "ndf": 64, "n_layers_d": 3, "downs_below_max": 0},
}


class UnetBlock(nn.Module):
    """One U-Net level: down(x) -> submodule -> up, with the input concatenated to the output."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = nn.BatchNorm2d(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = nn.BatchNorm2d(outer_nc)
        layers: list[nn.Module]
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]  # type: ignore[list-item]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]  # type: ignore[list-item]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` downsamplings; input (B, input_nc, H, W) in [-1, 1], output Tanh."""

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64, use_dropout: bool = True) -> None:
        super().__init__()
        if num_downs < 5:
            raise ConfigError(f"pix2pix U-Net needs at least 5 downsamplings, got {num_downs}")
        block = UnetBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout)
        block = UnetBlock(ngf * 4, ngf * 8, submodule=block)
        block = UnetBlock(ngf * 2, ngf * 4, submodule=block)
        block = UnetBlock(ngf, ngf * 2, submodule=block)
        self.model = UnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 convs, one stride-1 conv, then a 1-channel logit map."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def gan_loss(logits: Tensor, real: bool) -> Tensor:
    """Vanilla GAN loss: BCE with logits against an all-ones (real) or all-zeros (fake) map."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


class Pix2Pix(SignedGeneratorModel):
    """pix2pix translation model (see the module docstring); I/O in [0, 1], networks in [-1, 1]."""

    name = "pix2pix"

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 256,
        ngf: int = 64,
        ndf: int = 64,
        n_layers_d: int = 3,
        num_downs: int | None = None,
        lambda_l1: float = 100.0,
        lr: float = 2e-4,
        use_dropout: bool = True,
        lr_policy: str = "linear_decay",
    ) -> None:
        super().__init__(in_channels, image_size)
        if lr_policy not in ("linear_decay", "constant"):
            raise ConfigError(f"unknown lr_policy {lr_policy!r}: use linear_decay (pix2pix's default) or constant")
        self.lr_policy = lr_policy
        if num_downs is None:
            num_downs = int(math.log2(image_size))
        if image_size % (2**num_downs) != 0:
            raise ConfigError(
                f"pix2pix with {num_downs} downsamplings needs an image size divisible by {2**num_downs}, "
                f"got {image_size}: use a size such as 64, 128 or 256"
            )
        self.lambda_l1 = lambda_l1
        self.lr = lr
        self.generator = UnetGenerator(in_channels, 1, num_downs, ngf, use_dropout=use_dropout)
        self.discriminator = PatchDiscriminator(in_channels + 1, ndf, n_layers_d)
        init_normal(self.generator)
        init_normal(self.discriminator)

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {
            "D": OptimizerSpec(list(self.discriminator.parameters()), lr=self.lr, schedule=self.lr_policy),
            "G": OptimizerSpec(list(self.generator.parameters()), lr=self.lr, schedule=self.lr_policy),
        }

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        src = to_signed(batch["source"])
        real = to_signed(batch["target"])
        with ctx.autocast():
            fake = self.generator(src)
            # discriminator: real pairs vs generated pairs (generator detached)
            self.discriminator.requires_grad_(True)
            d_real = self.discriminator(torch.cat([src, real], 1))
            d_fake = self.discriminator(torch.cat([src, fake.detach()], 1))
            loss_d = 0.5 * (gan_loss(d_real.float(), True) + gan_loss(d_fake.float(), False))
        ctx.optimize("D", loss_d)
        with ctx.autocast():
            self.discriminator.requires_grad_(False)
            g_adv = gan_loss(self.discriminator(torch.cat([src, fake], 1)).float(), True)
            l1 = F.l1_loss(fake.float(), real)
            loss_g = g_adv + self.lambda_l1 * l1
        ctx.optimize("G", loss_g)
        self.discriminator.requires_grad_(True)
        return {"loss_D": loss_d.detach(), "loss_G_gan": g_adv.detach(), "loss_G_l1": l1.detach()}


def build(size: str = "tiny", in_channels: int = 1, image_size: int = 64, **options: object) -> Pix2Pix:
    """Registry builder: pix2pix at preset ``size`` (see :data:`PRESETS`) for ``image_size``^2 inputs."""
    if size not in PRESETS:
        raise ConfigError(f"unknown size {size!r}: use one of {', '.join(PRESETS)}")
    preset = PRESETS[size]
    smallest = 2 ** (5 + preset["downs_below_max"])  # the U-Net has at least 5 downsamplings
    if image_size < smallest or image_size & (image_size - 1):
        raise ConfigError(
            f"pix2pix ({size}) needs a power-of-two image size >= {smallest}, got {image_size}: "
            f"use {smallest}, {2 * smallest} or {4 * smallest}"
        )
    num_downs = int(math.log2(image_size)) - preset["downs_below_max"]
    kwargs: dict[str, object] = {
        "ngf": preset["ngf"],
        "ndf": preset["ndf"],
        "n_layers_d": preset["n_layers_d"],
        "num_downs": num_downs,
    }
    kwargs.update(options)
    return Pix2Pix(in_channels=in_channels, image_size=image_size, **kwargs)  # type: ignore[arg-type]
