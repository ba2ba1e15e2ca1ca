"""robustmri bench: suite validation, incremental store, resume after SIGKILL, shards (drift check: test_drift.py)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from robustmri.bench import load_suite, run_suite
from robustmri.bench.plan import cells, jobs, parse_shard
from robustmri.bench.runner import merge_results
from robustmri.bench.suite import parse_suite
from robustmri.cli import main
from robustmri.errors import ConfigError

TINY_SUITE = """
name = "tiny-test"
directions = ["t1->t2"]
seeds = [0]
reference_model = "pix2pix"
device = "cpu"

[data]
source = "embedded:4"
image_size = 64

[train]
steps = 40
batch_size = 2

[[models]]
name = "pix2pix"
size = "tiny"

[[models]]
name = "pix2pix"
size = "tiny"
label = "pix2pix:b"
steps = 30

[perturbations]
names = ["gaussian_noise", "gaussian_blur"]
severities = [2]

[attacks]
names = ["fgsm_linf"]
severities = [1]

[eval]
batch_size = 8
"""


def _write_suite(path: Path, text: str = TINY_SUITE) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, cache_dir) -> Path:
    """One uninterrupted run of the tiny suite."""
    root = tmp_path_factory.mktemp("bench")
    suite = load_suite(_write_suite(root / "tiny.toml"))
    return run_suite(suite, root / "out", cache=cache_dir, progress=False)


def _results(path: Path) -> pd.DataFrame:
    return pd.read_csv(path / "results.csv", dtype={"subject": str})


def test_suite_validation_errors():
    base = {"name": "x", "models": [{"name": "pix2pix"}]}
    assert parse_suite(base).models[0].label == "pix2pix"
    cases = [
        ({**base, "colour": 1}, "unknown key"),
        ({**base, "models": [{"name": "nope"}]}, "unknown model"),
        ({**base, "directions": ["t1-t2"]}, "t1->t2"),
        ({**base, "directions": ["t1->t1"]}, "itself"),
        ({**base, "perturbations": {"names": ["fog"]}}, "unknown corruption"),
        ({**base, "attacks": {"names": ["gaussian_noise"]}}, "unknown attack"),
        ({**base, "perturbations": {"severities": [0, 9]}}, "within 1..5"),
        ({**base, "reference_model": "resnet"}, "reference_model"),
        ({**base, "models": [{"name": "pix2pix"}, {"name": "pix2pix"}]}, "unique"),
        ({"models": [{"name": "pix2pix"}]}, "name"),
        ({**base, "data": {"split": [5, 1]}}, "data.split"),
        ({**base, "data": {"split": [5, 1, 0]}}, "data.split"),
        ({**base, "eval": {"split": "train"}}, "eval.split"),
        ({**base, "eval": {"split": "val"}}, "validation subjects"),  # the default split has no fixed val count
        ({**base, "data": {"split": [3, 0, 1]}, "eval": {"split": "val"}}, "val > 0"),
        ({**base, "data": {"embedded": {"misregistration_mm": 6.0, "misregistration_splits": ["training"]}}},
         "misregistration_splits must be"),
        ({**base, "data": {"embedded": {"misregistration_splits": ["train"]}}}, "needs misregistration_mm"),
        ({**base, "data": {"embedded": {"misregistered_subjects": [0]}}}, "unknown embedded option"),
    ]
    for raw, fragment in cases:
        with pytest.raises(ConfigError, match=fragment):
            parse_suite(raw, "s.toml")


def test_suite_split_gives_its_own_prepared_folder(cache_dir):
    from robustmri.data.resolve import load_split_tensors, resolve_data

    suite = parse_suite({"name": "x", "models": [{"name": "pix2pix"}], "data": {"source": "embedded:4", "split": [2, 0, 2]}})
    assert suite.split == (2, 0, 2)
    spec = resolve_data(suite.data_source, 64, ("t1", "t2"), cache=cache_dir, split=suite.split)
    default = resolve_data(suite.data_source, 64, ("t1", "t2"), cache=cache_dir)
    assert spec.prepared != default.prepared  # the default split's folder and split.json are untouched
    test = load_split_tensors(spec, "test", "t1", "t2")
    assert len(set(test.subject.tolist())) == 2
    with pytest.raises(ConfigError, match="already prepared"):
        resolve_data(str(spec.prepared), 64, ("t1", "t2"), cache=cache_dir, split=(1, 0, 1))


def test_misregistration_splits_moves_the_training_subjects_of_the_prepared_split_only(cache_dir):
    """Reg-GAN's setting: misaligned training pairs, aligned test targets, the same split as scored."""
    import json

    from robustmri.data.resolve import resolve_data

    options = {"n_slices": 4, "misregistration_mm": 6.0, "misregistration_splits": ["train"]}
    spec = resolve_data("embedded:6", 32, ("t1", "t2"), cache=cache_dir, split=(4, 0, 2), embedded_options=options)
    split = json.loads((spec.prepared / "split.json").read_text())
    roots = [p for p in Path(cache_dir).glob("embedded-*") if "misregistered_subjects" in (p / "dataset.json").read_text()]
    assert len(roots) == 1
    for sid in split["train"] + split["test"]:
        params = json.loads((roots[0] / sid / "params.json").read_text())
        applied = params["misregistration"]["t2"].get("applied", True)
        assert applied == (sid in split["train"]), sid
    assert "misregistration_splits=['train']" in spec.description


