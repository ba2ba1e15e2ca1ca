"""The corruption grid: every non-adversarial perturbation x severity, deterministically seeded.

Each cell's generator is seeded with :func:`robustmri.perturb.base.derive_seed` from
``(seed, perturbation[, key])``, so a cell's output does not depend on which other cells are
evaluated or in which order (pass ``key``, e.g. a batch index or subject id, when the data are
processed in chunks). The severity is deliberately NOT part of the seed: all severities of one
perturbation share their random draws (common random numbers), so e.g. the noise field at severity 4
is the one of severity 2 scaled up, and differences between severities reflect strength, not luck. No model is needed: attacks are excluded (see
:mod:`robustmri.perturb.adversarial`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robustmri.errors import ConfigError
from robustmri.perturb.base import (
    MAX_SEVERITY,
    PERTURBATIONS,
    check_severity,
    derive_seed,
    get_perturbation,
    list_perturbations,
    make_generator,
)


@dataclass(frozen=True)
class GridCell:
    """One grid cell: ``images`` (B, 1, H, W) corrupted by ``name`` at ``severity``."""

    name: str
    family: str
    severity: int
    params: dict[str, Any]
    images: torch.Tensor


def cell_generator(seed: int, name: str, key: object = None) -> torch.Generator:
    """The CPU generator used for a grid cell of perturbation ``name`` (any severity; stable
    across processes)."""
    keys: tuple[object, ...] = (name,) if key is None else (name, key)
    return make_generator(derive_seed(seed, *keys))


def apply_perturbation(
    x: torch.Tensor,
    name: str,
    severity: int,
    seed: int = 0,
    mask: torch.Tensor | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
    key: object = None,
    spacing_mm: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Corrupt ``x`` (B, 1, H, W) with the non-adversarial perturbation ``name`` at ``severity``,
    seeded from ``(seed, name, key)``. ``spacing_mm``: pixel spacing (mm, float or (B,)), needed by
    perturbations with lengths; ``mask``: brain mask for signal statistics (never confines)."""
    p = get_perturbation(name)
    if p.needs_model:
        raise ConfigError(f"{name!r} is an attack; use robustmri.perturb.attack(model, x, {name!r}, severity)")
    return p(x, severity, mask=mask, generator=cell_generator(seed, name, key), data_range=data_range,
             spacing_mm=spacing_mm)


def corruption_grid(
    x: torch.Tensor,
    names: Sequence[str] | None = None,
    severities: Iterable[int] = range(1, MAX_SEVERITY + 1),
    seed: int = 0,
    mask: torch.Tensor | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
    key: object = None,
    spacing_mm: float | torch.Tensor | None = None,
) -> Iterator[GridCell]:
    """Yield a :class:`GridCell` for every perturbation in ``names`` (default: all non-adversarial,
    in family order) and every severity in ``severities`` (0 allowed: the clean images)."""
    chosen = list(names) if names is not None else list_perturbations(include_adversarial=False)
    sevs = [check_severity(s) for s in severities]
    for name in chosen:
        p = get_perturbation(name)
        if p.needs_model:
            raise ConfigError(f"{name!r} is an attack and has no place in the corruption grid; drop it from names")
        for sev in sevs:
            params = {} if sev == 0 else p.params(sev)
            out = apply_perturbation(x, name, sev, seed=seed, mask=mask, data_range=data_range, key=key,
                                     spacing_mm=spacing_mm)
            yield GridCell(name=name, family=PERTURBATIONS[name].family, severity=sev, params=params, images=out)
