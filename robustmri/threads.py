"""How many CPU threads torch may use: the CPUs this process was given, not every core of the node.

Two torch processes whose OpenMP pools together exceed the cores they share spin against each other
and each runs 20-70x slower (measured on 2 cores). On a shared node a process is given fewer CPUs
than the machine has: SLURM says so in ``SLURM_CPUS_PER_TASK``, a cpuset in the affinity mask, a
container in its cgroup CPU quota. torch's default (every physical core) ignores all three.
:func:`configure_threads` sizes torch's pool to the smallest of them, unless ``OMP_NUM_THREADS`` is
set (an explicit choice always wins; torchrun sets it to 1 for its workers).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _slurm_cpus() -> int | None:
    value = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _affinity_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return None


def _cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """CPUs of a cgroup v2 quota (``cpu.max`` = "quota period"; "max" = no limit)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def allotted_cpus() -> int:
    """The CPUs this process may use: the smallest of SLURM's ``SLURM_CPUS_PER_TASK``, the CPU
    affinity mask and the cgroup quota that are known, else ``os.cpu_count()`` (at least 1)."""
    known = [n for n in (_slurm_cpus(), _affinity_cpus(), _cgroup_cpus()) if n]
    return max(1, min(known) if known else (os.cpu_count() or 1))


def configure_threads() -> int | None:
    """Set torch's intra-op threads to :func:`allotted_cpus` unless ``OMP_NUM_THREADS`` is set;
    returns the number set, or None when the environment decides."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    n = allotted_cpus()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