def test_a_tuning_suite_scores_the_validation_subjects_and_the_report_says_so(cache_dir, tmp_path):
    """eval.split = "val": the cells hold the split's validation subjects, none of its test ones."""
    from robustmri.data.resolve import load_split_tensors, resolve_data
    from robustmri.report import build_report

    text = TINY_SUITE.replace('source = "embedded:4"', 'source = "embedded:5"\nsplit = [2, 1, 2]').replace(
        "[eval]\nbatch_size = 8", '[eval]\nbatch_size = 8\nsplit = "val"')
    text = text[: text.index('[[models]]\nname = "pix2pix"\nsize = "tiny"\nlabel')] + text[text.index("[perturbations]"):]
    suite = load_suite(_write_suite(tmp_path / "tune.toml", text.replace("steps = 40", "steps = 4")))
    assert suite.eval_split == "val"
    plain = load_suite(_write_suite(tmp_path / "t.toml"))
    explicit = load_suite(_write_suite(tmp_path / "e.toml", TINY_SUITE.replace("batch_size = 8", 'batch_size = 8\nsplit = "test"')))
    assert plain.hash == explicit.hash  # the default keeps every suite's hash (and its drift reference)
    out = run_suite(suite, tmp_path / "out", cache=cache_dir, progress=False)
    spec = resolve_data(suite.data_source, 64, ("t1", "t2"), cache=cache_dir, split=suite.split)
    def names(split: str) -> set[str]:
        t = load_split_tensors(spec, split, "t1", "t2")
        return {t.subject_names[i] for i in t.subject.tolist()}

    val, test = names("val"), names("test")
    scored = set(_results(out)["subject"])
    assert len(val) == 1 and len(test) == 2
    assert scored == val and not scored & test
    report = build_report(out)
    assert "VALIDATION subjects" in Path(report).read_text()


def test_builtin_suites_are_valid():
    from robustmri.bench.suite import builtin_suites

    names = builtin_suites()
    assert {"smoke", "quick", "full", "paper", "ablation", "ablation-misreg", "ablation-kdweights", "paper-mini",
            "paper-mini-misreg"} <= set(names)
    for name in names:
        suite = load_suite(name)
        assert suite.name == name and suite.models


