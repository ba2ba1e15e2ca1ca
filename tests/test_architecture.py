"""The package's shape, enforced: no import cycle, the layers of ``pyproject.toml`` kept
(``lint-imports``), and no module importing another module's private names."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from recipes import install_recipe

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("robustmri", "baselines")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    adjacency = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in adjacency[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for module in adjacency:
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return found


def private_imports(source: str, module: str) -> list[str]:
    """``from <other robustmri module> import _name`` statements of ``source`` (the module's own
    privates and aliases such as ``import x as _x`` are fine)."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES or node.module == module:
                continue
            bad += [f"{module}: from {node.module} import {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return bad


def test_the_checks_catch_what_they_look_for() -> None:
    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert import_cycles(graph) == [["p.a", "p.b"]]
    assert private_imports("from robustmri.bench.runner import _train_job, run_suite\n", "robustmri.bench.slurm") == [
        "robustmri.bench.slurm: from robustmri.bench.runner import _train_job"]
    assert private_imports("from robustmri import metrics as _m\nfrom robustmri._version import __version__\n", "x") == []


def test_no_import_cycle() -> None:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, exclude_type_checking_imports=True)
    assert import_cycles(graph) == []


def test_no_module_imports_another_modules_private_names() -> None:
    bad = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            bad += private_imports(path.read_text(encoding="utf-8"), module)
    assert bad == []


def test_the_layers_of_pyproject_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


RECIPE_SUITE = """
name = "recipe"
description = "docs/architecture.md's recipe: a plugin model scored under a plugin perturbation."
directions = ["t1->t2"]
seeds = [0]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]
embedded = { n_slices = 2 }

[train]
steps = 30
batch_size = 2

[[models]]
name = "recipe_scale"

[perturbations]
names = ["recipe_darken"]
severities = [1, 5]

[eval]
batch_size = 8
"""


def test_the_model_and_perturbation_recipe_runs_as_written(tmp_path, monkeypatch, cache_dir) -> None:
    import pandas as pd
    import torch

    from robustmri.bench import load_suite, run_suite
    from robustmri.perturb import get_perturbation

    from robustmri.models import registry
    from robustmri.perturb.base import PERTURBATIONS

    # what the plugin registers is removed afterwards: a suite with names = "all" would list it
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    monkeypatch.setitem(PERTURBATIONS, "recipe_darken", None)
    monkeypatch.delitem(PERTURBATIONS, "recipe_darken")
    install_recipe("Add a model or a perturbation", "mypkg.robust_plugins", tmp_path, monkeypatch)
    x = torch.full((1, 1, 8, 8), 0.5)
    assert torch.allclose(get_perturbation("recipe_darken")(x, 5), torch.full_like(x, 0.25))
    (tmp_path / "recipe.toml").write_text(RECIPE_SUITE)
    out = run_suite(load_suite(tmp_path / "recipe.toml"), tmp_path / "out", cache=cache_dir, progress=False)
    frame = pd.read_csv(out / "results.csv")
    assert set(frame["model"]) == {"recipe_scale"}
    psnr = frame.groupby(["perturbation", "severity"])["psnr"].mean()
    assert set(psnr.index) == {("clean", 0), ("recipe_darken", 1), ("recipe_darken", 5)}
    assert len({round(float(v), 3) for v in psnr}) == 3  # each cell scored its own (darkened) inputs
    logs = list((out / "runs").rglob("log.jsonl"))
    assert len(logs) == 1
    l1 = [json.loads(line)["l1"] for line in logs[0].read_text().splitlines() if '"l1"' in line]
    assert len(l1) >= 2 and l1[-1] < l1[0]  # the recipe's model trained: its L1 went down


def test_the_protocol_preset_recipe_runs_as_written(tmp_path, monkeypatch, cache_dir) -> None:
    import pandas as pd

    from robustmri.bench import load_suite, run_suite
    from robustmri.errors import ConfigError
    from robustmri.protocol import Protocol, get_protocol, presets, register_protocol

    monkeypatch.setattr(presets, "PRESETS", dict(presets.PRESETS))  # the preset is removed afterwards
    install_recipe("Add a protocol preset", "mypkg_protocol.whole_slice", tmp_path, monkeypatch)
    mine = get_protocol("whole_slice")  # found by name once the plugin loads
    assert mine.mask == "none" and get_protocol(mine.id) is mine
    with pytest.raises(ConfigError, match="already a preset"):
        register_protocol(Protocol(name="whole_slice", mask="none", data_range="target_max"))
    suite_text = RECIPE_SUITE.replace('name = "recipe_scale"', 'name = "pix2pix"').replace(
        'names = ["recipe_darken"]', 'names = ["gaussian_noise"]')
    rows = {}
    for name in ("robustmri", "whole_slice"):
        (tmp_path / f"{name}.toml").write_text(suite_text.replace('[train]', f'[protocol]\nname = "{name}"\n\n[train]'))
        out = run_suite(load_suite(tmp_path / f"{name}.toml"), tmp_path / name, cache=cache_dir, progress=False)
        rows[name] = pd.read_csv(out / "results.csv")
    assert set(rows["whole_slice"]["protocol"]) == {mine.id}
    assert set(rows["robustmri"]["protocol"]) == {get_protocol("robustmri").id}
    a, b = (rows[n].query("perturbation == 'clean'")["psnr"].to_numpy() for n in ("robustmri", "whole_slice"))
    assert len(a) == len(b) > 0 and abs(a.mean() - b.mean()) > 0.5  # the background changes what is scored


