"""A full disk at any write: one error line naming the path, the free space and what to do (after
whatever progress was printed), exit status 2,
the manifest saying why the run stopped, and the same command resuming once there is room.

The disk is filled by injection, where each writer meets it: torch's serializer at a checkpoint
(it raises "unexpected pos", not the system's error), a results cell's CSV, and the report's files
(at the fsync before a rename)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from robustmri.atomic import as_disk_full, atomic_path, write_text_atomic
from robustmri.cli import main
from robustmri.errors import os_error_message

SUITE = """
name = "disk-full"
directions = ["t1->t2"]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]
embedded = { n_slices = 4 }

[train]
steps = 2
batch_size = 2

[[models]]
name = "pix2pix"
size = "tiny"

[perturbations]
names = ["gaussian_noise"]
severities = [2]
"""

TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4736 vs 4624")


def test_a_write_that_fails_for_want_of_space_names_its_final_path(tmp_path) -> None:
    """Known answers of the translation: torch's part-way failure and the system's ENOSPC (without a
    file name, as fsync raises it) become OSError(ENOSPC) naming the final path; any other error
    passes through unchanged, and nothing is left at the path."""
    target = tmp_path / "ckpt.pt"
    with pytest.raises(OSError) as info:
        with atomic_path(target):
            raise TORCH_FULL
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target) and not target.exists()
    with pytest.raises(OSError) as info:
        with atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.filename == str(target)
    with pytest.raises(ValueError):
        with atomic_path(target):
            raise ValueError("a bug, not a disk")
    assert as_disk_full(RuntimeError("shape mismatch"), target) is None
    assert list(tmp_path.iterdir()) == []
    line = os_error_message(OSError(errno.ENOSPC, "No space left on device", str(target)))
    assert str(target) in line and "No space left on device" in line and "MiB free" in line and "run the same command again" in line
    assert "\n" not in line


def _bench(out: Path, suite: Path) -> int:
    return main(["bench", "--suite", str(suite), "--out", str(out)])


def test_a_full_disk_stops_the_bench_with_one_line_and_the_same_command_resumes(tmp_path, monkeypatch, capsys) -> None:
    import pandas as pd
    import torch

    import robustmri.atomic as atomic

    monkeypatch.setenv("ROBUSTMRI_CACHE", str(tmp_path / "cache"))
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    real_save, real_to_csv, real_settle = torch.save, pd.DataFrame.to_csv, atomic._settle

    def full_save(obj, f, *a, **k):  # noqa: ANN001, ANN002, ANN003
        raise TORCH_FULL

    def full_csv(self, path=None, *a, **k):  # noqa: ANN001, ANN002, ANN003
        if path is not None and "cells" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_to_csv(self, path, *a, **k)

    def full_report(path, directory):  # noqa: ANN001
        if "report" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_settle(path, directory)

    stops = []
    for where, patch in (("runs", ("save", full_save)), ("cells", ("to_csv", full_csv)), ("report", ("settle", full_report))):
        with monkeypatch.context() as m:
            name, fake = patch
            if name == "save":
                m.setattr(torch, "save", fake)
            elif name == "to_csv":
                m.setattr(pd.DataFrame, "to_csv", fake)
            else:
                m.setattr(atomic, "_settle", fake)
            capsys.readouterr()
            status = _bench(out, suite)
            stderr = capsys.readouterr().err
        errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
        assert status == 2, (where, stderr[-2000:])
        assert len(errors) == 1 and "Traceback" not in stderr and stderr.strip().endswith(errors[0]), stderr[-2000:]
        err = errors[0]
        assert "No space left on device" in err and "MiB free" in err and "run the same command again" in err, err
        assert f"{out}/{where}" in err or f"{out / where}" in err, (where, err)
        manifest = json.loads((out / "manifest.json").read_text())
        if where == "report":  # the results are whole: only publishing them (robustmri.publish) stopped
            assert manifest["status"] == "complete"
        else:
            assert manifest["status"] == "failed" and "No space left on device" in manifest["reason"]
        stops.append(where)
    assert torch.save is real_save
    assert _bench(out, suite) == 0  # room again: the same command finishes
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert (out / "results.csv").is_file() and (out / "report").is_dir()
    assert stops == ["runs", "cells", "report"]


def test_a_translate_or_eval_output_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """The other writers share the path: any atomic write meeting ENOSPC ends as one line, exit 2."""
    import robustmri.atomic as atomic

    def full(path, directory):  # noqa: ANN001
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_settle", full)
    with pytest.raises(OSError) as info:
        write_text_atomic(tmp_path / "scores.csv", "a,b\n")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "scores.csv")
