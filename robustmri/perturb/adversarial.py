"""Adversarial attacks on a translation model ``f: (B, C, H, W) -> (B, 1, H, W)`` (family
``adversarial``).

The attacks maximise ``L(f(x + delta), y_ref)``, ``L`` the per-image mean squared error
(``"mse"``) or mean absolute error (``"l1"``), averaged inside ``loss_mask`` when one is given:

- **the reported error** (what the bench does): ``y_ref`` is the real target and ``loss_mask`` the
  brain mask, so the attack optimises exactly the masked error that PSNR / MAE report;
- **output stability** (``target=None``): ``y_ref`` is the clean output ``f(x)``; this measures
  how far a perturbation moves what the model says, not how wrong it becomes.

``delta`` may cover the whole image (``mask=None``, the default), as a scanner-side perturbation
would. Threat models (all epsilons in *normalised* intensity units, i.e. fractions of the data
range):

- ``random_linf``: a control, not an attack: random +-eps signs per pixel (the same L-inf norm as
  the attacks, no model). An attack that does not beat it is not an attack.
- ``fgsm_linf`` / ``fgsm_l2``: one gradient step from a random start (Wong et al. 2020). The
  random start matters for the stability objective: at ``delta = 0`` the MSE to the clean output
  is at its minimum and its gradient is exactly zero.
- ``pgd_linf`` / ``pgd_l2``: APGD (Croce & Hein 2020): projected gradient ascent with momentum
  0.75 and a step size that starts at 2 eps and halves at checkpoints where progress stalls,
  ``steps`` iterations from each of ``restarts`` random starts; the per-image best iterate over
  all restarts is returned. L2 budgets are an RMS per pixel ``eps``; the L2 radius is
  ``eps * sqrt(C * H * W)`` (so a severity means the same at every image size).
- ``square_linf``: black-box, query-only random search (Square attack, Andriushchenko et al. 2020)
  with a per-severity query budget; runs entirely under :func:`torch.no_grad`, so any model,
  diffusion samplers included, is attacked on equal footing.

Expectation over transformation (EOT) for stochastic models: each loss evaluation averages
``eot_samples`` model calls. A model that takes ``generator=`` (``AttackContext.seeded``) gets,
for call ``j``, a child of the attack's random source (with a
:class:`~robustmri.rng.KeyedStream`, one stream per image, so an image's attack does not depend on
its batch); any other model runs call ``j`` under :func:`torch.random.fork_rng` with a seed drawn
from the attack's generator, so its global-RNG sampling is reproducible and the caller's RNG state
is left untouched.

Random sources: every draw (starts, restarts, Square's squares, EOT noise) comes from the
``generator`` argument, a :class:`torch.Generator`, an int seed or a keyed stream; every draw
has the batch as its first dimension.

Why not torchattacks: its attacks hard-code ``CrossEntropyLoss``; with an image output that loss is
constant (one output channel) and the gradient is zero, so e.g. ``torchattacks.PGD`` silently
returns only its random start (tests/test_perturb_adversarial.py demonstrates it). ``UPGD`` accepts
a loss callable but clamps to [0, 1], has no L2 variant, no mask, and draws its random start from
the global RNG; it serves as a reference implementation in the tests instead (same iterates as our
L-inf PGD without random start).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from robustmri.errors import ConfigError, DataError
from robustmri.perturb.base import (
    PERTURBATIONS,
    Params,
    Perturbation,
    check_range,
    check_severity,
    make_generator,
    rand,
    randn,
    register,
)
from robustmri.rng import KeyedStream, RandomSource

Model = Callable[[torch.Tensor], torch.Tensor]
LossName = Literal["mse", "l1"]
Norm = Literal["linf", "l2"]


@dataclass
class AttackContext:
    """What an attack needs besides the images.

    model: the translation model, called as ``model(x)`` with x (B, C, H, W) in the data range and
        returning (B, 1, H, W) (or any shape matching ``target``). Put it in eval mode yourself.
    target: the reference (B, 1, H, W) the error is measured against: the real target to attack
        the reported error; None = the clean output f(x) (output stability).
    loss: "mse" or "l1", the per-image error that is maximised.
    eot_samples: model calls averaged per loss evaluation (>1 for stochastic models).
    loss_mask: optional bool (B, 1, H, W): the error is averaged over these pixels only (the brain
        mask the metrics use); None = every output pixel.
    seeded: True when ``model`` takes ``generator=`` (a torch generator or a
        :class:`~robustmri.rng.KeyedStream`) as its only source of randomness (a stochastic
        :class:`~robustmri.models.base.TranslationModel`); each EOT call then gets its own draw,
        per image when the attack's generator is a keyed stream. False: each call runs under a
        seeded global RNG.
    """

    model: Model
    target: torch.Tensor | None = None
    loss: LossName = "mse"
    eot_samples: int = 1
    loss_mask: torch.Tensor | None = None
    seeded: bool = False

    def __post_init__(self) -> None:
        if not callable(self.model):
            raise ConfigError(f"AttackContext.model must be callable, got {type(self.model).__name__}")
        if self.loss not in ("mse", "l1"):
            raise ConfigError(f"attack loss={self.loss!r} is unknown; use 'mse' or 'l1'")
        if int(self.eot_samples) < 1:
            raise ConfigError(f"eot_samples={self.eot_samples!r} must be >= 1")


def per_image_loss(
    out: torch.Tensor, ref: torch.Tensor, loss: LossName, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared (``"mse"``) or absolute (``"l1"``) difference per image (B,), averaged over the
    pixels of ``mask`` (bool, broadcastable to ``out``) when given, else over every pixel."""
    d = out - ref
    val = d * d if loss == "mse" else d.abs()
    if mask is None:
        return val.flatten(1).mean(dim=1)
    m = mask.to(device=val.device, dtype=val.dtype).expand_as(val)
    return (val * m).flatten(1).sum(dim=1) / m.flatten(1).sum(dim=1).clamp(min=1.0)


