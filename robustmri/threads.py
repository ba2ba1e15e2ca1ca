"""How many CPU threads torch may use: the CPUs this process was given, not every core of the node.

Two torch processes whose OpenMP pools together exceed the cores they share spin against each other
and each runs 20-70x slower (measured on 2 cores). On a shared node a process is given fewer CPUs
than the machine has: SLURM says so in ``SLURM_CPUS_PER_TASK``, a cpuset in the affinity mask, a
container in its cgroup CPU quota. torch's default (every physical core) ignores all three.
:func:`configure_threads` sizes torch's pool to the smallest of them, unless ``OMP_NUM_THREADS`` is
set (an explicit choice always wins; torchrun sets it to 1 for its workers).

Processes that share a node also share what they were given. Every robustmri process that sizes
its pool registers itself in a node-local folder (:class:`CpuShare`: one small JSON file per
process with its pid and CPU set, under the system's temporary folder). The live processes whose
CPU sets overlap split those CPUs between them, and each re-reads the folder every few seconds
while it works (:func:`rebalance`, called by the training loop and the scoring loop): a bench
started beside another one takes half the cores, and the first gives them back when it ends.
Measured with ``benchmarks/parallel_benches.py --unpinned`` (README). ``ROBUSTMRI_CPU_SHARE=0``
turns the sharing off. A thread count changes the order of float sums, not what is computed: a
run that shared its CPUs agrees with one alone within the drift check's training tolerances,
which are measured with one thread among their float-order variants (:mod:`robustmri.bench.drift`).
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path

SHARE_ENV = "ROBUSTMRI_CPU_SHARE"
"""Set to 0 to size the pool alone, without the node-local registry of robustmri processes."""

SHARE_DIR_ENV = "ROBUSTMRI_CPU_SHARE_DIR"
"""The registry folder (default: ``<temporary folder>/robustmri-cpu-share-<uid>``, node-local)."""

REBALANCE_S = 2.0
"""How often (seconds) a working process re-reads the registry and marks itself active."""

ACTIVE_S = 15.0
"""A registered process counts as working while its file was touched (by :func:`rebalance`, from a
training or scoring loop) within this many seconds. A process that only waits (a parent waiting
for its child, ``robustmri bench --executor slurm`` polling the queue) takes no share."""


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


def _cpu_set() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset(range(os.cpu_count() or 1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class CpuShare:
    """The node-local registry of robustmri processes that size torch's pool.

    ``root`` holds one ``<host>-<pid>.json`` per registered process: ``{"pid", "host", "cpus",
    "started"}``. Files of processes that no longer run (killed, crashed) are removed by whoever
    reads them next."""

    def __init__(self, root: Path | None = None) -> None:
        default = Path(tempfile.gettempdir()) / f"robustmri-cpu-share-{os.getuid() if hasattr(os, 'getuid') else 0}"
        self.root = Path(os.environ.get(SHARE_DIR_ENV) or root or default)
        self.host = socket.gethostname()

    def path(self, pid: int) -> Path:
        return self.root / f"{self.host}-{pid}.json"

    def register(self, cpus: frozenset[int], pid: int | None = None) -> Path:
        """Record process ``pid`` (default: this one) with its CPU set; returns its file."""
        pid = os.getpid() if pid is None else pid
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.path(pid)
        record = {"pid": pid, "host": self.host, "cpus": sorted(cpus), "started": time.time()}
        tmp = target.with_suffix(f".tmp{pid}")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, target)  # readers never see half a file
        os.utime(target, (0, 0))  # registered, not yet working: takes no share until it touches
        return target

    def unregister(self, pid: int | None = None) -> None:
        self.path(os.getpid() if pid is None else pid).unlink(missing_ok=True)

    def touch(self, pid: int | None = None) -> None:
        """Mark process ``pid`` (default: this one) as working now."""
        os.utime(self.path(os.getpid() if pid is None else pid))

    def live(self, now: float | None = None) -> list[dict]:
        """Records of this host's registered processes that still run and worked within
        :data:`ACTIVE_S` seconds, oldest first (files of dead processes are removed)."""
        now = time.time() if now is None else now
        out = []
        for f in sorted(self.root.glob(f"{self.host}-*.json")) if self.root.is_dir() else []:
            try:
                record = json.loads(f.read_text(encoding="utf-8"))
                pid = int(record["pid"])
                touched = f.stat().st_mtime
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not _alive(pid):
                f.unlink(missing_ok=True)
            elif now - touched <= ACTIVE_S:
                out.append(record)
        return sorted(out, key=lambda r: (r.get("started", 0), r["pid"]))

    def threads_for(self, cpus: frozenset[int], allotted: int, pid: int | None = None) -> int:
        """This process's share of ``allotted`` threads: split evenly between itself and the
        working processes whose CPU sets overlap ``cpus`` (the older ones take the remainder), at
        least 1."""
        pid = os.getpid() if pid is None else pid
        sharing = [r for r in self.live() if set(r.get("cpus", [])) & cpus or r["pid"] == pid]
        pids = [r["pid"] for r in sharing]
        if pid not in pids:
            pids.append(pid)
        n = len(pids)
        base, extra = divmod(allotted, n)
        return max(1, base + (1 if pids.index(pid) < extra else 0))


_share: CpuShare | None = None
_allotted = 0
_last_check = 0.0


def configure_threads() -> int | None:
    """Set torch's intra-op threads to this process's share of :func:`allotted_cpus` (see
    :class:`CpuShare`) unless ``OMP_NUM_THREADS`` is set; returns the number set, or None when
    the environment decides."""
    global _share, _allotted, _last_check
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    n = _allotted = allotted_cpus()
    if os.environ.get(SHARE_ENV, "1") != "0":
        try:
            if _share is None:
                share = CpuShare()
                share.register(_cpu_set())
                import atexit

                atexit.register(share.unregister, os.getpid())
                _share = share
            n = _share.threads_for(_cpu_set(), _allotted)
        except OSError:  # an unwritable temporary folder: size the pool alone
            _share = None
        _last_check = time.monotonic()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def rebalance() -> int | None:
    """Re-read the registry (at most every :data:`REBALANCE_S` seconds) and resize torch's pool
    to this process's current share; returns the new size, or None when nothing was checked.
    Cheap enough to call every training step or scoring batch."""
    global _last_check
    if _share is None or time.monotonic() - _last_check < REBALANCE_S:
        return None
    _last_check = time.monotonic()
    try:
        _share.touch()
        n = _share.threads_for(_cpu_set(), _allotted)
    except OSError:  # the registry folder was removed: register again
        try:
            _share.register(_cpu_set())
            n = _share.threads_for(_cpu_set(), _allotted)
        except OSError:
            return None
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
