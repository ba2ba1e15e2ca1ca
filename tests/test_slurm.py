"""`robustmri bench --executor slurm` against a real one-node SLURM cluster (started by
`bash .ci/slurm-up.sh`, which CI runs before the tests): the same results.csv as the local
executor, byte for byte, even when a job is cancelled mid-run and the command is run again, and no
cell is computed twice."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False).stdout
    return any(s.strip() in ("idle", "mixed", "allocated") for s in out.splitlines())


needs_cluster = pytest.mark.skipif(not _cluster_up(), reason="no SLURM cluster: start one with `bash .ci/slurm-up.sh` (root)")

SUITE = """
name = "slurm-test"
directions = ["t1->t2"]
seeds = [0]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64

[train]
steps = 20
batch_size = 2

[[models]]
name = "pix2pix"

[perturbations]
names = ["gaussian_noise", "gaussian_blur", "motion"]
severities = [1, 3, 5]

[attacks]
names = ["pgd_linf"]
severities = [1, 2, 3, 4]
budget = { pgd_linf = { steps = 60 } }

[eval]
batch_size = 8
"""


def _bench(suite: Path, out: Path, cache: Path, *extra: str) -> subprocess.Popen:
    # the same torch thread count locally and in the jobs (SLURM passes the environment on): float
    # reductions, and so the trained weights, depend on it
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "robustmri", "bench", "--suite", str(suite), "--out", str(out), "--cache", str(cache),
         "--no-report", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def _cluster_state() -> str:
    """What a failed cluster test prints: every job SLURM still knows, with state and reason, the
    nodes that are down or drained and why, and the controller's last log lines."""
    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()

    log = Path("/tmp/robustmri-slurm/log/slurmctld.log")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:]) if log.is_file() else "(no controller log)"
    return (f"squeue:\n{run('squeue', '-t', 'all', '-r', '-o', '%i %T %r %j')}\nsinfo -R:\n{run('sinfo', '-R')}\n"
            f"slurmctld.log:\n{tail}")


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    """The command's output once it ended; a command still running after ``timeout`` seconds is
    killed and the test fails with what it printed and the cluster's state."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        text = proc.communicate()[0]
        pytest.fail(f"still running after {timeout:.0f} s; it printed:\n{text}\n{_cluster_state()}")


def _queued_eval_task() -> str | None:
    """The id of an evaluation array task of this bench that waits while another runs, if any."""
    text = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T %j"], capture_output=True, text=True).stdout
    tasks = [line.split() for line in text.splitlines()]
    ours = [(jid, state) for jid, state, name in tasks if name == "rmri-slurm-test" and "_" in jid]
    if any(state == "RUNNING" for _, state in ours):
        return next((jid for jid, state in ours if state == "PENDING"), None)
    return None


@needs_cluster
def test_slurm_executor_equals_local_even_after_a_killed_job(tmp_path, cache_dir) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    local = tmp_path / "local"
    text = _finish(_bench(suite, local, cache_dir), 900)
    assert (local / "results.csv").is_file(), text

    out = tmp_path / "slurm"
    slurm_args = ("--executor", "slurm", "--cpus", "2", "--mem-gb", "2", "--eval-tasks", "3")
    proc = _bench(suite, out, cache_dir, *slurm_args)
    killed = None
    deadline = time.time() + 600
    while killed is None and time.time() < deadline and proc.poll() is None:
        killed = _queued_eval_task()
        if killed is None:
            time.sleep(0.2)
    assert killed is not None, "no evaluation task ever waited behind a running one"
    # With 2 CPUs a task on a 2-CPU node, the array's tasks run one after the other: one that
    # still waits is cancelled for certain, and ends without a result. (Killing a running task was
    # a race: a task starts, scores its cells and exits within 1.5 s, and submitit lets it finish
    # on SIGTERM, so a kill could land after its result was written; seen once in CI.)
    subprocess.run(["scancel", killed], check=True)
    text = _finish(proc, 900)
    assert proc.returncode == 2, text
    last = text.strip().splitlines()[-1]
    assert last.startswith("error: 1 SLURM job(s) did not finish") and killed in last and "rerun" in last, last

    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "cells").rglob("*.csv")}
    n_cells = len(list((local / "cells").rglob("*.csv")))
    assert 0 < len(before) < n_cells  # the killed task's cells (at least one) are missing

    dry = subprocess.run([sys.executable, "-m", "robustmri", "bench", "--suite", str(suite), "--out", str(out),
                          "--dry-run", *slurm_args], capture_output=True, text=True, check=True).stdout
    assert f"{n_cells - len(before)} cells to compute" in dry and "0 training task(s)" in dry

    rerun = _bench(suite, out, cache_dir, *slurm_args)
    text = _finish(rerun, 900)
    assert rerun.returncode == 0, text
    assert (out / "results.csv").read_bytes() == (local / "results.csv").read_bytes()
    # no cell was written twice: the first run's cells are the same files, untouched
    assert all((p.stat().st_ino, p.stat().st_mtime_ns) == v for p, v in before.items())
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["cells_computed_this_run"] == n_cells - len(before)


def test_dry_run_of_the_full_suite_prints_the_plan_in_seconds(tmp_path) -> None:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "robustmri", "bench", "--suite", "full", "--out", str(tmp_path / "f"),
                          "--dry-run", "--executor", "slurm", "--gpus", "1", "--partition", "gpu"],
                         capture_output=True, text=True, check=True).stdout
    assert time.perf_counter() - t0 < 30
    assert "training task(s)" in out and "partition gpu, 1 GPU(s)" in out and not (tmp_path / "f").exists()


@needs_cluster
def test_a_training_job_with_two_processes_trains_with_ddp(tmp_path, cache_dir) -> None:
    """--train-processes 2: one SLURM job, two tasks, the engine's DDP path (gloo on the CPU)."""
    import json

    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace('names = ["gaussian_noise", "gaussian_blur", "motion"]', 'names = ["gaussian_noise"]')
                     .replace("severities = [1, 2, 3, 4]", "severities = [1]"))
    out = tmp_path / "ddp"
    proc = _bench(suite, out, cache_dir, "--executor", "slurm", "--cpus", "1", "--mem-gb", "2", "--eval-tasks", "1",
                  "--train-processes", "2")
    text = _finish(proc, 600)
    assert proc.returncode == 0, text
    summary = json.loads((out / "runs" / "pix2pix__t1_to_t2__s0" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 20
    assert "training: 2 process(es)" in text and (out / "results.csv").is_file()


def test_the_suite_names_slurm_resources_and_the_command_line_overrides_them(tmp_path) -> None:
    from robustmri.bench import load_suite
    from robustmri.errors import ConfigError

    plain = tmp_path / "plain.toml"
    plain.write_text(SUITE)
    with_slurm = tmp_path / "with.toml"
    with_slurm.write_text(SUITE + '\n[slurm]\npartition = "gpu"\ngpus = 1\ncpus = 8\nmem_gb = 32\ntime_min = 720\n')
    assert load_suite(with_slurm).hash == load_suite(plain).hash  # resources do not change results
    run = [sys.executable, "-m", "robustmri", "bench", "--suite", str(with_slurm), "--out", str(tmp_path / "o"),
           "--dry-run", "--executor", "slurm"]
    text = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert "partition gpu, 1 GPU(s), 8 CPU(s), 32 GB, 720 min" in text
    text = subprocess.run([*run, "--gpus", "2", "--cpus", "4"], capture_output=True, text=True, check=True).stdout
    assert "partition gpu, 2 GPU(s), 4 CPU(s), 32 GB, 720 min; training: 2 process(es)" in text
    bad = tmp_path / "bad.toml"
    bad.write_text(SUITE + "\n[slurm]\ncpus = 0\n")
    with pytest.raises(ConfigError, match=r"\[slurm\]: --cpus must be >= 1"):
        load_suite(bad)


class _FakeJob:
    """What the wait reads of a submitit job: its id, its result file and its results."""

    def __init__(self, job_id: str, folder: Path, result: int | None) -> None:
        self.job_id = job_id
        self.paths = type("P", (), {"result_pickle": folder / f"{job_id}_result.pkl",
                                    "stderr": folder / f"{job_id}.err"})()
        self._result = result
        if result is not None:
            self.paths.result_pickle.write_bytes(b"x")

    def results(self) -> list[int]:
        return [self._result]


def test_the_wait_ends_when_a_training_fails_and_its_scorings_can_never_start(tmp_path, monkeypatch) -> None:
    """A training job that raised: its afterok scorings are cancelled, and one that SLURM still
    lists as DependencyNeverSatisfied is not waited for; the command fails in one line naming the
    training job. The status lines say why jobs wait."""
    from types import SimpleNamespace

    from robustmri.bench import slurm
    from robustmri.bench.tasks import TasksFailed

    class _Raises(_FakeJob):
        def results(self) -> list[int]:
            raise RuntimeError("Traceback ...\nValueError: the model diverged")

    train_job, score_job, other = _Raises("10", tmp_path, 0), _FakeJob("11_0", tmp_path, None), _FakeJob("12_0", tmp_path, 3)
    polls = iter([
        {"10": ("RUNNING", "None"), "11_0": ("PENDING", "Dependency"), "12_0": ("PENDING", "Resources")},
        {"11_0": ("PENDING", "DependencyNeverSatisfied"), "12_0": ("RUNNING", "None")},
        {},
    ])
    monkeypatch.setattr(slurm, "_squeue", lambda ids: next(polls))
    cancelled: list[str] = []
    monkeypatch.setattr(slurm.subprocess, "run", lambda cmd, **kw: cancelled.append(cmd[-1]))
    monkeypatch.setattr(slurm.time, "sleep", lambda s: None)
    lines: list[str] = []
    tasks = [SimpleNamespace(name="train pix2pix"), SimpleNamespace(name="score pix2pix 1/1"),
             SimpleNamespace(name="score lookup 1/1")]
    with pytest.raises(TasksFailed, match=r"2 SLURM job\(s\) did not finish.*First: SLURM job 10 \(train pix2pix\) failed: "
                                          r"ValueError: the model diverged"):
        slurm._wait(list(zip([train_job, score_job, other], tasks)), {"10": [score_job]}, 0.0, lines.append)
    assert cancelled == ["11_0", "11_0"]  # as its training failed, and again when SLURM still listed it
    assert lines[0] == "slurm: 2 pending (Dependency; Resources), 1 running; 0 failed"
    assert lines[1] == "slurm: 1 running; 2 failed"


def test_the_wait_counts_the_cells_of_jobs_that_ended_with_a_result(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from robustmri.bench import slurm

    jobs = [_FakeJob("20", tmp_path, 0), _FakeJob("21_0", tmp_path, 4), _FakeJob("21_1", tmp_path, 5)]
    polls = iter([{"20": ("COMPLETED", "None"), "21_0": ("PENDING", "Dependency"), "21_1": ("PENDING", "Dependency")}, {}])
    monkeypatch.setattr(slurm, "_squeue", lambda ids: next(polls))
    monkeypatch.setattr(slurm.time, "sleep", lambda s: None)
    tasks = [SimpleNamespace(name=n) for n in ("train", "score 1/2", "score 2/2")]
    assert slurm._wait(list(zip(jobs, tasks)), {"20": jobs[1:]}, 0.0, lambda line: None) == 9


def test_a_training_that_saved_its_run_but_exited_non_zero_still_gets_scored(tmp_path, monkeypatch) -> None:
    """Every process of the training job returned (the run is on disk) yet the job exited non-zero,
    so SLURM will never start its afterok scorings: the wait drops their dependency once (the whole
    array) and they run."""
    from types import SimpleNamespace

    from robustmri.bench import slurm

    jobs = [_FakeJob("30", tmp_path, 0), _FakeJob("31_0", tmp_path, 2), _FakeJob("31_1", tmp_path, 3)]
    never = ("PENDING", "DependencyNeverSatisfied")
    polls = iter([{"30": ("RUNNING", "None"), "31_0": ("PENDING", "Dependency"), "31_1": ("PENDING", "Dependency")},
                  {"31_0": never, "31_1": never}, {"31_0": never, "31_1": ("RUNNING", "None")}, {}])
    monkeypatch.setattr(slurm, "_squeue", lambda ids: next(polls))
    commands: list[list[str]] = []
    monkeypatch.setattr(slurm.subprocess, "run", lambda cmd, **kw: commands.append(cmd))
    monkeypatch.setattr(slurm.time, "sleep", lambda s: None)
    lines: list[str] = []
    tasks = [SimpleNamespace(name=n) for n in ("train", "score 1/2", "score 2/2")]
    assert slurm._wait(list(zip(jobs, tasks)), {"30": jobs[1:]}, 0.0, lines.append) == 5
    assert commands == [["scontrol", "update", "jobid=31", "dependency="]]
    assert any("training job 30 returned from every process" in line for line in lines)
