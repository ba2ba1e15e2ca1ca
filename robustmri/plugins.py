"""Plugins: user code that registers models or perturbations, loaded before any registry lookup.

Two ways to make ``robustmri bench``, ``train`` and ``eval`` see your own model or perturbation:

- ``ROBUSTMRI_PLUGINS=mypkg.models,mypkg.corruptions``: comma-separated module names (importable on
  ``PYTHONPATH``) imported once; each calls :func:`robustmri.models.register_model` or decorates a
  class with :func:`robustmri.perturb.register` at import time.
- An installed package that declares an entry point in the group ``robustmri.plugins``
  (``[project.entry-points."robustmri.plugins"] mine = "mypkg.models"``): the module is imported.

A plugin that fails to import stops with one line naming it (exit status 2 from the CLI).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os

from robustmri.errors import ConfigError

__all__ = ["ENV_VAR", "ENTRY_POINT_GROUP", "load_plugins"]

ENV_VAR = "ROBUSTMRI_PLUGINS"
ENTRY_POINT_GROUP = "robustmri.plugins"
_loaded: set[str] = set()


def load_plugins() -> list[str]:
    """Import every plugin module not yet imported (environment variable, then entry points);
    returns the names of the modules imported by this call."""
    names = [n.strip() for n in os.environ.get(ENV_VAR, "").split(",") if n.strip()]
    entry_points = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    new: list[str] = []
    for name in names:
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of user code becomes one line
            raise ConfigError(
                f"plugin module {name!r} from ${ENV_VAR} failed to import ({type(exc).__name__}: {exc}); "
                "fix it or remove it from the variable"
            ) from None
        _loaded.add(name)
        new.append(name)
    for ep in entry_points:
        key = f"entry-point:{ep.name}={ep.value}"
        if key in _loaded:
            continue
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(
                f"plugin {ep.value!r} (entry point {ep.name!r}, group {ENTRY_POINT_GROUP}) failed to import "
                f"({type(exc).__name__}: {exc}); fix or uninstall the package that declares it"
            ) from None
        _loaded.add(key)
        new.append(ep.value)
    return new
