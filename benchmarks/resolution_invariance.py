"""Does a severity mean the same at 64, 128 and 256 pixels? Input PSNR of every corruption and
severity on the same embedded subjects simulated at the three grids (same field of view, 210 mm).

    .venv/bin/python benchmarks/resolution_invariance.py

PSNR: data_range 1, MSE inside the brain mask, mean over slices (2 subjects x 4 slices x T1, T2,
simulator defaults). Printed as a Markdown table with the largest |64 - 256| gap per corruption;
tests/test_threat_model.py asserts a gap of at most 1 dB for the corruptions that reach it.
"""

from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    from robustmri.data.embedded import embedded_slices
    from robustmri.perturb import corruption_grid, list_perturbations
    from robustmri.perturb.calibration import masked_psnr

    sizes = (64, 128, 256)
    psnr: dict[tuple[str, int, int], float] = {}
    for size in sizes:
        d = embedded_slices(n_subjects=args.subjects, size=size, n_slices=args.slices, seed=args.seed,
                            contrasts=("t1", "t2"))
        x, m = torch.cat([d["t1"], d["t2"]]), torch.cat([d["mask"], d["mask"]])
        for cell in corruption_grid(x, seed=args.seed, mask=m, spacing_mm=float(d["spacing"][0])):
            psnr[(cell.name, cell.severity, size)] = float(masked_psnr(x, cell.images, m).mean())
    print("| corruption | severity | 64 px (3.28 mm) | 128 px (1.64 mm) | 256 px (0.82 mm) | 256 - 64 (dB) |")
    print("|---|---:|---:|---:|---:|---:|")
    worst = {}
    for name in list_perturbations(include_adversarial=False):
        for sev in range(1, 6):
            v = [psnr[(name, sev, s)] for s in sizes]
            gap = v[2] - v[0]
            worst[name] = max(worst.get(name, 0.0), abs(gap))
            print(f"| {name} | {sev} | {v[0]:.2f} | {v[1]:.2f} | {v[2]:.2f} | {gap:+.2f} |")
    print()
    for name, gap in worst.items():
        print(f"{name:16s} largest |256 - 64| gap {gap:.2f} dB {'(within 1 dB)' if gap <= 1.0 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
