"""The attack module of KD+attack: a learned, norm-bounded, black-box attacker placed before the generator.

``GenerativeAttacker`` maps a source batch to a perturbation ``delta = eps * tanh(A(x))`` (optionally
restricted to the brain mask), so ``||delta||_inf <= eps`` by construction, in normalised intensity
units (the images are in [0, 1]). It is trained to *maximise* the generator's L1 error
``mean |G(x + delta) - y|`` while the generator learns to resist it.

"Black-box" is taken literally (an inferred reading of the paper's abstract): the attacker never
receives gradients from the generator. The gradient of the generator's loss with respect to
``delta`` is estimated from loss *queries* only, by simultaneous-perturbation stochastic
approximation (SPSA, Spall 1992): with Rademacher directions ``u`` and step ``c``,
``g ~ (L(delta + c u) - L(delta - c u)) / (2c) * u``, averaged over ``spsa_samples`` directions. The
estimate is pushed into the attacker's weights through ``delta`` (``-(g * delta).sum()`` is the
surrogate loss the optimiser minimises). Each training step costs ``2 * spsa_samples`` generator
forward passes and no generator backward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from robustmri.errors import ConfigError


class GenerativeAttacker(nn.Module):
    """``x (B, C, H, W) in [0, 1] -> delta (B, C, H, W)`` with ``|delta| <= eps`` everywhere.

    A plain convolutional network (``depth`` 3x3 conv + LeakyReLU layers of ``width`` channels, then a
    3x3 conv to C channels) followed by ``eps * tanh``. The last layer starts at zero weights, so the
    first perturbations are zero and grow as the attacker learns.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, depth: int = 3, eps: float = 0.03, use_mask: bool = True) -> None:
        super().__init__()
        if eps <= 0:
            raise ConfigError(f"attacker eps must be > 0, got {eps}")
        if depth < 1 or width < 1:
            raise ConfigError(f"attacker depth and width must be >= 1, got {depth} and {width}")
        layers: list[nn.Module] = []
        ch = in_channels
        for _ in range(depth):
            layers += [nn.Conv2d(ch, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            ch = width
        last = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.eps = float(eps)
        self.use_mask = use_mask

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        delta = self.eps * torch.tanh(self.net(x))
        if self.use_mask and mask is not None:
            delta = delta * mask.to(delta.dtype)
        return delta


def per_image_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error per image: (B, 1, H, W) x 2 -> (B,)."""
    return (pred - target).abs().flatten(1).mean(1)


@torch.no_grad()
def spsa_gradient(
    loss_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    delta: Tensor,
    c: float,
    samples: int,
    mask: Tensor | None = None,
    basis: int = 0,
) -> Tensor:
    """SPSA estimate of ``d loss / d delta`` at ``delta``, from ``2 * samples`` loss queries.

    ``loss_fn(x_perturbed) -> (B,)`` is only ever *called* (no gradients). ``x`` and ``delta`` are
    (B, C, H, W); the query points are clamped to [0, 1]. Directions are Rademacher, drawn from the
    global torch RNG (checkpointed by the training engine): one per pixel (``basis=0``), or, with
    ``basis=k``, on a k x k grid upsampled bilinearly to H x W, i.e. the estimate of the gradient's
    part in a k^2-dimensional space of smooth perturbations (fewer dimensions to explore with the
    same queries; ``benchmarks/attacker_cosine.py`` measures what each choice recovers). Returns a
    tensor shaped like ``delta``.
    """
    if basis < 0:
        raise ConfigError(f"spsa basis must be 0 (per pixel) or a grid size k > 0, got {basis}")
    grad = torch.zeros_like(delta)
    b, ch, h, w = delta.shape
    for _ in range(samples):
        if basis:
            coarse = torch.randint(0, 2, (b, ch, basis, basis), device=delta.device).to(delta.dtype) * 2 - 1
            u = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        else:
            u = torch.randint(0, 2, delta.shape, device=delta.device).to(delta.dtype) * 2 - 1
        if mask is not None:
            u = u * mask.to(u.dtype)
        plus = loss_fn((x + delta + c * u).clamp(0.0, 1.0))
        minus = loss_fn((x + delta - c * u).clamp(0.0, 1.0))
        grad += ((plus - minus) / (2.0 * c)).view(-1, 1, 1, 1) * u
    return grad / samples
