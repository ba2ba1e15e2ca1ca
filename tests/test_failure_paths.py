"""Failure paths: a torn log tail, Ctrl-C, OS errors, a refused merge, stale temporary files,
permissions from the umask. Each either continues correctly or stops with one line (exit 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustmri.bench import load_suite, merge_results, run_suite
from robustmri.bench.suite import parse_suite
from robustmri.cli import main
from robustmri.data.embedded import embedded_slices
from robustmri.errors import ConfigError, DataError
from robustmri.train.data import PairedTensors
from robustmri.train.engine import TrainConfig, train

SUITE = """
name = "failure-test"
directions = ["t1->t2"]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]

[train]
steps = STEPS
batch_size = 2

[[models]]
name = "pix2pix"
size = "tiny"

[perturbations]
names = ["gaussian_noise"]
severities = [2]

[eval]
batch_size = 8
"""


def _suite(root: Path, steps: int = 12) -> Path:
    path = root / f"suite{steps}.toml"
    path.write_text(SUITE.replace("STEPS", str(steps)))
    return path


def _pairs() -> PairedTensors:
    d = embedded_slices(n_subjects=2, size=64, n_slices=4, seed=3, contrasts=("t1", "t2"))
    return PairedTensors(d["t1"], d["t2"], d["mask"], d["subject"], d["slice"])


def test_torn_log_tail_is_dropped_and_the_resume_equals_an_uninterrupted_run(tmp_path):
    data = _pairs()
    cfg = dict(model="pix2pix", steps=6, batch_size=2, checkpoint_every=2, log_every=1, seed=1)
    full = train(TrainConfig(**cfg), data, tmp_path / "full", progress=False)
    train(TrainConfig(**cfg), data, tmp_path / "part", progress=False, stop_at=4)
    with open(tmp_path / "part" / "log.jsonl", "a") as fh:
        fh.write('{"step": 5, "elapsed_s": 0.1, "loss_D"')  # an append cut short by a full disk
    resumed = train(TrainConfig(**cfg), data, tmp_path / "part", resume=True, progress=False)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    steps = [json.loads(line)["step"] for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    # a damaged line that is not the last one is not a torn append: one-line error naming the file
    log = tmp_path / "part" / "log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"log.jsonl line 2 is not a log record"):
        train(TrainConfig(**{**cfg, "steps": 6}), data, tmp_path / "part", resume=True, progress=False)


def test_ctrl_c_prints_one_line_and_marks_the_manifest_interrupted(tmp_path, cache_dir):
    suite = _suite(tmp_path, steps=5000)  # minutes of training: the signal lands inside it
    env = {**os.environ, "ROBUSTMRI_CACHE": str(cache_dir)}
    out = tmp_path / "out"
    # the child gets Ctrl-C's default action, as in a terminal: a test run started in the background by a
    # non-interactive shell inherits SIGINT ignored, and Python keeps it ignored (the bench then never stops)
    proc = subprocess.Popen([sys.executable, "-m", "robustmri", "bench", "--suite", str(suite), "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not list(out.glob("runs/*/log.jsonl")) and time.time() < deadline:  # training has logged a step
        time.sleep(0.2)
    assert proc.poll() is None, "the bench ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("interrupted:") and "Traceback" not in err  # progress lines, then one line
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_os_errors_are_one_line(tmp_path, cache_dir, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    capsys.readouterr()
    # a folder under a file: the OS refuses the mkdir, and the OS error becomes one line
    code = main(["bench", "--suite", str(_suite(tmp_path)), "--out", str(not_a_folder / "sub"), "--cache", str(cache_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(not_a_folder) in err[0] and "choose another --out" in err[0], err
    # --out itself a file: refused before any work, naming the fix
    code = main(["bench", "--suite", str(_suite(tmp_path)), "--out", str(not_a_folder), "--cache", str(cache_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"--out {not_a_folder} is a file" in err[0], err


def test_refused_merge_leaves_the_target_untouched(tmp_path, cache_dir):
    a = run_suite(load_suite(_suite(tmp_path, steps=6)), tmp_path / "a", cache=cache_dir, progress=False)
    b = run_suite(load_suite(_suite(tmp_path, steps=8)), tmp_path / "b", cache=cache_dir, progress=False)
    out = tmp_path / "merged"
    with pytest.raises(ConfigError, match="different suite definitions"):
        merge_results(out, [a, b])
    assert not out.exists()  # nothing copied before the refusal
    merge_results(out, [a])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError):
        merge_results(out, [b])  # another suite's cells never land in an existing folder
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_stale_temporaries_are_cleaned_and_files_follow_the_umask(tmp_path, cache_dir):
    suite = load_suite(_suite(tmp_path, steps=6))
    out = tmp_path / "out"
    stale = out / "cells" / ".clean__0.csv.x1y2.tmp"
    fresh = out / "cells" / ".clean__0.csv.a3b4.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_text("partial")
    fresh.write_text("a live writer's file")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    old = os.umask(0o022)
    try:
        run_suite(suite, out, cache=cache_dir, progress=False)
    finally:
        os.umask(old)
    assert not stale.exists() and fresh.exists()
    assert (out / "results.csv").stat().st_mode & 0o777 == 0o644
    assert (out / "runs" / "pix2pix__t1_to_t2__s0" / "checkpoints" / "last.pt").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("entry, fragment", [
    ({"name": "pix2pix", "steps": 0}, "steps must be a positive integer"),
    ({"name": "pix2pix", "batch_size": 0}, "batch_size must be a positive integer"),
    ({"name": "pix2pix", "steps": "ten"}, "steps must be a positive integer"),
    ({"name": "kd_attack", "options": "full"}, "options must be a table"),
])
def test_model_entries_are_validated(entry, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_suite({"name": "x", "models": [entry]}, "s.toml")


def test_stale_partial_folders_of_killed_synth_and_prepare_runs_are_cleaned(tmp_path):
    """kill -9 during a synth or a cache build leaves `.<name>.<random>.partial` folders; the next
    run of the same command removes those older than 10 minutes (never a live writer's, never
    anything that is not robustmri's own pattern)."""
    old = time.time() - 3600
    ds = tmp_path / "ds"
    stale = tmp_path / ".ds.abc123.partial"
    fresh = tmp_path / ".ds.def456.partial"
    other = tmp_path / ".other.abc123.partial"  # another target's: not ours to take
    mine = tmp_path / "ds.partial"  # not robustmri's pattern
    for d in (stale, fresh, other, mine):
        (d / "sub-000").mkdir(parents=True)
        (d / "sub-000" / "t1.nii.gz").write_bytes(b"x" * 1000)
    for d in (stale, other, mine):
        os.utime(d, (old, old))
    assert main(["data", "synth", "--out", str(ds), "--subjects", "2", "--size", "64", "--slices", "2",
                 "--contrasts", "t1,t2"]) == 0
    assert not stale.exists() and fresh.exists() and other.exists() and mine.exists()
    out = tmp_path / "prep"
    out.mkdir()
    build = out / ".slices-0123.zz.partial"
    (build / "chunks").mkdir(parents=True)
    os.utime(build, (old, old))
    assert main(["data", "prepare", str(ds), "--out", str(out), "--size", "64"]) == 0
    assert not build.exists() and (out / "prepared.json").is_file()
