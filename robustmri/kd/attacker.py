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

That estimate, from the loss alone, is nearly orthogonal to the true gradient at a useful budget
(cosine 0.03 with 4 queries on a 64^2 image: 4096 unknowns, 2 numbers). The default estimate,
:func:`local_gradient`, uses the generator's *output images* (still no gradient of G: a score-based
black-box attack, as Square's): the loss's gradient with respect to the output, ``v``, is known to
the attacker (it holds the target), so only the Jacobian ``J`` of G is unknown, and
``d loss / d input = J^T v``. A translation network is local: ``J`` is concentrated near its
diagonal. With Rademacher ``u`` and ``Ju ~ (G(x + c u) - G(x)) / c``, ``u * v * Ju`` estimates
``diag(J) * v`` per pixel from ONE query, and smoothing it over a pixel or two (the true gradient
is smooth at that scale: cosine 0.87 with its own 3x3 average) recovers much of ``J^T v``.
``benchmarks/attacker_cosine.py`` measures both against autograd.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from robustmri.errors import ConfigError
from robustmri.perturb.image import gaussian_blur


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


def _rademacher_like(x: Tensor) -> Tensor:
    return torch.randint(0, 2, x.shape, device=x.device).to(x.dtype) * 2 - 1


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


def local_gradient(
    generate: Callable[[Tensor], Tensor],
    output_loss: Callable[[Tensor], Tensor],
    x: Tensor,
    delta: Tensor,
    c: float,
    samples: int,
    mask: Tensor | None = None,
    sigma_px: float = 1.0,
) -> Tensor:
    """Estimate of ``d output_loss(generate(x + delta)) / d delta`` from ``samples + 1`` queries of
    the generator's output, without any gradient of ``generate``.

    ``generate(x') -> (B, C, H, W)`` is only ever *called*; ``output_loss(out) -> (B,)`` is the
    attacker's own loss of an output (e.g. per-image L1 to the target it holds): its gradient ``v``
    with respect to the output is taken by autograd on the loss alone. With ``out = generate(x +
    delta)`` and, per sample, a Rademacher ``u`` (inside ``mask``) from the global torch RNG and
    ``Ju = (generate(x + delta + c u) - out) / c``, the estimate is
    ``smooth(mean_u(u * v * Ju), sigma_px) * mask``: the diagonal of the Jacobian times ``v``,
    smoothed (module docstring); ``u`` is shaped like ``delta`` (B, C_in, H, W) and ``v * Ju`` is
    summed over the output channels. Query points are clamped to [0, 1]. Returns a tensor shaped like
    ``delta``.
    """
    if samples < 1:
        raise ConfigError(f"local gradient samples must be >= 1, got {samples}")
    if sigma_px < 0:
        raise ConfigError(f"local gradient sigma_px must be >= 0 (pixels), got {sigma_px}")
    base = x + delta
    with torch.no_grad():
        out = generate(base.clamp(0.0, 1.0)).float()
    with torch.enable_grad():
        o = out.detach().requires_grad_(True)
        (v,) = torch.autograd.grad(output_loss(o).sum(), o)
    grad = torch.zeros_like(delta, dtype=out.dtype)
    with torch.no_grad():
        for _ in range(samples):
            u = _rademacher_like(grad)
            if mask is not None:
                u = u * mask.to(u.dtype)
            ju = (generate((base + c * u).clamp(0.0, 1.0)).float() - out) / c
            grad += u * (v * ju).sum(1, keepdim=True)  # several input channels: each pixel's channels share it
        grad = grad / samples
        if sigma_px > 0:  # the corruption library's blur: scipy's gaussian_filter (reflected edges, 4 sigma)
            grad = gaussian_blur(grad, float(sigma_px))
        if mask is not None:
            grad = grad * mask.to(grad.dtype)
    return grad.to(delta.dtype)


ATTACKER_UPDATES = ("step", "linear")


def ascent_step(delta: Tensor, grad: Tensor, eps: float, step: float = 1.0, mask: Tensor | None = None) -> Tensor:
    """One projected sign-ascent step from ``delta``: ``clamp(delta + step * eps * sign(grad), -eps,
    eps) * mask`` (B, C, H, W), without gradient."""
    out = (delta.detach() + step * eps * grad.sign()).clamp(-eps, eps)
    return out * mask.to(out.dtype) if mask is not None else out


def attacker_loss(delta: Tensor, grad: Tensor, eps: float, mask: Tensor | None = None, update: str = "step", step: float = 1.0) -> Tensor:
    """The loss the attacker network minimises, given its output ``delta`` (B, C, H, W; with
    gradient) and an estimate ``grad`` of d loss / d delta (no gradient).

    ``"step"`` (default): regression onto :func:`ascent_step` from its own output (``step`` x eps),
    ``sum (delta - target)^2 / eps^2`` per image, averaged: the network learns the expected ascent
    step given the image, and a noisy estimate averages out across batches instead of pushing the
    network anywhere. ``"linear"``: ``-sum grad * delta`` (the surrogate whose gradient is the
    estimate): unbounded, so it drives ``tanh`` to saturation within a few hundred steps, where the
    network stops learning (``benchmarks/attacker_cosine.py``, part 2).
    """
    if update not in ATTACKER_UPDATES:
        raise ConfigError(f"unknown attacker update {update!r}: use one of {', '.join(ATTACKER_UPDATES)}")
    if update == "linear":
        return -(grad * delta).flatten(1).sum(1).mean()
    target = ascent_step(delta, grad, eps, step, mask)
    return ((delta - target) ** 2).flatten(1).sum(1).mean() / eps**2
