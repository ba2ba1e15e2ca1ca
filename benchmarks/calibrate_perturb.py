"""Measure every corruption's mean PSNR / SSIM against the clean image per severity, on the
embedded dataset, and write the table into docs/perturbations.md (between marker comments).

    .venv/bin/python benchmarks/calibrate_perturb.py                # measure + rewrite the docs table
    .venv/bin/python benchmarks/calibrate_perturb.py --no-write     # print only
    .venv/bin/python benchmarks/calibrate_perturb.py --fit          # fit each severity to the PSNR targets
    .venv/bin/python benchmarks/calibrate_perturb.py --fit --only resolution  # fit one corruption

PSNR and SSIM: the ``robustmri`` protocol's, as the benchmark reports them (masked, data range 1,
Gaussian-window SSIM; ``robustmri.perturb.calibration.calibration_scores``), averaged over slices.
Slices: T1 and T2 of ``embedded_slices(n_subjects, size, n_slices, seed)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from robustmri.atomic import write_text_atomic
from robustmri.data.embedded import embedded_slices
from robustmri.perturb.calibration import (
    FIT_KNOBS,
    PSNR_TARGETS,
    calibrate,
    fit_severity,
    markdown_table,
    non_monotone,
    replace_between_markers,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "perturbations.md"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="slice size in pixels (default 128)")
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--slices", type=int, default=8, help="axial slices per subject")
    ap.add_argument("--seed", type=int, default=0, help="dataset and perturbation seed")
    ap.add_argument("--docs", type=Path, default=DOCS)
    ap.add_argument("--no-write", action="store_true", help="print the table, do not touch the docs")
    ap.add_argument("--fit", action="store_true", help="fit every severity's strength to the PSNR targets and print them")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="with --fit: fit only these corruptions")
    ap.add_argument("--quick", action="store_true", help="seconds: one subject, 2 slices of 64x64, print only (the tests run it)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.subjects, args.slices, args.no_write, args.fit = 64, 1, 2, True, False
    torch.set_num_threads(2)

    t0 = time.perf_counter()
    d = embedded_slices(n_subjects=args.subjects, size=args.size, n_slices=args.slices, seed=args.seed, contrasts=("t1", "t2"))
    x = torch.cat([d["t1"], d["t2"]])
    mask = torch.cat([d["mask"], d["mask"]])
    spacing = float(d["spacing"][0])
    if args.fit:
        for name, (keys, _) in FIT_KNOBS.items():
            if args.only and name not in args.only:
                continue
            for sev, target in enumerate(PSNR_TARGETS, start=1):
                v, got = fit_severity(name, sev, target, x, mask, spacing, seed=args.seed,
                                      upper=1.0 if name == "ghosting" else None)
                print(f"{name:16s} s{sev} {keys[0]}={v:.4g} -> {got:.2f} dB (target {target})")
        return 0
    rows = calibrate(x, mask, seed=args.seed, spacing_mm=spacing)
    table = markdown_table(rows)
    header = (
        f"Measured on {x.shape[0]} slices ({args.subjects} embedded subjects x {args.slices} axial slices x "
        f"T1, T2) at {args.size}x{args.size} px ({spacing:.3g} mm pixels), seed {args.seed}; every corruption acts on "
        "the whole field of view; PSNR with data_range 1 inside the brain mask, SSIM = mean of scikit-image's SSIM "
        "map inside the mask.\n\n"
    )
    print(table)
    bad = non_monotone(rows)
    print(f"\n{len(rows)} cells in {time.perf_counter() - t0:.1f} s; non-monotone: {bad or 'none'}")
    if not args.no_write:
        text = args.docs.read_text(encoding="utf-8") if args.docs.exists() else "# Perturbations\n"
        write_text_atomic(args.docs, replace_between_markers(text, header + table))
        print(f"wrote {args.docs}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
