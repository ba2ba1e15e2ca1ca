"""Translation models: the common interface and the registry of model builders.

Owns the interface, the registry, the floors and external models. May import the protocol, the
metrics, the random streams, plugins and the bottom layer; never data, perturbations, training or
the bench (docs/architecture.md).
"""

from robustmri.models.base import OptimizerSpec, TranslationModel
from robustmri.models.registry import SIZES, build_model, list_models, register_model

__all__ = ["OptimizerSpec", "TranslationModel", "SIZES", "build_model", "list_models", "register_model"]
