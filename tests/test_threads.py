"""torch's thread pool follows the CPUs the process was given (SLURM, affinity, cgroup quota)."""

from __future__ import annotations

import os
import subprocess
import sys

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


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_processes_that_share_cpus_split_them_and_idle_ones_take_no_share(tmp_path) -> None:
    share = threads.CpuShare(tmp_path / "reg")
    me = os.getpid()
    cpus = frozenset({0, 1})
    share.register(cpus)
    assert share.threads_for(cpus, 2) == 2  # alone
    other = _sleeper()
    try:
        share.register(cpus, pid=other.pid)
        assert share.threads_for(cpus, 2) == 2  # registered but idle (a parent waiting): no share
        share.touch(pid=other.pid)
        share.touch()
        assert share.threads_for(cpus, 2) == 1 and share.threads_for(cpus, 2, pid=other.pid) == 1
        assert share.threads_for(cpus, 3) + share.threads_for(cpus, 3, pid=other.pid) == 3  # the older takes the remainder
        assert share.threads_for(frozenset({2, 3}), 2) == 2  # pinned to other CPUs: nothing shared
        os.utime(share.path(other.pid), (0, 0))  # stopped working long ago
        assert share.threads_for(cpus, 2) == 2
        share.touch(pid=other.pid)
    finally:
        other.kill()
        other.wait()
    assert share.threads_for(cpus, 2) == 2  # a dead process's file is removed by the next reader
    assert not share.path(other.pid).exists() and share.path(me).exists()
    share.unregister()
    assert not share.path(me).exists()


def test_a_working_process_resizes_torch_when_another_starts_and_ends(monkeypatch, tmp_path) -> None:
    before = torch.get_num_threads()
    monkeypatch.setenv("ROBUSTMRI_CPU_SHARE", "1")
    monkeypatch.setenv("ROBUSTMRI_CPU_SHARE_DIR", str(tmp_path / "reg"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "allotted_cpus", lambda: 2)
    monkeypatch.setattr(threads, "_cpu_set", lambda: frozenset({0, 1}))
    monkeypatch.setattr(threads, "_share", None)
    monkeypatch.setattr(threads, "REBALANCE_S", 0.0)
    other = _sleeper()
    try:
        assert threads.configure_threads() == 2 and torch.get_num_threads() == 2
        share = threads.CpuShare()
        share.register(frozenset({0, 1}), pid=other.pid)
        share.touch(pid=other.pid)
        assert threads.rebalance() == 1 and torch.get_num_threads() == 1
        other.kill()
        other.wait()
        assert threads.rebalance() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("ROBUSTMRI_CPU_SHARE", "0")
        monkeypatch.setattr(threads, "_share", None)
        assert threads.configure_threads() == 2 and threads.rebalance() is None  # sharing off: nothing re-read
    finally:
        if other.poll() is None:
            other.kill()
        torch.set_num_threads(before)
