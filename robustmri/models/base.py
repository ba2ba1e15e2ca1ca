"""The interface every translation model implements, and the step context the training engine gives it.

A translation model maps a source batch ``(B, C_in, H, W)`` with intensities in [0, 1] to the
synthesised target ``(B, 1, H, W)`` in [0, 1]. Networks that work in [-1, 1] internally (pix2pix,
ResViT, ...) convert with :func:`to_signed` / :func:`to_unit` inside the model, so callers (metrics,
perturbations, attacks) always see [0, 1].

Training is owned by the model through one hook, :meth:`TranslationModel.training_step`: it computes
its losses and calls ``ctx.optimize(name, loss)`` once per optimiser (e.g. the discriminator, then
the generator). The engine's :class:`StepContext` does the backward pass, gradient averaging across
processes (DDP), optional gradient clipping, the optimiser and scheduler steps, so every model gets
AMP, distributed training, checkpointing and resume for free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from robustmri.rng import RandomSource

Batch = dict[str, Tensor]
"""A training batch: ``source`` (B, C_in, H, W), ``target`` (B, 1, H, W), ``mask`` (B, 1, H, W) bool,
all on the model's device; intensities in [0, 1]."""


def to_signed(x: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2.0 - 1.0


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (no clamping)."""
    return (x + 1.0) * 0.5


class StepContext(Protocol):
    """What the engine hands to :meth:`TranslationModel.training_step`."""

    step: int
    device: torch.device

    def optimize(self, name: str, loss: Tensor) -> None:
        """Backward ``loss`` and step optimiser ``name`` (zeroing its gradients first)."""
        ...

    def autocast(self) -> torch.autocast:
        """The mixed-precision context for forward passes (a no-op when AMP is off)."""
        ...


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimiser over ``params`` with an optional learning-rate schedule.

    ``schedule``: ``"constant"`` or ``"linear_decay"`` (constant for the first half of training, then
    linear to zero, as pix2pix's default ``linear`` policy).
    """

    params: list[nn.Parameter]
    lr: float
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant"


class TranslationModel(nn.Module, ABC):
    """Base class: ``forward(source) -> target``, both documented in [0, 1].

    Subclasses set :attr:`name`, build their networks in ``__init__`` and implement
    :meth:`translate`, :meth:`optimizers` and :meth:`training_step`. Stochastic models (diffusion)
    set :attr:`stochastic` and draw all randomness from the ``generator`` argument.
    """

    name: str = "model"
    stochastic: bool = False
    #: True for a model that needs the real target at test time (an oracle, e.g. KD+attack's
    #: ``teacher_oracle``): scoring then passes ``target=`` to :meth:`translate`, and the report
    #: labels it as an oracle. Every other model ignores ``target``.
    needs_target: bool = False
    #: False for a model without useful gradients (a piecewise-constant map such as the
    #: ``lookup`` floor): the bench runs no white-box attack on it, and the report says so.
    differentiable: bool = True
    #: True for a model fitted in one pass over the training slices (``fit(data)``, called by
    #: the engine before its steps) rather than by gradient steps.
    fits_data: bool = False

    def __init__(self, in_channels: int = 1, image_size: int = 64) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size

    @abstractmethod
    def translate(self, source: Tensor, generator: RandomSource | None = None, target: Tensor | None = None) -> Tensor:
        """Synthesise the target: ``(B, C_in, H, W)`` in [0, 1] -> ``(B, 1, H, W)`` in [0, 1].

        ``generator`` is the only source of randomness of a stochastic model: a torch generator, or
        a :class:`~robustmri.rng.KeyedStream` (one stream per image: draw with
        :func:`robustmri.rng.normal` / :func:`robustmri.rng.uniform`, batch first, so an image's
        output does not depend on its batch); ``target`` (B, 1, H, W)
        is given only to models that declare :attr:`needs_target` and is ignored by the others."""

    def forward(self, source: Tensor, generator: RandomSource | None = None, target: Tensor | None = None) -> Tensor:  # noqa: D401
        """Same as :meth:`translate` (so models compose with attacks and ``nn.Sequential``)."""
        return self.translate(source, generator=generator, target=target)

    @abstractmethod
    def optimizers(self) -> dict[str, OptimizerSpec]:
        """Named optimiser specifications, in the order ``training_step`` uses them."""

    @abstractmethod
    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor | float]:
        """One training iteration on ``batch``; returns scalar losses for logging, as detached
        scalar tensors: the engine keeps them on the device and reads them only at log steps
        (``float(loss)`` or ``loss.item()`` here would make the host wait for the GPU every step)."""

    def set_total_steps(self, steps: int) -> None:
        """Called by the engine with the run's total number of steps (for models with schedules)."""

    def inference_modules(self) -> Iterable[nn.Module]:
        """Sub-networks used by :meth:`translate` (the others, e.g. discriminators, are training-only)."""
        return [self]


class SignedGeneratorModel(TranslationModel):
    """A translation model whose ``generator`` network works in [-1, 1]: ``translate`` maps the
    source there and back, and the generator is the only sub-network used at inference."""

    generator: nn.Module

    def translate(self, source: Tensor, generator: RandomSource | None = None, target: Tensor | None = None) -> Tensor:
        return to_unit(self.generator(to_signed(source)))

    def inference_modules(self) -> list[nn.Module]:
        return [self.generator]


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix/CycleGAN initialisation: conv weights ~ N(0, std), norm weights ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
