"""Translation models: the common interface and the registry of model builders."""

from robustmri.models.base import OptimizerSpec, TranslationModel
from robustmri.models.registry import SIZES, build_model, list_models, register_model

__all__ = ["OptimizerSpec", "TranslationModel", "SIZES", "build_model", "list_models", "register_model"]
