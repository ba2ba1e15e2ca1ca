"""Small building blocks shared by the ResViT-like, diffusion and Reg-GAN baselines.

Everything here works on feature maps ``(B, C, H, W)``; nothing knows about intensities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustmri.errors import ConfigError


def norm_2d(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer: ``"batch"`` (BatchNorm, affine), ``"instance"`` (InstanceNorm, no
    affine parameters, as ``nn.InstanceNorm2d``'s default used by CycleGAN/Reg-GAN) or ``"none"``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown normalisation {kind!r}: use 'batch', 'instance' or 'none'")


class ResnetBlock(nn.Module):
    """CycleGAN residual block: ``x + [pad, conv3x3, norm, ReLU, pad, conv3x3, norm](x)``.

    Reflection padding keeps the spatial size; ``(B, dim, H, W) -> (B, dim, H, W)`` (H, W >= 2).
    Parameters: ``2 * (9 * dim^2 + dim * bias)`` plus ``4 * dim`` for BatchNorm.
    """

    def __init__(self, dim: int, norm: str = "instance", bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=bias),
            norm_2d(norm, dim),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_2d(norm, dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def lsgan_loss(prediction: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss: mean squared distance of ``prediction`` to 1 (real) or 0 (fake)."""
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction.float(), target.float())


def check_image_size(model: str, image_size: int, multiple: int, minimum: int) -> None:
    """Raise a one-line :class:`ConfigError` unless ``image_size`` is a multiple of ``multiple`` and
    at least ``minimum`` (the network's depth needs it)."""
    if image_size < minimum or image_size % multiple != 0:
        raise ConfigError(
            f"{model} needs an image size that is a multiple of {multiple} and >= {minimum} for this preset, "
            f"got {image_size}: use e.g. {_smallest_valid(multiple, minimum)} (or a smaller preset)"
        )


def _smallest_valid(multiple: int, minimum: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``minimum``."""
    return -(-minimum // multiple) * multiple
