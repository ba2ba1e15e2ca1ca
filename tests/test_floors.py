"""No-learning floors (robustmri.models.floors): known answers, the engine's fit, the bench's
treatment (no white-box attacks, oracle never ranked) and the report's warning."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from robustmri.data.paired import PairedTensors
from robustmri.models.floors import BINS, IntensityLookup, LookupOracle, bin_index, fill_empty
from robustmri.models.registry import build_model, is_differentiable


def _pairs(f, n: int = 6, size: int = 32, seed: int = 0) -> PairedTensors:
    """Smooth random sources in [0.05, 1] inside a disk, target = f(source), background 0."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.4 * size) ** 2)[None, None].expand(n, 1, size, size)
    x = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 3, 1, 1)
    x = 0.05 + 0.95 * (x - x.amin()) / (x.amax() - x.amin())
    x = torch.where(disk, x, torch.zeros_like(x))
    y = torch.where(disk, f(x), torch.zeros_like(x))
    return PairedTensors(x, y, disk.clone(), torch.arange(n) // 2, torch.arange(n) % 2)


def test_a_lookup_recovers_a_monotone_mapping_within_one_bin():
    f = lambda x: 1.0 - x**2  # noqa: E731  monotone (decreasing), like T1 -> T2 in brain
    data = _pairs(f)
    model = IntensityLookup()
    model.fit(data)
    test = _pairs(f, seed=1)
    out = model.translate(test.source)
    m = test.mask
    filled = m & (model.counts[bin_index(test.source, BINS)] > 0)
    assert float(filled.sum()) > 0.98 * float(m.sum())
    # in a bin that training pixels fell in, f moves by at most max|f'| / 128 = 2 / 128
    assert float((out - test.target)[filled].abs().max()) <= 2.0 / BINS + 1e-6
    # an empty bin is interpolated: off by at most a few bins' worth
    assert float((out - test.target)[m].abs().max()) <= 4 * 2.0 / BINS
    assert float(out[~m].abs().max()) == 0.0  # background rule: below the brain's 0.5th percentile -> 0


def test_empty_bins_are_interpolated_between_their_filled_neighbours():
    sums = torch.tensor([0.0, 0.0, 2.0, 0.0, 0.0, 8.0, 0.0])
    counts = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0])
    assert fill_empty(sums, counts).tolist() == pytest.approx([2.0, 2.0, 2.0, 8 / 3, 10 / 3, 4.0, 4.0], abs=1e-12)
    assert bin_index(torch.tensor([-0.1, 0.0, 0.5, 0.999, 1.0, 1.5]), 4).tolist() == [0, 0, 2, 3, 3, 3]


def test_the_oracle_fits_each_slice_on_its_own_target_and_is_batch_invariant():
    # two slices with the same source but opposite mappings: only a per-slice fit gets both right
    data = _pairs(lambda x: x)
    x = data.source[:1].repeat(2, 1, 1, 1)
    y = torch.cat([x[:1], torch.where(data.mask[:1], 1.0 - x[:1], torch.zeros_like(x[:1]))])
    oracle = LookupOracle()
    out = oracle.translate(x, target=y)
    assert float((out - y).abs().max()) <= 1.0 / BINS + 1e-6
    torch.testing.assert_close(oracle.translate(x[1:], target=y[1:]), out[1:])
    assert oracle.needs_target and not oracle.differentiable
    with pytest.raises(Exception, match="oracle"):
        oracle.translate(x)


def test_the_floors_are_registered_and_gradient_free():
    assert not is_differentiable("lookup") and not is_differentiable("lookup_oracle")
    assert is_differentiable("pix2pix")
    assert build_model("lookup", size="paper", image_size=256).bins == BINS


def test_the_engine_fits_the_lookup_and_a_checkpoint_reloads_it(tmp_path):
    from robustmri.train.engine import TrainConfig, load_trained, train

    data = _pairs(lambda x: 1.0 - x)
    result = train(TrainConfig(model="lookup", steps=3, batch_size=2, log_every=1), data, tmp_path / "run", progress=False)
    assert int(result.model.fitted_pixels) == int(data.mask.sum())
    model, _ = load_trained(tmp_path / "run")
    torch.testing.assert_close(model.table, result.model.table)
    x = data.source[:2]
    torch.testing.assert_close(model.translate(x), result.model.translate(x))


SUITE = """
name = "floors-test"
directions = ["t1->t2"]
seeds = [0]
device = "cpu"
reference_model = "pix2pix"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]
embedded = { n_slices = 4 }

[train]
steps = 4
batch_size = 2

[[models]]
name = "pix2pix"
size = "tiny"

[[models]]
name = "lookup"

[[models]]
name = "lookup_oracle"

[perturbations]
names = ["gaussian_noise"]
severities = [2]

[attacks]
names = ["fgsm_linf", "square_linf"]
severities = [2]
budget = { square_linf = { queries = 4 } }
"""


def test_a_bench_scores_the_floors_skips_white_box_attacks_and_warns_about_the_models_below(tmp_path, cache_dir):
    from robustmri.bench import load_suite, run_suite
    from robustmri.publish import publish
    from robustmri.report.build import load_results

    (tmp_path / "suite.toml").write_text(SUITE)
    out = run_suite(load_suite(tmp_path / "suite.toml"), tmp_path / "out", cache=cache_dir, progress=False)
    publish(out)
    res = pd.read_csv(out / "results.csv")
    cells = {m: set(g["perturbation"]) for m, g in res.groupby("model")}
    assert cells["pix2pix"] == {"clean", "gaussian_noise", "fgsm_linf", "square_linf"}
    assert cells["lookup"] == cells["lookup_oracle"] == {"clean", "gaussian_noise", "square_linf"}
    info = json.loads(next((out / "cells" / "lookup").rglob("model.json")).read_text())
    assert info["gradients"] is False and info["skipped_attacks"] == ["fgsm_linf"]
    clean = res[res["perturbation"] == "clean"].groupby("model")["psnr"].mean()
    assert clean["lookup_oracle"] > clean["lookup"]  # the oracle fits each slice: an upper bound for a mapping
    inputs = load_results(out)
    assert "lookup_oracle" in inputs.oracles
    # a 4-step pix2pix learned nothing: the report says so in its first line
    assert clean["pix2pix"] < clean["lookup"] + 1.0
    assert inputs.warnings[0].startswith("Below the no-learning floor")
    assert "pix2pix" in inputs.warnings[0]
    assert any("lookup" in w and "fgsm_linf" in w for w in inputs.warnings)
    # its adversarial family mean covers square_linf only: marked as not comparable, never bold
    table = (out / "report" / "tables" / "robustness_psnr.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("|  | lookup |"))
    cells_md = [c.strip() for c in row.strip("|").split("|")]
    adversarial = cells_md[-3]  # adversarial s2, then AUC and mCE
    assert adversarial.endswith("†") and not adversarial.startswith("**")
    assert "†: averaged over fewer perturbations" in table
