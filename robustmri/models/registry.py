"""The one registry of translation models: name -> builder, with size presets.

A builder has the signature ``build(size, in_channels, image_size, **options) -> TranslationModel``
where ``size`` is one of :data:`SIZES`: ``tiny`` (trains in about a minute on 2 CPU cores at 64^2),
``small`` (a scaled-down version for quick GPU runs) and ``paper`` (the published configuration).
Built-in models are imported lazily from ``baselines/`` and ``robustmri/``; users add their own with
:func:`register_model`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from robustmri.errors import ConfigError, did_you_mean
from robustmri.models.base import TranslationModel
from robustmri.plugins import load_plugins

SIZES: tuple[str, ...] = ("tiny", "small", "paper")

Builder = Callable[..., TranslationModel]

_BUILTIN: dict[str, str] = {
    "pix2pix": "baselines.pix2pix:build",
    "resvit": "baselines.resvit:build",
    "diffusion": "baselines.diffusion:build",
    "reggan": "baselines.reggan:build",
    "kd_attack": "robustmri.kd.model:build",
    "lookup": "robustmri.models.floors:build_lookup",
    "lookup_oracle": "robustmri.models.floors:build_lookup_oracle",
}
_REGISTERED: dict[str, Builder] = {}


def register_model(name: str, builder: Builder | None = None) -> Any:
    """Register ``builder`` under ``name`` (usable as a decorator: ``@register_model("mine")``)."""

    def _add(fn: Builder) -> Builder:
        _REGISTERED[name] = fn
        return fn

    return _add(builder) if builder is not None else _add


def list_models() -> list[str]:
    """Names of all available models, sorted (plugins included, see :mod:`robustmri.plugins`)."""
    load_plugins()
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def resolve_builder(name: str) -> Builder:
    """The builder registered as ``name`` (plugins loaded first); ConfigError naming the choices
    for an unknown name."""
    load_plugins()
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        raise ConfigError(f"unknown model {name!r}{did_you_mean(name, list_models())}: use one of {', '.join(list_models())}")
    module_name, attr = _BUILTIN[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def is_differentiable(name: str) -> bool:
    """Whether model ``name`` has useful gradients (white-box attacks run on it): False for the
    no-learning floors (:mod:`robustmri.models.floors`), whose builders say so."""
    return bool(getattr(resolve_builder(name), "differentiable", True))


def model_version(name: str) -> int | None:
    """The version of model ``name``'s defaults, or None for a model that declares none. A builder
    declares one (``build.version = 2``) when a change of its defaults changes what a training with
    the same options computes; :class:`robustmri.train.engine.TrainConfig` records it, so a run
    trained under other defaults is another training, refused rather than reused."""
    version = getattr(resolve_builder(name), "version", None)
    return None if version is None else int(version)


def build_model(name: str, size: str = "tiny", in_channels: int = 1, image_size: int = 64, **options: Any) -> TranslationModel:
    """Build model ``name`` at preset ``size`` for ``in_channels`` source channels and square ``image_size``."""
    if size not in SIZES:
        raise ConfigError(f"unknown size {size!r}: use one of {', '.join(SIZES)}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
    return resolve_builder(name)(size=size, in_channels=in_channels, image_size=image_size, **options)
