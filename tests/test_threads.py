"""torch's thread pool follows the CPUs the process was given (SLURM, affinity, cgroup quota)."""

from __future__ import annotations

import os

import torch

from robustmri import threads


def test_slurm_affinity_and_cgroup_limits_are_all_honoured(monkeypatch, tmp_path) -> None:
    read_quota = threads._cgroup_cpus
    monkeypatch.setattr(threads, "_affinity_cpus", lambda: 8)
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: None)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert threads.allotted_cpus() == 8
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert threads.allotted_cpus() == 3
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: 2)
    assert threads.allotted_cpus() == 2
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "garbage")
    assert threads.allotted_cpus() == 2
    # cgroup v2 quota file: 150000 / 100000 -> 2 CPUs; "max" -> no limit
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert read_quota(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert read_quota(tmp_path) is None


def test_configure_threads_sets_torch_unless_omp_num_threads_decides(monkeypatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(threads, "allotted_cpus", lambda: 1)
        assert threads.configure_threads() == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(before)
        monkeypatch.setenv("OMP_NUM_THREADS", str(before))
        assert threads.configure_threads() is None and torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)
    assert os.environ.get("OMP_NUM_THREADS") == str(before)  # the test's own setting, undone by monkeypatch
