"""Every registered model through the whole bench: training, corruptions, white- and black-box
attacks (EOT for the stochastic diffusion model; black-box only for the no-learning floors), two
directions, the report. Slow-marked: the
default run covers the runner with pix2pix and the smoke suite with KD+attack."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from robustmri.bench import load_suite, run_suite
from robustmri.models.registry import list_models
from robustmri.publish import publish

pytestmark = pytest.mark.slow

ALL_MODELS_SUITE = """
name = "all-models"
directions = ["t1->t2", "t2->flair"]
seeds = [0]
reference_model = "pix2pix"
device = "cpu"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]
embedded = { n_slices = 2 }

[train]
steps = 6
batch_size = 2

[[models]]
name = "pix2pix"
size = "tiny"

[[models]]
name = "resvit"
size = "tiny"
steps = 30  # after 6 steps its batch norms' running statistics still hold their start: in eval mode
            # the output is nearly constant (it moves by 1e-5 when the input is halved)

[[models]]
name = "reggan"
size = "tiny"

[[models]]
name = "diffusion"
size = "tiny"
options = { sample_steps = 2 }

[[models]]
name = "kd_attack"
size = "tiny"
options = { generator = "resvit", variant = "full" }

[[models]]
name = "lookup"

[[models]]
name = "lookup_oracle"

[perturbations]
names = ["rician_noise", "motion", "misregistration"]
severities = [1, 5]

[attacks]
names = ["fgsm_linf", "pgd_l2", "square_linf"]
severities = [1]
loss = "mse"
eot_samples = 2

[eval]
batch_size = 8
"""


def test_every_registered_model_runs_through_the_bench(tmp_path: Path) -> None:
    (tmp_path / "all.toml").write_text(ALL_MODELS_SUITE)
    suite = load_suite(tmp_path / "all.toml")
    assert {m.name for m in suite.models} == set(list_models())  # a newly registered model must join here
    out = run_suite(suite, tmp_path / "out", cache=tmp_path / "cache", progress=False)
    publish(out)
    res = pd.read_csv(out / "results.csv", dtype={"subject": str})
    cells = res.groupby(["model", "direction", "perturbation", "severity"]).size()
    # 5 models x 2 directions x (clean + 3 corruptions x 2 severities + 3 attacks x 1), and the two
    # gradient-free floors without the white-box attacks (fgsm_linf, pgd_l2)
    assert len(cells) == 5 * 2 * (1 + 6 + 3) + 2 * 2 * (1 + 6 + 1)
    assert (cells == 4).all()  # 2 test subjects x 2 slices in every cell
    assert res[["psnr", "ssim", "mae", "nmse"]].notna().all().all()
    assert all(math.isfinite(v) for v in res["psnr"])
    # the perturbations reach every model's input (after 6 steps a model barely depends on its input,
    # so compare every metric, stored to 6 significant digits, and ask for any change at all)
    keys = ["direction", "subject", "slice"]
    for model, rows in res.groupby("model"):
        clean = rows[rows.perturbation == "clean"].set_index(keys)[["psnr", "ssim", "mae", "nmse"]]
        other = rows[rows.perturbation != "clean"].set_index(keys)[["psnr", "ssim", "mae", "nmse"]]
        assert (other - clean.reindex(other.index)).abs().max().max() > 0, model
    assert (out / "report" / "report.html").is_file()
