"""Fault injection: a full disk (ENOSPC) at each write point of robustmri. Every failure must end
with exit status 2 and one line naming the path and the fix, and the same command re-run once
there is space again must give exactly what an uninterrupted run gives.

Write points: a bench cell, a training checkpoint, the training log append, the data cache build
(prepare), the embedded synthesis, the merge of shards. The fault is injected by wrapping
``os.replace`` (every atomic write ends with one) or the log's ``open``, failing the n-th call whose
path matches."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch

from robustmri.cli import main

SUITE = """
name = "fault-test"
directions = ["t1->t2"]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]

[train]
steps = 4
batch_size = 2

[[models]]
name = "pix2pix"
size = "tiny"

[perturbations]
names = ["gaussian_noise", "ghosting"]
severities = [1, 3]

[eval]
batch_size = 8
"""


def _full_disk(monkeypatch, match: str, nth: int = 1) -> dict[str, int]:
    """Make the ``nth`` ``os.replace`` whose destination contains ``match`` fail with ENOSPC."""
    real = os.replace
    seen = {"calls": 0, "failed": 0}

    def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if match in str(dst):
            seen["calls"] += 1
            if seen["calls"] == nth:
                seen["failed"] += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return seen


def _one_line_enospc(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    assert "No space left on device" in err[0] and "free some space" in err[0], err[0]
    return err[0]


def _digest(folder: Path, pattern: str = "*") -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob(pattern)) if p.is_file()}


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    return path


@pytest.fixture(scope="module")
def clean_bench(tmp_path_factory, cache_dir) -> Path:
    root = tmp_path_factory.mktemp("clean-bench")
    (root / "suite.toml").write_text(SUITE)
    assert main(["bench", "--suite", str(root / "suite.toml"), "--out", str(root / "out"), "--cache", str(cache_dir),
                 "--no-report"]) == 0
    return root / "out"


@pytest.mark.parametrize(("match", "nth"), [("/cells/", 3), (".pt", 1), ("results.csv", 1)],
                         ids=["cell", "checkpoint", "results-table"])
def test_full_disk_in_a_bench_then_rerun_equals_an_uninterrupted_run(match, nth, suite, tmp_path, cache_dir,
                                                                       clean_bench, monkeypatch, capsys):
    out = tmp_path / "out"
    args = ["bench", "--suite", str(suite), "--out", str(out), "--cache", str(cache_dir), "--no-report"]
    seen = _full_disk(monkeypatch, match, nth)
    assert main(args) == 2
    assert seen["failed"] == 1
    _one_line_enospc(capsys)
    monkeypatch.undo()
    assert not list(out.rglob("*.tmp")), "a failed write left its temporary file behind"
    assert main(args) == 0
    assert (out / "results.csv").read_bytes() == (clean_bench / "results.csv").read_bytes()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault-ds") / "ds"
    assert main(["data", "synth", "--out", str(root), "--subjects", "4", "--size", "64", "--slices", "4",
                 "--contrasts", "t1,t2"]) == 0
    return root


def _train_args(dataset: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["train", "--model", "pix2pix", "--size", "tiny", "--steps", "6", "--batch-size", "2",
            "--checkpoint-every", "2", "--data", str(dataset), "--image-size", "64", "--out", str(out),
            "--cache", str(cache), *extra]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    return payload["model"]


@pytest.mark.parametrize("where", ["checkpoint", "log"])
def test_full_disk_while_training_then_resume_equals_an_uninterrupted_run(where, dataset, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    assert main(_train_args(dataset, tmp_path / "full", cache)) == 0
    run = tmp_path / "run"
    if where == "checkpoint":
        seen = _full_disk(monkeypatch, ".pt", 2)
    else:
        import robustmri.train.engine as engine

        seen = {"calls": 0, "failed": 0}

        def failing_open(path, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
            if str(path).endswith("log.jsonl") and "a" in mode:
                seen["calls"] += 1
                if seen["calls"] == 1:
                    seen["failed"] += 1
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return open(path, mode, *args, **kwargs)

        monkeypatch.setattr(engine, "open", failing_open, raising=False)
    assert main(_train_args(dataset, run, cache)) == 2
    assert seen["failed"] == 1
    _one_line_enospc(capsys)
    monkeypatch.undo()
    assert main(_train_args(dataset, run, cache, "--resume")) == 0
    full, resumed = _weights(tmp_path / "full"), _weights(run)
    for key, value in full.items():
        assert torch.equal(value, resumed[key]), key


def test_full_disk_while_preparing_then_rerun_equals_an_uninterrupted_run(dataset, tmp_path, monkeypatch, capsys):
    assert main(["data", "prepare", str(dataset), "--out", str(tmp_path / "clean"), "--size", "64"]) == 0
    capsys.readouterr()
    seen = _full_disk(monkeypatch, "slices-", 1)
    out = tmp_path / "prep"
    assert main(["data", "prepare", str(dataset), "--out", str(out), "--size", "64"]) == 2
    assert seen["failed"] == 1
    _one_line_enospc(capsys)
    monkeypatch.undo()
    assert not out.exists() or not [p for p in out.iterdir() if p.name.startswith("slices-")]
    assert main(["data", "prepare", str(dataset), "--out", str(out), "--size", "64"]) == 0
    assert _digest(out, "*.npy") == _digest(tmp_path / "clean", "*.npy")


def test_full_disk_while_synthesising_then_rerun_equals_an_uninterrupted_run(dataset, tmp_path, monkeypatch, capsys):
    seen = _full_disk(monkeypatch, "t2.nii.gz", 2)
    out = tmp_path / "ds"
    args = ["data", "synth", "--out", str(out), "--subjects", "4", "--size", "64", "--slices", "4", "--contrasts", "t1,t2"]
    assert main(args) == 2
    assert seen["failed"] == 1
    _one_line_enospc(capsys)
    monkeypatch.undo()
    assert not out.exists(), "an interrupted synth leaves nothing at --out"
    assert main(args) == 0
    assert _digest(out) == _digest(dataset)


def test_full_disk_while_merging_leaves_the_target_as_it_was(clean_bench, tmp_path, monkeypatch, capsys):
    out = tmp_path / "merged"
    seen = _full_disk(monkeypatch, str(out), 2)
    assert main(["merge", str(out), str(clean_bench)]) == 2
    assert seen["failed"] == 1
    _one_line_enospc(capsys)
    monkeypatch.undo()
    assert not out.exists() or not list(out.rglob("*.tmp"))
    assert main(["merge", str(out), str(clean_bench)]) == 0
    assert (out / "results.csv").read_bytes() == (clean_bench / "results.csv").read_bytes()
