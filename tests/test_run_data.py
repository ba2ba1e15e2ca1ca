"""A run knows its data: the bench and `train` record the source, split and exact subjects in the
run's data.json; `robustmri eval RUN` with no options scores the run's own test split and gives the
bench's clean numbers exactly; subjects the run trained on are refused unless asked for."""

from __future__ import annotations

import json

import pandas as pd

from robustmri.cli import main

SUITE = """
name = "run-data"
directions = ["t1->t2"]
device = "cpu"

[data]
source = "embedded:5"
image_size = 64
split = [3, 0, 2]
embedded = { n_slices = 4 }

[train]
steps = 3
batch_size = 2

[[models]]
name = "pix2pix"
size = "tiny"

[perturbations]
names = ["gaussian_noise"]
severities = [2]
"""


def test_eval_with_no_options_reproduces_the_bench_clean_cell_and_refuses_training_subjects(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ROBUSTMRI_CACHE", str(tmp_path / "cache"))
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    assert main(["bench", "--suite", str(suite), "--out", str(out)]) == 0
    run = out / "runs" / "pix2pix__t1_to_t2__s0"
    identity = json.loads((run / "data.json").read_text())["identity"]
    assert identity["source"] == "embedded:5" and identity["split"] == [3, 0, 2]
    assert len(identity["subjects"]["train"]) == 3 and len(identity["subjects"]["test"]) == 2
    assert not set(identity["subjects"]["train"]) & set(identity["subjects"]["test"])

    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    said = capsys.readouterr().out
    assert "the run's own data" in said and "2 subjects" in said
    mine = pd.read_csv(run / "eval-test-robustmri.csv")
    bench = pd.read_csv(out / "cells" / "pix2pix" / "t1_to_t2" / "s0" / "clean__0.csv")
    metrics = [c for c in ("psnr", "ssim", "mae", "nmse") if c in bench.columns and c in mine.columns]
    assert metrics and len(mine) == len(bench)
    merged = bench.merge(mine, on=["subject", "slice"], suffixes=("_bench", "_eval"))
    assert len(merged) == len(bench)
    for m in metrics:  # the same loop, data and seed: equal to the 6 significant digits the bench's cells keep
        assert [float(f"{v:.6g}") for v in merged[f"{m}_eval"]] == merged[f"{m}_bench"].tolist(), m

    capsys.readouterr()
    assert main(["eval", str(run), "--split", "train"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained on 3 of the subjects" in err and "--allow-train-subjects" in err
    assert main(["eval", str(run), "--split", "train", "--allow-train-subjects"]) == 0
    assert "note: 3 of these subjects were in the run's training split" in capsys.readouterr().out