def _seeds(generator: RandomSource, k: int) -> list[int | KeyedStream]:
    """The noise of ``k`` EOT model calls: int seeds from a torch generator, or one child stream
    per row from a :class:`~robustmri.rng.KeyedStream` (an image's EOT draws then do not depend on
    its batch)."""
    if isinstance(generator, KeyedStream):
        return [generator.spawn() for _ in range(k)]
    return [int(v) for v in torch.randint(0, 2**62, (k,), generator=generator, device=generator.device)]


def _call_model(ctx: AttackContext, x: torch.Tensor, seed: int | KeyedStream) -> torch.Tensor:
    if ctx.seeded:
        if isinstance(seed, KeyedStream):
            return ctx.model(x, generator=seed)  # type: ignore[call-arg]
        return ctx.model(x, generator=torch.Generator(device=x.device).manual_seed(seed))  # type: ignore[call-arg]
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the caller's RNG state is restored afterwards
        if isinstance(seed, int):
            torch.manual_seed(seed)
        elif ctx.eot_samples > 1:  # EOT over a global-RNG model: seed each call from the first row's key
            torch.manual_seed(int(seed.keys[0]) & 0x7FFF_FFFF_FFFF_FFFF)
        # else (one call per loss, keyed stream): the caller's RNG state as it is, with no host read
        return ctx.model(x)


def expected_loss(
    ctx: AttackContext, x_adv: torch.Tensor, ref: torch.Tensor, generator: RandomSource
) -> torch.Tensor:
    """EOT estimate of the per-image loss (B,): mean over ``ctx.eot_samples`` seeded model calls."""
    total = None
    for seed in _seeds(generator, ctx.eot_samples):
        val = per_image_loss(_call_model(ctx, x_adv, seed), ref, ctx.loss, ctx.loss_mask)
        total = val if total is None else total + val
    assert total is not None
    return total / ctx.eot_samples


