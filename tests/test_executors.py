"""Executors: every back-end runs the same task list into the same bytes (issue 30, item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from recipes import install_recipe

from robustmri.bench import load_suite, run_suite
from robustmri.bench.executors import ExecutorSettings, LocalExecutor, cpu_slots, make_executor
from robustmri.bench.plan import jobs
from robustmri.bench.suite import builtin_suites, suite_from_dict
from robustmri.bench.tasks import ScoreTask, TasksFailed, TrainTask, plan_tasks
from robustmri.errors import ConfigError


SUITE = """
name = "executors"
directions = ["t1->t2"]
seeds = [0]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]
embedded = { n_slices = 3 }

[train]
steps = 20
batch_size = 2

[[models]]
name = "pix2pix"

[[models]]
name = "lookup"

[perturbations]
names = ["gaussian_noise", "gaussian_blur"]
severities = [1, 4]

[attacks]
names = ["pgd_linf"]
severities = [2]
budget = { pgd_linf = { steps = 5 } }

[eval]
batch_size = 4
"""


def _bench(suite: Path, out: Path, cache: Path, *extra: str) -> str:
    # one torch thread in every process: a worker of `--jobs 2` gets one CPU, and the float
    # order (so the trained weights) depends on the thread count
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "robustmri", "bench", "--suite", str(suite), "--out", str(out), "--cache", str(cache),
         "--no-report", *extra], capture_output=True, text=True, env=env, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_local_submitit_local_and_local_jobs_write_the_same_results(tmp_path, cache_dir) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    _bench(suite, tmp_path / "local", cache_dir)
    reference = (tmp_path / "local" / "results.csv").read_bytes()
    text = _bench(suite, tmp_path / "submitit", cache_dir, "--executor", "submitit-local")
    assert (tmp_path / "submitit" / "results.csv").read_bytes() == reference
    assert "submitit-local: 4/4 done" in text  # two trainings (the floor's is a fit), two scorings after them
    logs = list((tmp_path / "submitit" / "submitit-local").rglob("*_log.out"))
    assert len(logs) == 4
    text = _bench(suite, tmp_path / "jobs2", cache_dir, "--jobs", "2")
    assert (tmp_path / "jobs2" / "results.csv").read_bytes() == reference
    assert "local: 4/4 done" in text
    manifest = json.loads((tmp_path / "jobs2" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["cells_computed_this_run"] == 6 + 5  # lookup: no PGD
    # a second run of any executor computes nothing
    assert "0 cells to compute" in subprocess.run(
        [sys.executable, "-m", "robustmri", "bench", "--suite", str(suite), "--out", str(tmp_path / "submitit"),
         "--dry-run", "--executor", "submitit-local"], capture_output=True, text=True, check=True).stdout


def test_the_task_list_states_each_scoring_after_its_training(tmp_path) -> None:
    (tmp_path / "s.toml").write_text(SUITE)
    suite = load_suite(tmp_path / "s.toml")
    tasks = plan_tasks(suite, tmp_path / "out", chunks=2)
    trains = [t for t in tasks if isinstance(t, TrainTask)]
    scores = [t for t in tasks if isinstance(t, ScoreTask)]
    assert [t.run_name for t in trains] == [j.run_name for j in jobs(suite)]  # the lookup floor's is a fit
    assert [t.after for t in scores] == [trains[0].run_name] * 2 + [trains[1].run_name] * 2
    assert sum(len(t.stems) for t in scores) == 6 + 5  # pix2pix: clean, 4 corruptions, PGD; lookup: no PGD
    import pickle

    assert pickle.loads(pickle.dumps(tasks)) == tasks  # plain data: any executor can ship it


def test_every_builtin_suite_survives_its_dict(tmp_path) -> None:
    """A task carries its suite as ``Suite.to_dict()``: the suite it rebuilds must be the same."""
    for name in builtin_suites():
        suite = load_suite(name)
        assert suite_from_dict(json.loads(json.dumps(suite.to_dict()))) == suite, name


def test_cpu_slots_split_the_cpus_of_this_process(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6, 7, 8})
    assert cpu_slots(2) == [[4, 5, 6], [7, 8]]
    assert cpu_slots(1) == [[4, 5, 6, 7, 8]]
    assert cpu_slots(7) == [[4], [5], [6], [7], [8], [4], [5]]


def test_an_unknown_executor_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="--executor 'pbs': use one of local, slurm, submitit-local"):
        make_executor("pbs")


BROKEN = '''
from robustmri.models import register_model
from robustmri.models.registry import build_model


@register_model("broken")
def build(size="tiny", in_channels=1, image_size=64, **options):
    model = build_model("pix2pix", size, in_channels=in_channels, image_size=image_size)

    def training_step(batch, ctx):
        raise RuntimeError("this model cannot train")

    model.training_step = training_step
    return model
'''


def test_a_failed_training_drops_only_its_scorings(tmp_path, monkeypatch, cache_dir) -> None:
    """``local --jobs 2``: the broken model's training fails in its worker, its scoring never
    starts, the other model is scored, and the run ends with one line naming the task."""
    (tmp_path / "brokenplugin.py").write_text(BROKEN)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")  # the workers' path
    monkeypatch.setenv("ROBUSTMRI_PLUGINS", "brokenplugin")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.syspath_prepend(str(tmp_path))
    from robustmri import plugins
    from robustmri.models import registry

    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    monkeypatch.setattr(plugins, "_loaded", set(plugins._loaded))
    (tmp_path / "s.toml").write_text(SUITE.replace('name = "pix2pix"', 'name = "broken"'))
    suite = load_suite(tmp_path / "s.toml")
    lines: list[str] = []
    executor = LocalExecutor(ExecutorSettings(jobs=2, echo=lines.append))
    with pytest.raises(TasksFailed, match=r"1 task\(s\) did not finish.*train broken__t1_to_t2__s0.*cannot train"):
        run_suite(suite, tmp_path / "out", cache=cache_dir, progress=False, executor=executor)
    cells = tmp_path / "out" / "cells"
    assert {p.relative_to(cells).parts[0] for p in cells.rglob("*.csv")} == {"lookup"}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["status"] == "interrupted"
    assert any("failed: train broken" in line for line in lines)


def test_the_executor_recipe_runs_as_written(tmp_path, monkeypatch, cache_dir) -> None:
    from robustmri.bench import executors

    monkeypatch.setattr(executors, "EXECUTORS", dict(executors.EXECUTORS))
    install_recipe("Add an executor", "mypkg_executor.timed_executor", tmp_path, monkeypatch)
    (tmp_path / "s.toml").write_text(SUITE)
    suite = load_suite(tmp_path / "s.toml")
    lines: list[str] = []
    timed = make_executor("timed", ExecutorSettings(echo=lines.append))
    out = run_suite(suite, tmp_path / "timed", cache=cache_dir, progress=False, executor=timed)
    local = run_suite(suite, tmp_path / "local", cache=cache_dir, progress=False)
    assert (out / "results.csv").read_bytes() == (local / "results.csv").read_bytes()
    assert lines[0].startswith("suite executors") and "executor timed" in lines[0]  # the plan, printed first
    timed = [line for line in lines if line.startswith(("train ", "score "))]
    assert [line.split(":")[0] for line in timed] == [
        "train pix2pix__t1_to_t2__s0", "train lookup__t1_to_t2__s0", "score pix2pix__t1_to_t2__s0 (6 cells",
        "score lookup__t1_to_t2__s0 (5 cells"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cells_computed_this_run"] == 11


@pytest.mark.slow
def test_the_smoke_suite_is_the_same_through_submitit_local(tmp_path, cache_dir) -> None:
    """The smoke suite (about 2.5 min each way on 2 cores): local and submitit-local, byte for byte."""
    _bench(Path("smoke"), tmp_path / "local", cache_dir)
    _bench(Path("smoke"), tmp_path / "submitit", cache_dir, "--executor", "submitit-local")
    assert (tmp_path / "submitit" / "results.csv").read_bytes() == (tmp_path / "local" / "results.csv").read_bytes()
