"""Registration speed and accuracy on embedded subjects with a known rigid misregistration.

    .venv/bin/python benchmarks/bench_register.py                    # 128^2 x 32 slices, 3 subjects
    .venv/bin/python benchmarks/bench_register.py --size 256 --slices 48
    .venv/bin/python benchmarks/bench_register.py --interpolators linear,bspline   # the metric's interpolator, side by side

Per subject: wall time of `register_volume` (rigid, the default settings of `data prepare
--register`), the largest error (mm) over brain voxels of the recovered transform composed with
the simulated motion, and the residual rotation (degrees). SimpleITK runs on one thread (its
histogram sums depend on the thread count; one thread gives one answer per seed).
``--interpolators`` runs every subject once per interpolator of the moving image inside the metric
(``robustmri.data.register.INTERPOLATOR``; the default is the package's) and prints their medians
side by side: the measurement behind that constant's choice.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--misregistration", type=float, default=4.0, help="mm per axis and degrees in-plane, at most")
    ap.add_argument("--slab", type=float, nargs=2, default=(-20.0, 60.0), help="world z range (mm) of the slab")
    ap.add_argument("--interpolators", default="", help="comma-separated: linear, bspline (default: the package's)")
    ap.add_argument("--quick", action="store_true", help="seconds: one subject, 8 slices of 64x64 (the tests run it)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.slices, args.subjects = 64, 8, 1

    from robustmri.data.deform import rotation_matrix
    from robustmri.data.simulator import SynthConfig
    from robustmri.data.embedded import write_dataset
    from robustmri.data.readers import load_volume
    from robustmri.data.register import register_volume, rotation_angle_deg

    cfg = SynthConfig(size=args.size, n_slices=args.slices, seed=3, contrasts=("t1", "t2"),
                      misregistration_mm=args.misregistration, slab_mm=tuple(args.slab))
    print(f"{platform.processor() or platform.machine()}; {args.subjects} subjects at {args.size}^2 x {args.slices} "
          f"slices, slab {args.slab[0]:g}..{args.slab[1]:g} mm, misregistration up to {args.misregistration:g} mm / deg")
    import robustmri.data.register as R

    default = R.INTERPOLATOR
    kinds = [k for k in args.interpolators.split(",") if k] or ["default"]
    choices = {"default": default, "linear": lambda sitk: sitk.sitkLinear, "bspline": lambda sitk: sitk.sitkBSpline}
    unknown = set(kinds) - set(choices)
    if unknown:
        ap.error(f"unknown interpolator(s) {sorted(unknown)}: use linear, bspline")
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = write_dataset(Path(tmp) / "raw", args.subjects, cfg)
        for kind in kinds:
            R.INTERPOLATOR = choices[kind]
            times, maxima, means = [], [], []
            for i in range(args.subjects):
                sub = root / f"sub-{i:03d}"
                fixed, moving = load_volume(sub / "t1.nii.gz"), load_volume(sub / "t2.nii.gz")
                p = json.loads((sub / "params.json").read_text())["misregistration"]["t2"]
                m = rotation_matrix(np.array([0.0, 0.0, p["rotation_deg"]]))
                c = np.array([0.0, -18.0, 0.5 * (cfg.slab_mm[0] + cfg.slab_mm[1])])
                t = np.array(p["translation_mm"])
                t0 = time.perf_counter()
                r = register_volume(fixed.data, fixed.affine, moving.data, moving.affine, "rigid", seed=i)
                times.append(time.perf_counter() - t0)
                vox = np.argwhere(fixed.data > 0.1 * fixed.data.max())
                pts = (fixed.affine @ np.c_[vox, np.ones(len(vox))].T)[:3]
                back = m @ (r.matrix[:3, :3] @ pts + r.matrix[:3, 3:4] - c[:, None]) + c[:, None] + t[:, None]
                err = np.linalg.norm(back - pts, axis=0)
                maxima.append(float(err.max()))
                means.append(float(err.mean()))
                print(f"[{kind}] {sub.name}: simulated {p['rotation_deg']:+.2f} deg, shift {np.round(t, 2).tolist()} mm | "
                      f"error mean {err.mean():.2f} mm, max {err.max():.2f} mm, rotation {rotation_angle_deg(m @ r.matrix[:3, :3]):.2f} deg "
                      f"| {times[-1]:.1f} s, {r.iterations} iterations")
            summary[kind] = (float(np.median(means)), float(np.median(maxima)), float(np.median(times)))
    R.INTERPOLATOR = default
    for kind, (mean, mx, sec) in summary.items():
        print(f"{kind}: median over subjects of the mean error {mean:.2f} mm, of the max error {mx:.2f} mm; "
              f"median {sec:.1f} s per subject (one moving contrast)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