def reference_output(ctx: AttackContext, x: torch.Tensor, generator: RandomSource) -> torch.Tensor:
    """``ctx.target`` or the clean output f(x) (EOT mean over ``ctx.eot_samples`` calls), detached."""
    if ctx.target is not None:
        return ctx.target.detach().to(x.device)
    with torch.no_grad():
        outs = [_call_model(ctx, x, s) for s in _seeds(generator, ctx.eot_samples)]
    return torch.stack(outs).mean(dim=0).detach()


def distortion_gradient(
    ctx: AttackContext, x_adv: torch.Tensor, ref: torch.Tensor, generator: RandomSource
) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of the summed per-image EOT loss w.r.t. ``x_adv``, per-image loss (B,))."""
    xa = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = expected_loss(ctx, xa, ref, generator)
        (grad,) = torch.autograd.grad(loss.sum(), xa)
    return grad.detach(), loss.detach()


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def _l2(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1)


def _project(delta: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _l2(delta)
    scale = torch.clamp(eps / (n + 1e-12), max=1.0)
    return delta * _bcast(scale, delta)


def gradient_attack(
    ctx: AttackContext,
    x: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    norm: Norm = "linf",
    random_start: bool = True,
    mask: torch.Tensor | None = None,
    generator: RandomSource | int | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
    keep_best: bool = True,
) -> torch.Tensor:
    """White-box FGSM/PGD on ``x`` (B, C, H, W); returns the adversarial input (same shape).

    ``eps`` and ``alpha`` (step size) are in normalised units: L-inf per pixel, or for ``"l2"``
    RMS per pixel (the L2 radius is ``eps * sqrt(C*H*W)``). ``steps=1`` with ``alpha=1.25*eps`` is
    FGSM with a random start. ``mask`` (B, 1, H, W) bool confines the perturbation. The per-image
    best iterate (highest loss) is returned (``keep_best=False``: the last iterate, as plain PGD);
    every iterate is clamped to ``data_range``.
    """
    lo, hi = check_range(data_range)
    gen = make_generator(generator)
    x = x.detach()
    scale = (hi - lo) * (math.sqrt(x[0].numel()) if norm == "l2" else 1.0)
    eps_a, alpha_a = eps * scale, alpha * scale
    m = None if mask is None else mask.to(device=x.device, dtype=x.dtype)
    ref = reference_output(ctx, x, gen)

    def constrain(delta: torch.Tensor) -> torch.Tensor:
        if m is not None:
            delta = delta * m
        delta = _project(delta, eps_a, norm)
        return (x + delta).clamp(lo, hi) - x

    if not random_start:
        delta = torch.zeros_like(x)
    elif norm == "linf":
        delta = (2.0 * rand(tuple(x.shape), gen, x.device) - 1.0) * eps_a
    else:
        d = randn(tuple(x.shape), gen, x.device)
        if m is not None:
            d = d * m
        r = rand((x.shape[0],), gen, x.device)
        delta = d / _bcast(_l2(d) + 1e-12, d) * _bcast(r, d) * eps_a
    delta = constrain(delta.to(x.dtype))

    best = x + delta
    best_loss = torch.full((x.shape[0],), -math.inf, device=x.device)
    for _ in range(int(steps)):
        grad, loss = distortion_gradient(ctx, x + delta, ref, gen)
        improved = loss > best_loss
        best = torch.where(_bcast(improved, x), x + delta, best)
        best_loss = torch.where(improved, loss, best_loss)
        if norm == "linf":
            step = grad.sign()
        else:
            step = grad / _bcast(_l2(grad) + 1e-12, grad)
        delta = constrain(delta + alpha_a * step)
    if not keep_best:
        return (x + delta).detach()
    with torch.no_grad():
        loss = expected_loss(ctx, x + delta, ref, gen)
    improved = loss > best_loss
    return torch.where(_bcast(improved, x), x + delta, best).detach()


def apgd_checkpoints(steps: int) -> list[int]:
    """APGD's checkpoints: the numbers of steps after which the step size is checked, as the
    reference implementation computes them (Croce & Hein's auto-attack ``apgd``, torchattacks'
    ``APGD``): the first after ``max(int(0.22 * steps), 1)`` steps, then intervals shrinking by
    ``max(int(0.03 * steps), 1)`` down to ``max(int(0.06 * steps), 1)`` (the paper's
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` in whole steps)."""
    steps = int(steps)
    length, shortest, shrink = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    out, at = [], 0
    while at + length <= steps:
        at += length
        out.append(at)
        length = max(length - shrink, shortest)
    return out


def apgd_attack(
    ctx: AttackContext,
    x: torch.Tensor,
    eps: float,
    steps: int,
    norm: Norm = "linf",
    restarts: int = 1,
    mask: torch.Tensor | None = None,
    generator: RandomSource | int | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
    rho: float = 0.75,
    momentum: float = 0.75,
) -> torch.Tensor:
    """White-box APGD (Croce & Hein 2020) on ``x`` (B, C, H, W); returns the adversarial input.

    Step for step the reference implementation (auto-attack's ``apgd``, torchattacks' ``APGD``;
    tested against torchattacks in tests/test_references.py), with our per-image distortion as the
    loss. Each of ``restarts`` runs starts at a random point of the ball's surface (L-inf:
    ``eps * t / max|t|`` for t uniform in [-1, 1]; L2: ``eps * t / ||t||`` for t normal), takes a
    first step without momentum and then ``steps - 1`` steps with momentum ``momentum``, from a
    per-image step size of 2 eps. At each of :func:`apgd_checkpoints` the step size halves (and
    the iterate and its gradient go back to the best point) where at most ``rho`` of the steps in
    the last interval increased the loss, or where it was not halved at the previous checkpoint
    and the best loss did not improve since. As in the reference, the first interval's first
    comparison is against 0 (its ``loss_steps[-1]``), the momentum term after a reset points from
    the previous iterate to the best point, and the per-image best point over all runs is returned.
    ``eps`` as in :func:`gradient_attack`; ``mask`` (B, 1, H, W) confines ``delta`` (None: the
    whole image). Cost: ``restarts * (steps + 1)`` loss gradients (each ``ctx.eot_samples`` calls).
    """
    lo, hi = check_range(data_range)
    gen = make_generator(generator)
    x = x.detach()
    b = x.shape[0]
    steps = int(steps)
    eps_a = eps * (hi - lo) * (math.sqrt(x[0].numel()) if norm == "l2" else 1.0)
    m = None if mask is None else mask.to(device=x.device, dtype=x.dtype)
    ref = reference_output(ctx, x, gen)
    first = max(int(0.22 * steps), 1)
    shortest, shrink = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)

    def project(point: torch.Tensor) -> torch.Tensor:
        delta = point - x
        if m is not None:
            delta = delta * m
        delta = _project(delta, eps_a, norm)
        return (x + delta).clamp(lo, hi)

    def direction(grad: torch.Tensor) -> torch.Tensor:
        if norm == "linf":
            return grad.sign()
        return grad / _bcast(_l2(grad) + 1e-12, grad)

    overall, overall_loss = x.clone(), torch.full((b,), -math.inf, device=x.device)
    for _ in range(max(1, int(restarts))):
        if norm == "linf":
            t = 2.0 * rand(tuple(x.shape), gen, x.device) - 1.0
            start = t / _bcast(t.flatten(1).abs().amax(dim=1), t) * eps_a
        else:
            t = randn(tuple(x.shape), gen, x.device)
            start = t / _bcast(_l2(t) + 1e-12, t) * eps_a
        x_k = project(x + start.to(x.dtype))
        grad, loss = distortion_gradient(ctx, x_k, ref, gen)
        best, best_loss, best_grad = x_k.clone(), loss.clone(), grad.clone()
        eta = torch.full((b,), 2.0 * eps_a, device=x.device, dtype=x.dtype)
        x_prev = x_k
        loss_steps = torch.zeros(max(steps, 1), b, device=x.device, dtype=loss.dtype)
        length, since = first, 0
        reduced_last = torch.ones(b, dtype=torch.bool, device=x.device)
        best_last = best_loss.clone()
        for i in range(steps):
            a = momentum if i > 0 else 1.0
            z = project(x_k + _bcast(eta, x) * direction(grad))
            x_next = project(x_k + a * (z - x_k) + (1.0 - a) * (x_k - x_prev))
            x_prev, x_k = x_k, x_next
            grad, loss = distortion_gradient(ctx, x_k, ref, gen)
            loss_steps[i] = loss
            improved = loss > best_loss
            best = torch.where(_bcast(improved, x), x_k, best)
            best_grad = torch.where(_bcast(improved, x), grad, best_grad)
            best_loss = torch.where(improved, loss, best_loss)
            since += 1
            if since == length:
                rows = torch.arange(i, i - length, -1, device=x.device)
                increases = (loss_steps[rows] > loss_steps[rows - 1]).sum(dim=0)  # rows - 1 = -1 reads the last row, as the reference
                oscillating = increases <= length * rho
                unchanged = ~reduced_last & (best_last >= best_loss)
                reduce = oscillating | unchanged
                reduced_last, best_last = reduce, best_loss.clone()
                eta = torch.where(reduce, eta / 2.0, eta)
                x_k = torch.where(_bcast(reduce, x), best, x_k)
                grad = torch.where(_bcast(reduce, x), best_grad, grad)
                since, length = 0, max(length - shrink, shortest)
        better = best_loss > overall_loss
        overall = torch.where(_bcast(better, x), best, overall)
        overall_loss = torch.where(better, best_loss, overall_loss)
    return overall.detach()


def _square_fraction(p_init: float, it: int, n_iters: int) -> float:
    """Square-attack schedule: the square's area fraction halves at fixed points of the budget."""
    it = int(it / n_iters * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256)):
        if it <= bound:
            return p_init / div
    return p_init / 512


@torch.no_grad()
def square_attack(
    ctx: AttackContext,
    x: torch.Tensor,
    eps: float,
    queries: int,
    p_init: float = 0.05,
    mask: torch.Tensor | None = None,
    generator: RandomSource | int | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Black-box L-inf random search (Square attack) maximising the output distortion.

    ``queries`` loss evaluations (each ``ctx.eot_samples`` model calls; the clean reference adds
    one more): vertical-stripe initialisation at +-eps, then each query proposes a random square
    (side ``sqrt(p * H * W)`` pixels, ``p`` halving on the Square-attack schedule) set to +-eps per
    channel, accepted per image when the loss increases. No gradient is ever computed.
    """
    lo, hi = check_range(data_range)
    gen = make_generator(generator)
    b, c, h, w = x.shape
    eps_a = eps * (hi - lo)
    m = None if mask is None else mask.to(device=x.device, dtype=x.dtype)
    ref = reference_output(ctx, x, gen)

    def constrain(delta: torch.Tensor) -> torch.Tensor:
        if m is not None:
            delta = delta * m
        return (x + delta).clamp(lo, hi) - x

    signs = torch.where(rand((b, c, 1, w), gen, x.device) < 0.5, -1.0, 1.0).to(x.dtype)
    delta = constrain(signs.expand(b, c, h, w) * eps_a)
    best_loss = expected_loss(ctx, x + delta, ref, gen)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    for i in range(1, int(queries)):
        p = _square_fraction(p_init, i, int(queries))
        side = int(min(max(round(math.sqrt(p * h * w)), 1), h - 1, w - 1))
        r0 = torch.floor(rand((b,), gen, x.device) * (h - side + 1)).long().view(b, 1, 1, 1)
        c0 = torch.floor(rand((b,), gen, x.device) * (w - side + 1)).long().view(b, 1, 1, 1)
        window = (rows >= r0) & (rows < r0 + side) & (cols >= c0) & (cols < c0 + side)
        new_sign = torch.where(rand((b, c, 1, 1), gen, x.device) < 0.5, -1.0, 1.0).to(x.dtype)
        cand = constrain(torch.where(window, new_sign * eps_a, delta))
        loss = expected_loss(ctx, x + cand, ref, gen)
        better = loss > best_loss
        delta = torch.where(_bcast(better, x), cand, delta)
        best_loss = torch.where(better, loss, best_loss)
    return (x + delta).detach()


# --------------------------------------------------------------------------------------------------
# Registered attacks


class Attack(Perturbation):
    """Base of the registered attacks: call ``p(x, severity, context=AttackContext(model))``.

    Unlike corruptions, ``x`` may have C >= 1 input channels (the model's input).
    """

    family = "adversarial"
    needs_model = True
    stochastic = True

    def __call__(  # type: ignore[override]
        self,
        x: torch.Tensor,
        severity: int,
        mask: torch.Tensor | None = None,
        generator: RandomSource | int | None = None,
        data_range: tuple[float, float] = (0.0, 1.0),
        context: AttackContext | None = None,
        budget: Mapping[str, int] | None = None,
    ) -> torch.Tensor:
        """``budget`` overrides the severity table's budget parameters (:data:`BUDGET_KEYS`, e.g.
        ``{"queries": 100}``) at every severity; the radius ``eps`` is what a severity means and stays."""
        sev = check_severity(severity)
        if sev == 0:
            return x.clone()
        return self.run(x, {**self.params(sev), **check_budget(self.name, budget)}, mask=mask, generator=generator,
                        data_range=data_range, context=context)

    def run(  # type: ignore[override]
        self,
        x: torch.Tensor,
        params: Params,
        mask: torch.Tensor | None = None,
        generator: RandomSource | int | None = None,
        data_range: tuple[float, float] = (0.0, 1.0),
        context: AttackContext | None = None,
    ) -> torch.Tensor:
        if context is None:
            raise ConfigError(f"perturbation {self.name!r} is an attack and needs context=AttackContext(model)")
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            raise DataError(f"attack input must be a float tensor (B, C, H, W), got {getattr(x, 'shape', type(x))}")
        if mask is not None and (mask.ndim != 4 or mask.shape[0] != x.shape[0] or mask.shape[1] != 1 or mask.shape[2:] != x.shape[2:]):
            raise DataError(f"attack mask has shape {tuple(mask.shape)}; pass (B, 1, H, W) matching x {tuple(x.shape)}")
        return self.attack(context, x, mask=mask, generator=generator, data_range=data_range, **params)

    def attack(self, ctx: AttackContext, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError


BUDGET_KEYS: tuple[str, ...] = ("steps", "restarts", "queries")
"""Severity-table parameters that set an attack's compute budget (not its radius)."""


def check_budget(name: str, budget: Mapping[str, int] | None) -> dict[str, int]:
    """Validate a budget override for attack ``name``: keys among its own budget parameters,
    positive integers."""
    if not budget:
        return {}
    cls = PERTURBATIONS.get(name)
    own = sorted(k for k in BUDGET_KEYS if cls is not None and any(k in p for p in cls.severities.values()))
    for key, value in budget.items():
        if key not in own:
            raise ConfigError(f"attack {name!r} has no budget parameter {key!r}; use {', '.join(own) or 'none'}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"attack {name!r} budget {key} must be a positive integer, got {value!r}")
    return dict(budget)


_LINF_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
_L2_EPS = (0.004, 0.008, 0.016, 0.032, 0.064)


@register
class FGSMLinf(Attack):
    """FGSM (L-inf) with a random start: eps per pixel (fraction of the data range), step 1.25 eps."""

    name = "fgsm_linf"
    white_box = True
    severities = {i + 1: {"eps": e, "alpha": 1.25 * e, "steps": 1, "random_start": True} for i, e in enumerate(_LINF_EPS)}

    def attack(self, ctx: AttackContext, x: torch.Tensor, **kw: Any) -> torch.Tensor:
        return gradient_attack(ctx, x, norm="linf", **kw)


@register
class FGSML2(Attack):
    """Fast gradient method (L2) with a random start: eps = RMS per pixel (fraction of the range)."""

    name = "fgsm_l2"
    white_box = True
    severities = {i + 1: {"eps": e, "alpha": e, "steps": 1, "random_start": True} for i, e in enumerate(_L2_EPS)}

    def attack(self, ctx: AttackContext, x: torch.Tensor, **kw: Any) -> torch.Tensor:
        return gradient_attack(ctx, x, norm="l2", **kw)


@register
class PGDLinf(Attack):
    """PGD (L-inf) as APGD: 50 steps with momentum and a halving step size, best of ``restarts``
    random starts; eps per pixel (fraction of the range)."""

    name = "pgd_linf"
    white_box = True
    severities = {i + 1: {"eps": e, "steps": 50, "restarts": 1} for i, e in enumerate(_LINF_EPS)}

    def attack(self, ctx: AttackContext, x: torch.Tensor, **kw: Any) -> torch.Tensor:
        return apgd_attack(ctx, x, norm="linf", **kw)


@register
class PGDL2(Attack):
    """PGD (L2) as APGD: 50 steps, best of ``restarts`` random starts; eps = RMS per pixel."""

    name = "pgd_l2"
    white_box = True
    severities = {i + 1: {"eps": e, "steps": 50, "restarts": 1} for i, e in enumerate(_L2_EPS)}

    def attack(self, ctx: AttackContext, x: torch.Tensor, **kw: Any) -> torch.Tensor:
        return apgd_attack(ctx, x, norm="l2", **kw)


@register
class RandomLinf(Perturbation):
    """Control for the L-inf attacks: random +-eps signs per pixel, no model (same eps ladder)."""

    name = "random_linf"
    family = "adversarial"
    stochastic = True
    severities = {i + 1: {"eps": e} for i, e in enumerate(_LINF_EPS)}

    def sample(self, params: Params, shape: torch.Size, generator: RandomSource, device: torch.device) -> Params:
        params["signs"] = torch.where(rand(tuple(shape), generator, device) < 0.5, -1.0, 1.0)
        return params

    def apply(self, u: torch.Tensor, eps: float, signs: torch.Tensor) -> torch.Tensor:
        return u + eps * signs.to(u.dtype)


@register
class SquareLinf(Attack):
    """Square attack (L-inf, black-box, no gradients): eps per pixel and a query budget."""

    name = "square_linf"
    severities = {
        i + 1: {"eps": e, "queries": q, "p_init": 0.05}
        for i, (e, q) in enumerate(zip(_LINF_EPS, (1000, 1000, 1000, 1000, 1000), strict=True))
    }

    def attack(self, ctx: AttackContext, x: torch.Tensor, **kw: Any) -> torch.Tensor:
        return square_attack(ctx, x, **kw)


def attack(
    model: Model,
    x: torch.Tensor,
    name: str = "pgd_linf",
    severity: int = 3,
    target: torch.Tensor | None = None,
    loss: LossName = "mse",
    eot_samples: int = 1,
    mask: torch.Tensor | None = None,
    generator: RandomSource | int | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
    budget: Mapping[str, int] | None = None,
    loss_mask: torch.Tensor | None = None,
    seeded: bool = False,
) -> torch.Tensor:
    """One-call entry point: attack ``model`` on ``x`` (B, C, H, W) with the registered attack
    ``name`` at ``severity`` (0..5); returns the adversarial input.

    ``target`` (B, 1, H, W): attack the error to it (the reported error, with ``loss_mask`` the
    brain mask); None: the distance to the clean output (output stability). ``mask`` confines
    ``delta`` (None: the whole image). ``budget`` overrides the attack's budget parameters
    (``steps``/``restarts`` of PGD, ``steps`` of FGSM, ``queries`` of Square) at every severity.
    ``seeded``: ``model`` takes ``generator=`` (see :class:`AttackContext`)."""
    cls = PERTURBATIONS.get(name)
    if cls is None or not cls.needs_model:
        from robustmri.perturb.base import list_perturbations

        raise ConfigError(f"{name!r} is not an attack; use one of: {', '.join(list_perturbations('adversarial'))}")
    ctx = AttackContext(model=model, target=target, loss=loss, eot_samples=eot_samples, loss_mask=loss_mask, seeded=seeded)
    return cls()(x, severity, mask=mask, generator=generator, data_range=data_range, context=ctx, budget=budget)
