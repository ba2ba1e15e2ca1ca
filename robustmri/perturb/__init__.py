"""Perturbations for robustness evaluation: noise, image-domain, k-space and geometric
corruptions with 5 calibrated severities each, and adversarial attacks on translation models.

Quick use::

    from robustmri.perturb import get_perturbation, list_perturbations, attack
    y = get_perturbation("ghosting")(x, severity=3, generator=0)      # x: (B, 1, H, W) in [0, 1]
    x_adv = attack(model, x, "pgd_linf", severity=2)                   # needs the model

See docs/perturbations.md for every parameter table and its calibration.

Owns every corruption and attack. May import the models' interface, the protocol, the metrics, the
random streams, plugins and the bottom layer; never data (a sibling), training, KD+attack or the
bench (docs/architecture.md).
"""

from __future__ import annotations

from robustmri.perturb import adversarial, geometric, image, kspace, noise  # noqa: F401  (registration)
from robustmri.perturb.adversarial import AttackContext, attack, gradient_attack, square_attack
from robustmri.perturb.base import (
    FAMILIES,
    MAX_SEVERITY,
    PERTURBATIONS,
    Perturbation,
    derive_seed,
    get_perturbation,
    list_perturbations,
    make_generator,
    register,
)
from robustmri.perturb.grid import GridCell, apply_perturbation, cell_generator, corruption_grid

__all__ = [
    "FAMILIES",
    "MAX_SEVERITY",
    "PERTURBATIONS",
    "AttackContext",
    "GridCell",
    "Perturbation",
    "apply_perturbation",
    "attack",
    "cell_generator",
    "corruption_grid",
    "derive_seed",
    "get_perturbation",
    "gradient_attack",
    "list_perturbations",
    "make_generator",
    "register",
    "square_attack",
]
