"""Plugins: a user module named in $ROBUSTMRI_PLUGINS registers a model and a perturbation that the
registries, and so train/bench, then see; a broken plugin is one clear error."""

from __future__ import annotations

import textwrap

import pytest
import torch

from robustmri.errors import ConfigError

PLUGIN = '''
import torch
from robustmri.models import register_model
from robustmri.perturb import register
from robustmri.perturb import Perturbation
from baselines.pix2pix import build as build_pix2pix


@register_model("plugin_pix2pix")
def build(size="tiny", in_channels=1, image_size=64, **options):
    return build_pix2pix(size, in_channels, image_size, **options)


@register
class Darken(Perturbation):
    name = "plugin_darken"
    family = "image"
    severities = {s: {"factor": 1.0 - 0.1 * s} for s in range(1, 6)}

    def apply(self, u, factor):
        return u * factor
'''


def test_plugin_module_registers_model_and_perturbation(tmp_path, monkeypatch):
    (tmp_path / "my_robustmri_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ROBUSTMRI_PLUGINS", "my_robustmri_plugin")
    from robustmri.models.registry import build_model, list_models
    from robustmri.perturb import get_perturbation, list_perturbations

    assert "plugin_pix2pix" in list_models()
    model = build_model("plugin_pix2pix", "tiny", image_size=64)
    assert model.translate(torch.rand(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    assert "plugin_darken" in list_perturbations("image")
    x = torch.full((1, 1, 8, 8), 0.5)
    assert torch.allclose(get_perturbation("plugin_darken")(x, 2), torch.full_like(x, 0.4))


def test_broken_plugin_is_one_line_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_robustmri_plugin.py").write_text("raise ImportError('needs package foo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ROBUSTMRI_PLUGINS", "broken_robustmri_plugin")
    from robustmri.cli import main
    from robustmri.plugins import load_plugins

    with pytest.raises(ConfigError, match="broken_robustmri_plugin.*needs package foo"):
        load_plugins()
    monkeypatch.setenv("ROBUSTMRI_PLUGINS", "missing_robustmri_plugin_xyz")
    assert main(["models"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing_robustmri_plugin_xyz" in err[0] and "ROBUSTMRI_PLUGINS" in err[0]
