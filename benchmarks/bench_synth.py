"""Benchmark: simulate the embedded dataset (20 subjects at 128^2, default slab) and print timings.

Run: ``.venv/bin/python benchmarks/bench_synth.py [--subjects 20] [--size 128] [--threads 2]``.
Prints the cold time (template loading and smoothing included), the warm per-subject time, and the
time to write the whole dataset as NIfTI through ``write_dataset`` (what ``robustmri data synth`` does).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="seconds: one subject, 4 slices of 64x64 (the tests run it)")
    args = parser.parse_args()
    if args.quick:
        args.subjects, args.size, args.slices = 1, 64, 4
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from robustmri.data import anatomy
    from robustmri.data.simulator import SynthConfig, synth_subject
    from robustmri.data.embedded import write_dataset

    cfg = SynthConfig(size=args.size, n_slices=args.slices)
    t0 = time.perf_counter()
    anatomy.template_tissues(cfg.slab_mm, cfg.voxel_mm)
    t_template = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i in range(3):
        synth_subject(i, cfg)
    t_subject = (time.perf_counter() - t0) / 3

    anatomy._load_full_template.cache_clear()
    anatomy._template_tissues_cached.cache_clear()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_dataset(os.path.join(tmp, "ds"), args.subjects, cfg)
        t_total = time.perf_counter() - t0

    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"template load + smoothing (cold): {t_template:6.2f} s")
    print(f"one subject {args.size}x{args.size}x{args.slices}, 4 contrasts (warm): {t_subject:6.2f} s")
    print(f"write_dataset {args.subjects} subjects, cold start, NIfTI included: {t_total:6.2f} s (goal <= 60 s)")


if __name__ == "__main__":
    main()
