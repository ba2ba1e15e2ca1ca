"""Several robustmri jobs on one node: the smoke bench alone, then two side by side, each pinned to
its own share of the CPUs (what SLURM or `taskset` gives a job; robustmri sizes torch's thread
pool from the affinity mask, robustmri/threads.py). Prints the wall times and the ratio.

    .venv/bin/python benchmarks/parallel_benches.py                 # about 10 min on 2 cores
    .venv/bin/python benchmarks/parallel_benches.py --unpinned      # the same unpinned, as from two terminals
    .venv/bin/python benchmarks/parallel_benches.py --unpinned --no-share   # ... with robustmri's CPU sharing off
    .venv/bin/python benchmarks/parallel_benches.py --quick         # seconds: a 2-step suite (the tests run it)

Each bench runs into a fresh folder (training included) with the prepared data already cached.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path




def bench(out: Path, cpus: list[int] | None, suite: str = "smoke", cache: Path | None = None,
          share: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "robustmri", "bench", "--suite", suite, "--out", str(out), "--no-report"]
    if cache is not None:
        cmd += ["--cache", str(cache)]
    if cpus is not None:
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["ROBUSTMRI_CPU_SHARE"] = "1" if share else "0"  # robustmri.threads: concurrent processes split the CPUs
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def wait(procs: list[subprocess.Popen]) -> float:
    t0 = time.perf_counter()
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a bench failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unpinned", action="store_true", help="do not pin the two benches (no thread rule applies)")
    ap.add_argument("--no-share", action="store_true", help="turn robustmri's CPU sharing off (ROBUSTMRI_CPU_SHARE=0)")
    ap.add_argument("--quick", action="store_true", help="seconds: a 2-step suite on 4 subjects instead of smoke (the tests run it)")
    args = ap.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    half = max(1, len(cores) // 2)
    print(f"{platform.processor() or platform.machine()}, {len(cores)} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite, cache = "smoke", None
        if args.quick:
            from _quick_suite import write_quick_suite

            suite, cache = str(write_quick_suite(root, "parallel-quick", ("gaussian_noise",))), root / "cache"
            wait([bench(root / "prepare", None, suite, cache)])  # prepares the data once: the timed runs find it cached
        t_alone = wait([bench(root / "alone", None, suite, cache)])
        print(f"one {'quick' if args.quick else 'smoke'} bench alone (all {len(cores)} CPUs): {t_alone:.0f} s")
        pins = [None, None] if args.unpinned else [cores[:half], cores[half:2 * half]]
        t0 = time.perf_counter()
        procs = [bench(root / f"pair{i}", pins[i], suite, cache, share=not args.no_share) for i in range(2)]
        t_pair = wait(procs)
        t_pair = time.perf_counter() - t0
        how = ("unpinned" if args.unpinned else f"each pinned to {half} CPU(s)") + (
            ", CPU sharing off" if args.no_share else ", CPU sharing on")
        print(f"two {'quick' if args.quick else 'smoke'} benches side by side ({how}): {t_pair:.0f} s for both; "
              f"{t_pair / t_alone:.2f}x one alone (two sequential runs: 2.00x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