def test_the_layer_diagram_is_the_contract_of_pyproject() -> None:
    """docs/architecture.md's layer diagram lists pyproject's import-linter layers, in order."""
    import re
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = re.findall(r'L\d+\["([^"]+)"\]', text[text.index("## The layers"):])
    assert drawn == layers


def test_the_metric_recipe_runs_as_written(tmp_path, monkeypatch, cache_dir) -> None:
    import importlib

    import numpy as np
    import pandas as pd
    import torch
    from scipy import ndimage

    from robustmri import metrics
    from robustmri.bench import load_suite, run_suite
    from robustmri.errors import ConfigError
    from robustmri.protocol import get_protocol, presets
    from robustmri.publish import publish

    # what the plugin registers is removed afterwards
    monkeypatch.setattr(presets, "PRESETS", dict(presets.PRESETS))
    monkeypatch.setattr(metrics, "_SPECS", dict(metrics._SPECS))
    module = install_recipe("Add a metric", "mypkg_metric.hfen", tmp_path, monkeypatch)
    mine = get_protocol("robustmri_hfen")  # loading the plugin registers the metric and the preset
    assert mine.metrics == ("psnr", "ssim", "mae", "nmse", "hfen")
    hfen = importlib.import_module(module).hfen

    # known answer: scipy's Laplacian of Gaussian (zeros beyond the edge), sums within the mask
    rng = np.random.default_rng(0)
    pred, target = rng.random((2, 3, 1, 24, 20))
    mask = rng.random((3, 1, 24, 20)) > 0.3
    log = lambda x: ndimage.gaussian_laplace(x, sigma=1.5, mode="constant")  # noqa: E731
    expected = [np.sqrt((log(p[0] - t[0]) ** 2)[m[0]].sum() / (log(t[0]) ** 2)[m[0]].sum())
                for p, t, m in zip(pred, target, mask, strict=True)]
    got = hfen(torch.tensor(pred), torch.tensor(target), mask=torch.tensor(mask))
    assert got.dtype == torch.float64 and got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    assert float(hfen(torch.tensor(target), torch.tensor(target))[0]) == 0.0
    assert float(hfen(torch.zeros(1, 1, 24, 20, dtype=torch.float64), torch.tensor(target[:1]))[0]) == pytest.approx(1.0)

    # the registry refuses a taken name, a results column, and a metric that returns the wrong shape
    with pytest.raises(ConfigError, match="taken"):
        metrics.register_metric("hfen", better="lower")(hfen)
    with pytest.raises(ConfigError, match="taken"):
        metrics.register_metric("subject", better="lower")(hfen)
    metrics.register_metric("one_number", better="lower")(lambda p, t, mask=None: p.mean())
    with pytest.raises(ConfigError, match="one_number.*one value per image"):
        metrics.compute_registered("one_number", torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), mask=None)

    # end to end: the same suite under robustmri's protocol and under the recipe's preset
    suite_text = RECIPE_SUITE.replace('name = "recipe_scale"', 'name = "lookup"').replace(
        'names = ["recipe_darken"]', 'names = ["gaussian_blur"]')
    rows, outs = {}, {}
    for name in ("robustmri", "robustmri_hfen"):
        (tmp_path / f"{name}.toml").write_text(suite_text.replace('[train]', f'[protocol]\nname = "{name}"\n\n[train]'))
        outs[name] = run_suite(load_suite(tmp_path / f"{name}.toml"), tmp_path / name, cache=cache_dir, progress=False)
        rows[name] = pd.read_csv(outs[name] / "results.csv")
    a, b = rows["robustmri"], rows["robustmri_hfen"]
    assert list(b.columns) == [*a.columns[:a.columns.get_loc("nmse") + 1], "hfen", *a.columns[a.columns.get_loc("nmse") + 1:]]
    assert set(b["protocol"]) == {mine.id} and mine.id != get_protocol("robustmri").id
    pd.testing.assert_frame_equal(a.drop(columns="protocol"), b.drop(columns=["protocol", "hfen"]))  # nothing else moved
    assert b["hfen"].notna().all() and (b["hfen"] > 0).all()
    by_cell = b.groupby(["perturbation", "severity"])["hfen"].mean()
    assert by_cell[("gaussian_blur", 5)] > by_cell[("clean", 0)]  # blurred inputs lose the fine detail HFEN weighs

    publish(outs["robustmri_hfen"])
    report = outs["robustmri_hfen"] / "report"
    assert "HFEN" in (report / "tables" / "clean_quality.md").read_text()
    summary = pd.read_csv(report / "summary.csv")
    assert "hfen" in set(summary["metric"])
