"""The two-layer drift check: no false alarm under another float order, evaluation drift for a
changed perturbation, training drift for a changed model default, clean errors for bad references."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from robustmri.bench import check_drift, load_suite, run_suite, update_reference
from robustmri.bench.drift import FLOAT_ORDER_VARIANTS, KEY, training_tolerances
from robustmri.bench.reference import load_weights, read_reference, sha256_file
from robustmri.cli import main
from robustmri.errors import DataError

SUITE = """
name = "drift-test"
directions = ["t1->t2"]
seeds = [0]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]

[train]
steps = 40
batch_size = 2

[[models]]
name = "pix2pix"
size = "tiny"

[perturbations]
names = ["gaussian_noise", "gaussian_blur"]
severities = [3]

[attacks]
names = ["fgsm_linf", "square_linf"]
severities = [2]
budget = { square_linf = { queries = 8 } }

[eval]
batch_size = 8
"""


@pytest.fixture(scope="module")
def referenced(tmp_path_factory, cache_dir) -> tuple[Path, Path]:
    """A bench folder of the test suite and a reference written from it (one float-order replicate)."""
    root = tmp_path_factory.mktemp("drift")
    (root / "suite.toml").write_text(SUITE)
    out = run_suite(load_suite(root / "suite.toml"), root / "out", cache=cache_dir, progress=False)
    ref = root / "ref" / "drift.json"
    update_reference(out, ref, variants=("threads1", "aten-default"), cache=cache_dir, log=lambda _: None)
    return out, ref


def test_reference_holds_both_layers_and_small_float16_weights(referenced):
    out, ref = referenced
    data = read_reference(ref)
    assert data["suite_hash"] == load_suite(out.parent / "suite.toml").hash
    (entry,) = data["evaluation"]["weights"].values()
    path = ref.parent / entry["file"]
    assert sha256_file(path) == entry["sha256"]
    model = load_weights(path, entry["sha256"])
    assert all(p.dtype.is_floating_point for p in model.parameters())
    # generator only (no discriminator), float16: about 2 bytes per inference parameter
    n_inference = sum(p.numel() for m in model.inference_modules() for p in m.parameters())
    assert path.stat().st_size < 2.2 * n_inference + 200_000
    cells = data["training"]["cells"]
    assert {c["perturbation"] for c in cells} == {"clean", "gaussian_noise", "gaussian_blur", "fgsm_linf", "square_linf"}
    assert all(c["tolerance"] >= data["training"]["floor"][c["metric"]] for c in cells)
    assert data["training"]["variants"][0]["name"] == "threads1"


def test_unchanged_code_passes_under_another_float_order(referenced, cache_dir, tmp_path):
    """A rerun in a process whose float sums run in another order (one thread and ATen's scalar
    kernels together: a combination not used to measure the spread, which used each alone) passes
    both layers. With one variant alone (threads1) the tiny suite's MAE spread was underestimated:
    the rerun moved it by 0.00056 against the 0.0005 floor on the embedded data of format 2."""
    out, ref = referenced
    assert check_drift(out, ref, cache=cache_dir).ok
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default", "ROBUSTMRI_CACHE": str(cache_dir)}
    rerun = subprocess.run(
        [sys.executable, "-m", "robustmri", "bench", "--suite", str(out.parent / "suite.toml"), "--out", str(tmp_path / "o"), "--no-report"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    new = pd.read_csv(tmp_path / "o" / "results.csv")
    old = pd.read_csv(out / "results.csv")
    assert not new["psnr"].equals(old["psnr"])  # the float order did change the numbers...
    check = subprocess.run(
        [sys.executable, "-m", "robustmri", "check", str(tmp_path / "o"), "--reference", str(ref)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert check.returncode == 0, check.stderr[-2000:]  # ...and neither layer cries wolf
    assert "no drift" in check.stdout


def test_perturbation_change_is_evaluation_drift_naming_it(referenced, cache_dir, monkeypatch, capsys):
    from robustmri.perturb import PERTURBATIONS

    out, ref = referenced
    table = dict(PERTURBATIONS["gaussian_blur"].severities)
    table[3] = {"fwhm_mm": table[3]["fwhm_mm"] * 1.5}
    monkeypatch.setattr(PERTURBATIONS["gaussian_blur"], "severities", table)
    report = check_drift(out, ref, cache=cache_dir)
    assert report.evaluation and not report.training  # the results on disk were scored before the change
    assert {(d.perturbation, d.severity) for d in report.evaluation} == {("gaussian_blur", 3)}
    assert {d.layer for d in report.evaluation} == {"evaluation"}
    capsys.readouterr()
    assert main(["check", str(out), "--reference", str(ref), "--cache", str(cache_dir)]) == 1
    err = capsys.readouterr().err
    assert "evaluation drift: " in err and "training drift" not in err
    assert "pix2pix, t1->t2, gaussian_blur, severity 3, psnr: " in err and "tolerance 0.002" in err


def test_model_default_change_is_training_drift(referenced, cache_dir, tmp_path, monkeypatch, capsys):
    from baselines.pix2pix import Pix2Pix

    out, ref = referenced
    defaults = list(Pix2Pix.__init__.__defaults__)
    names = Pix2Pix.__init__.__code__.co_varnames[1 : Pix2Pix.__init__.__code__.co_argcount]
    defaults[names[-len(defaults):].index("lr")] = 1e-4  # the published default is 2e-4
    monkeypatch.setattr(Pix2Pix.__init__, "__defaults__", tuple(defaults))
    changed = run_suite(load_suite(out.parent / "suite.toml"), tmp_path / "changed", cache=cache_dir, progress=False)
    report = check_drift(changed, ref, cache=cache_dir)
    assert report.training and not report.evaluation
    assert any(d.perturbation == "clean" and d.metric == "psnr" for d in report.training)
    capsys.readouterr()
    assert main(["check", str(changed), "--reference", str(ref), "--cache", str(cache_dir), "--layer", "training"]) == 1
    err = capsys.readouterr().err
    assert "training drift: " in err and "evaluation drift" not in err


def test_training_tolerance_rule_known_answer():
    rows = []
    for perturbation, values in (("a", [1.0, 1.1, 0.9, 1.0]), ("b", [2.0, 2.0, 2.0, 2.0]), ("c", [3.0, 3.4, 2.6, 3.0])):
        for run, v in enumerate(values):
            rows.append({"model": "m", "direction": "t1->t2", "perturbation": perturbation, "severity": 1,
                         "metric": "psnr", "run": run, "value": v})
    tol = training_tolerances(pd.DataFrame(rows), factor=6.0, floor={"psnr": 0.02}).set_index("perturbation")
    sd_a = pd.Series([1.0, 1.1, 0.9, 1.0]).std()
    assert tol.loc["a", "spread_sd"] == pytest.approx(sd_a)
    assert tol.loc["c", "spread_sd"] == pytest.approx(4 * sd_a)
    # a cell without spread gets the median spread of its model and metric (that of "a"), not zero
    assert tol.loc["b", "tolerance"] == pytest.approx(6 * sd_a)
    assert tol.loc["c", "tolerance"] == pytest.approx(24 * sd_a)
    assert set(KEY) | {"spread_sd", "tolerance"} <= set(tol.reset_index().columns)


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "not found"),
        ("truncated", "not valid JSON"),
        ("[1, 2]", "not a robustmri drift reference"),
        (json.dumps({"suite": "smoke", "cells": []}), "not a robustmri drift reference"),
        (json.dumps({"format": "robustmri-drift-reference", "version": 1}), "version 1"),
    ],
)
def test_bad_reference_is_one_line_error(referenced, tmp_path, capsys, content, fragment):
    out, ref = referenced
    bad = tmp_path / "bad.json"
    if content == "truncated":
        text = ref.read_text()
        bad.write_text(text[: len(text) // 2])
    elif content is not None:
        bad.write_text(content)
    capsys.readouterr()
    assert main(["check", str(out), "--reference", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and str(bad) in err[0] and "Traceback" not in err[0]
    with pytest.raises(DataError):
        read_reference(bad)


def test_tampered_weights_and_other_suite_are_refused(referenced, tmp_path, capsys):
    out, ref = referenced
    copy = tmp_path / "ref"
    shutil.copytree(ref.parent, copy)
    data = json.loads((copy / ref.name).read_text())
    (entry,) = data["evaluation"]["weights"].values()
    (copy / entry["file"]).write_bytes(b"not weights")
    capsys.readouterr()
    assert main(["check", str(out), "--reference", str(copy / ref.name)]) == 2
    assert "differ from the ones the reference was made with" in capsys.readouterr().err
    data["suite_hash"] = "0" * 16
    (copy / "other.json").write_text(json.dumps(data))
    assert main(["check", str(out), "--reference", str(copy / "other.json")]) == 2
    assert "--update the reference on purpose" in capsys.readouterr().err


def test_unknown_variant_is_refused(referenced, tmp_path, capsys):
    out, _ = referenced
    assert main(["check", str(out), "--reference", str(tmp_path / "r.json"), "--update", "--variants", "nope"]) == 2
    assert "threads1" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_committed_smoke_reference_matches_the_smoke_suite():
    """Editing robustmri/suites/smoke.toml (or the code's suite defaults) without regenerating the
    reference would make `make bench` fail on every machine: catch it here first."""
    root = Path(__file__).resolve().parents[1]
    ref = read_reference(root / "reports" / "reference" / "smoke.json")
    assert ref["suite_hash"] == load_suite("smoke").hash
    assert set(ref["training"]["variants"][i]["name"] for i in range(len(ref["training"]["variants"]))) == set(FLOAT_ORDER_VARIANTS)
    total = 0
    for entry in ref["evaluation"]["weights"].values():
        path = root / "reports" / "reference" / entry["file"]
        assert sha256_file(path) == entry["sha256"]
        total += path.stat().st_size
        load_weights(path, entry["sha256"])
    assert total < 6_000_000


def test_environment_changes_known_answers():
    from robustmri.bench.drift import environment_changes

    ref = {"created": {"device": "x86_64", "versions": {"torch": "2.13.0+cpu", "numpy": "2.4.6", "python": "3.11.7"}}}
    same = {"device_name": "x86_64", "versions": {"torch": "2.13.0+cpu", "numpy": "2.4.6", "python": "3.11.7"}}
    assert environment_changes(ref, same, now=same["versions"]) == []
    gpu = {"device_name": "NVIDIA H200", "versions": {"torch": "2.11.0+cu130", "numpy": "2.4.6", "python": "3.12.3"}}
    assert environment_changes(ref, gpu, now=gpu["versions"]) == [
        "python 3.11.7 -> 3.12.3", "torch 2.13.0+cpu -> 2.11.0+cu130", "device x86_64 -> NVIDIA H200"]
    # the run (training layer) and this process (evaluation layer) may differ from each other too
    assert environment_changes(ref, same, now={**same["versions"], "numpy": "2.5.0"}) == ["numpy 2.4.6 -> 2.4.6 / 2.5.0"]
    assert environment_changes({}, gpu, now=gpu["versions"]) == []  # an old reference without the record


def test_drift_in_another_environment_says_so(referenced, cache_dir, tmp_path, monkeypatch, capsys):
    from robustmri.perturb import PERTURBATIONS

    out, ref = referenced
    moved = tmp_path / "ref"
    shutil.copytree(ref.parent, moved)
    data = json.loads((moved / ref.name).read_text())
    data["created"]["versions"]["torch"] = "1.0.0"
    (moved / ref.name).write_text(json.dumps(data))
    table = dict(PERTURBATIONS["gaussian_blur"].severities)
    table[3] = {"fwhm_mm": table[3]["fwhm_mm"] * 1.5}
    monkeypatch.setattr(PERTURBATIONS["gaussian_blur"], "severities", table)
    capsys.readouterr()
    assert main(["check", str(out), "--reference", str(moved / ref.name), "--cache", str(cache_dir)]) == 1
    err = capsys.readouterr().err
    assert "evaluation drift: " in err
    assert "note: this environment differs from the reference's (torch 1.0.0 -> " in err
    # in the reference's own environment the drift is reported without the note
    assert main(["check", str(out), "--reference", str(ref), "--cache", str(cache_dir)]) == 1
    assert "environment differs" not in capsys.readouterr().err
