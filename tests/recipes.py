"""docs/architecture.md's recipes, installed as written: each test imports a recipe's code block as
a plugin module and runs it (the tests call this helper, so a recipe that rots fails them)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def recipe_code(heading: str) -> str:
    """The first python block under ``### <heading>`` in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text[text.index(f"### {heading}"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```", start)]


def install_recipe(heading: str, module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Write the recipe under ``heading`` as ``<package>/<name>.py`` (``module`` = "package.name") in
    ``tmp_path``, put it on the path and in ``ROBUSTMRI_PLUGINS``, and let the plugins load again
    (every test uses its own package name: Python keeps the first package of a name it imports).
    Returns the module name."""
    from robustmri import plugins

    package, name = module.split(".")
    monkeypatch.setattr(plugins, "_loaded", set(plugins._loaded))
    folder = tmp_path / package
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / f"{name}.py").write_text(recipe_code(heading))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ROBUSTMRI_PLUGINS", module)
    return module