def test_results_store_shape(baseline):
    frame = _results(baseline)
    suite = load_suite(baseline.parent / "tiny.toml")
    n_cells = len(cells(suite))  # clean + 2 corruptions + 1 attack
    assert n_cells == 4
    per_cell = frame.groupby(["model", "perturbation", "severity"]).size()
    assert len(per_cell) == 2 * n_cells and per_cell.nunique() == 1  # same slices in every cell
    assert set(frame["perturbation"]) == {"clean", "gaussian_noise", "gaussian_blur", "fgsm_linf"}
    assert frame["protocol"].nunique() == 1 and frame["psnr"].notna().all()
    manifest = json.loads((baseline / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["versions"]["torch"]
    # the same corrupted inputs for every model: identical models would score identically; here the
    # two models differ, and so do their clean scores
    clean = frame[frame.perturbation == "clean"].groupby("model")["psnr"].mean()
    assert clean["pix2pix"] != clean["pix2pix:b"]
    # corruptions lower quality
    mean = frame.groupby(["model", "perturbation"])["psnr"].mean()
    assert mean["pix2pix", "gaussian_blur"] < mean["pix2pix", "clean"]
    sample = __import__("numpy").load(baseline / "samples" / "t1_to_t2.npz")
    assert {"source", "target", "mask", "input|gaussian_noise|2", "output|pix2pix|clean|0",
            "output|pix2pix:b|clean|0",  # the display label, not its path-safe folder name
            "input|pix2pix|fgsm_linf|1", "input|pix2pix:b|fgsm_linf|1",  # an attack's input per model
            } <= set(sample.files)


def test_second_run_computes_nothing_and_added_severity_only_new_cells(baseline, cache_dir, tmp_path):
    import shutil

    work = tmp_path / "out"
    shutil.copytree(baseline, work)
    suite = load_suite(baseline.parent / "tiny.toml")
    before = {p: p.stat().st_mtime_ns for p in (work / "cells").rglob("*.csv")}
    start = time.perf_counter()
    run_suite(suite, work, cache=cache_dir, progress=False)
    assert time.perf_counter() - start < 30
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["cells_computed_this_run"] == 0
    assert before == {p: p.stat().st_mtime_ns for p in (work / "cells").rglob("*.csv")}
    # add one severity: only its cells (2 models x 2 corruptions) are computed
    more = _write_suite(tmp_path / "more.toml", TINY_SUITE.replace("severities = [2]", "severities = [2, 4]"))
    run_suite(load_suite(more), work, cache=cache_dir, progress=False)
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["cells_computed_this_run"] == 4
    assert before == {p: p.stat().st_mtime_ns for p in before}  # old cells untouched
    frame = _results(work)
    assert set(frame[frame.perturbation == "gaussian_blur"]["severity"]) == {2, 4}
    old = _results(baseline)
    pd.testing.assert_frame_equal(frame[frame.severity != 4].reset_index(drop=True), old)


def test_stale_cells_and_runs_are_refused_not_reused(baseline, cache_dir, tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "out"
    shutil.copytree(baseline, work)
    # another evaluation seed would change every corrupted input: the cached cells are stale
    reseeded = _write_suite(tmp_path / "seed.toml", TINY_SUITE.replace("[eval]\nbatch_size = 8", "[eval]\nbatch_size = 8\nseed = 7"))
    with pytest.raises(ConfigError, match="computed with a different eval"):
        run_suite(load_suite(reseeded), work, cache=cache_dir, progress=False)
    # a changed severity table (e.g. a recalibration in the code) makes that perturbation's cells stale
    from robustmri.perturb import PERTURBATIONS

    table = {**PERTURBATIONS["gaussian_noise"].severities, 2: {"sigma": 0.5}}
    monkeypatch.setattr(PERTURBATIONS["gaussian_noise"], "severities", table)
    with pytest.raises(ConfigError, match="severity table of gaussian_noise"):
        run_suite(load_suite(baseline.parent / "tiny.toml"), work, cache=cache_dir, progress=False)
    monkeypatch.undo()
    # a finished run trained with another batch size is not silently reused
    rebatched = _write_suite(tmp_path / "batch.toml", TINY_SUITE.replace("batch_size = 2", "batch_size = 3"))
    with pytest.raises(ConfigError, match="trained with other settings.*batch_size"):
        run_suite(load_suite(rebatched), work, cache=cache_dir, progress=False)
    # nor is one planned for fewer steps continued to the suite's new total
    longer = _write_suite(tmp_path / "longer.toml", TINY_SUITE.replace("steps = 40", "steps = 50"))
    with pytest.raises(ConfigError, match="trained with other settings.*steps=40"):
        run_suite(load_suite(longer), work, cache=cache_dir, progress=False)
    # unchanged: still valid, nothing recomputed
    run_suite(load_suite(baseline.parent / "tiny.toml"), work, cache=cache_dir, progress=False)
    assert json.loads((work / "manifest.json").read_text())["cells_computed_this_run"] == 0


def test_a_run_trained_with_other_ddp_processes_is_not_reused(baseline, cache_dir, tmp_path):
    """A run trained by N DDP processes saw N x the batch per step: another training. The local bench
    (one process) and a task plan with another number of processes (a SLURM --train-processes) refuse it,
    before anything runs."""
    import shutil

    from robustmri.bench.tasks import plan_tasks

    work = tmp_path / "out"
    shutil.copytree(baseline, work)
    suite = load_suite(baseline.parent / "tiny.toml")
    summary_path = work / "runs" / jobs(suite)[0].run_name / "summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["processes"] == 1
    summary_path.write_text(json.dumps({**summary, "processes": 2}))
    with pytest.raises(ConfigError, match="trained with 2 DDP process.*--train-processes 2"):
        run_suite(suite, work, cache=cache_dir, progress=False)
    with pytest.raises(ConfigError, match="trained with 2 DDP process"):
        plan_tasks(suite, work, processes=1)
    # asked with 2, the other job's run (one process) is the one refused
    with pytest.raises(ConfigError, match=f"{jobs(suite)[1].run_name} was trained with 1 DDP process"):
        plan_tasks(suite, work, processes=2)
    for job in jobs(suite)[1:]:
        other = work / "runs" / job.run_name / "summary.json"
        other.write_text(json.dumps({**json.loads(other.read_text()), "processes": 2}))
    plan = plan_tasks(suite, work, processes=2)  # every run reused, every cell there
    assert plan == []


def test_shards_merge_to_the_single_run(baseline, cache_dir, tmp_path):
    suite = load_suite(baseline.parent / "tiny.toml")
    assert parse_shard("1/2") == (1, 2) and len(jobs(suite)) == 2
    with pytest.raises(ConfigError):
        parse_shard("2/2")
    a = run_suite(suite, tmp_path / "a", shard=(0, 2), cache=cache_dir, progress=False)
    b = run_suite(suite, tmp_path / "b", shard=(1, 2), cache=cache_dir, progress=False)
    assert set(_results(a)["model"]) == {"pix2pix"} and set(_results(b)["model"]) == {"pix2pix:b"}
    merged = merge_results(tmp_path / "m", [a, b])
    pd.testing.assert_frame_equal(_results(merged), _results(baseline))


def test_sigkill_then_rerun_equals_uninterrupted(baseline, cache_dir, tmp_path):
    """Kill a bench run at a random moment (SIGKILL), run it again: the results are identical to an
    uninterrupted run made the same way (same process settings: thread counts change float sums)."""
    suite_path = baseline.parent / "tiny.toml"
    env = {**os.environ, "ROBUSTMRI_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "robustmri", "bench", "--suite", str(suite_path), "--out", str(out), "--no-report"]

    start = time.perf_counter()
    whole = subprocess.run(cmd(tmp_path / "whole"), env=env, capture_output=True, text=True, timeout=900)
    assert whole.returncode == 0, whole.stderr[-2000:]
    duration = time.perf_counter() - start
    rng = random.Random(os.environ.get("ROBUSTMRI_KILL_SEED"))
    delay = rng.uniform(0.2, 0.9) * duration
    proc = subprocess.Popen(cmd(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(cmd(tmp_path / "killed"), env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    pd.testing.assert_frame_equal(_results(tmp_path / "killed"), _results(tmp_path / "whole"))


def test_cli_bench_bad_suite(tmp_path, capsys):
    bad = _write_suite(tmp_path / "bad.toml", 'name = "x"\n[[models]]\nname = "nope"\n')
    assert main(["bench", "--suite", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and str(bad) in err
    assert main(["bench", "--suite", "no-such-suite"]) == 2
    assert "smoke" in capsys.readouterr().err


def test_a_bench_ends_with_the_summary_table(baseline, cache_dir, tmp_path, capsys):
    """`robustmri bench` prints, per model, clean PSNR/SSIM, the margin over `lookup`, PSNR lost per
    family at the top severity and to the attacks, and the mCE, each equal to its value recomputed
    from results.csv; then the report's path."""
    import shutil

    from robustmri.cli import main
    from robustmri.report.summary import summary_rows
    from robustmri.results import subject_means

    work = tmp_path / "out"
    shutil.copytree(baseline, work)  # the trained runs and cells are reused: only lookup is fitted and scored
    suite = _write_suite(tmp_path / "floor.toml", TINY_SUITE.replace(
        '[perturbations]', '[[models]]\nname = "lookup"\n\n[perturbations]'))
    assert main(["bench", "--suite", str(suite), "--out", str(work), "--cache", str(cache_dir)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert lines[head].split() == ["model", "PSNR", "SSIM", "vs", "lookup", "noise", "image", "attacks", "mCE"]
    rows, _ = summary_rows(work)
    subjects = subject_means(_results(work))
    for model in ("pix2pix", "pix2pix:b"):
        mine = subjects[subjects["model"] == model]
        clean = mine[mine["perturbation"] == "clean"]["psnr"].mean()
        noise = mine[mine["perturbation"] == "gaussian_noise"]["psnr"].mean()
        attack = mine[mine["perturbation"] == "fgsm_linf"]["psnr"].mean()
        lookup = subjects[(subjects["model"] == "lookup") & (subjects["perturbation"] == "clean")]["psnr"].mean()
        row = rows[rows["model"] == model].iloc[0]
        assert row["clean_psnr"] == pytest.approx(clean) and row["over_lookup"] == pytest.approx(clean - lookup)
        assert row["lost_noise"] == pytest.approx(clean - noise) and row["lost_attacks"] == pytest.approx(clean - attack)
        printed = next(line for line in lines[head:] if line.split()[0] == model).split()
        assert float(printed[1]) == pytest.approx(clean, abs=0.006)
    assert rows.loc[rows["model"] == "pix2pix", "mce"].iloc[0] == pytest.approx(100.0)
    assert rows.loc[rows["model"] == "lookup", "tag"].iloc[0] == "floor"
    assert lines[-1] == f"report: {work / 'report' / 'report.html'}"
