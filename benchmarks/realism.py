"""Realism figures of the embedded simulator, kept honest: tissue contrast ratios per contrast and
site profile against typical values, and the correlation of noiseless simulated T1w with the real
ICBM152 T1 template.

    .venv/bin/python benchmarks/realism.py [--size 128] [--subjects 8]

Contrast ratios: median intensity of GM and of CSF over the median of WM inside each label's
interior (voxels whose 6 neighbours share the label), on noiseless subjects with the full matrix
and no bias field, per site profile (``--subjects`` subjects each). The typical ranges printed
beside them are approximate values for clinical brain images (inferred from the relaxation times
of :mod:`robustmri.data.tissues` and the usual appearance of each contrast; not measured on a
real dataset here): an out-of-range ratio is a flag to look at, not a failure.

Template correlation: one subject with no subject transform, no remodelling, no noise and no bias
(the anatomy is the template's), Pearson r between its T1w and nilearn's ICBM152 2009a T1
template sampled on the same grid, inside the brain. Run with the default (spin-echo, fixed) T1w
and with each site profile's T1w.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

TYPICAL = {  # (GM/WM, CSF/WM) ranges, approximate
    "t1": ((0.60, 0.90), (0.20, 0.60)),
    "t2": ((1.10, 1.60), (1.80, 4.00)),
    "pd": ((1.05, 1.30), (1.05, 1.60)),
    "flair": ((1.00, 1.40), (0.05, 0.60)),
}


def contrast_ratios(size: int, subjects: int) -> dict[str, dict[str, tuple[float, float]]]:
    from robustmri.data.acquisition import SITE_PROFILES
    from robustmri.data.simulator import SynthConfig, synth_subject
    from robustmri.data.tissues import label_interior

    out: dict[str, dict[str, tuple[float, float]]] = {}
    for profile in ("fixed", *SITE_PROFILES):
        acq = {"acquisition": "fixed"} if profile == "fixed" else {"acquisition": "varied", "site_profiles": (profile,)}
        cfg = SynthConfig(size=size, n_slices=16, seed=0, snr=0.0, bias_strength=0.0, kspace_fraction=(1.0, 1.0), **acq)
        ratios: dict[str, list[tuple[float, float]]] = {}
        for i in range(subjects):
            s = synth_subject(i, cfg)
            for c, img in s.images.items():
                med = {lab: float(np.median(img[label_interior(s.seg, lab)])) for lab in (1, 2, 3)}
                ratios.setdefault(c, []).append((med[2] / med[3], med[1] / med[3]))
        out[profile] = {c: (float(np.median([r[0] for r in v])), float(np.median([r[1] for r in v]))) for c, v in ratios.items()}
    return out


def template_correlation(size: int) -> dict[str, float]:
    from nilearn import datasets
    from scipy.ndimage import map_coordinates

    from robustmri.data.acquisition import SITE_PROFILES
    from robustmri.data.simulator import SynthConfig, _output_grid, synth_subject

    t1 = datasets.load_mni152_template(resolution=1)
    vol = np.asarray(t1.get_fdata(), dtype=np.float32)
    w2v = np.linalg.inv(t1.affine)
    still = dict(rotation_deg=0.0, scale_fraction=0.0, translation_mm=0.0, slab_jitter_mm=0.0, deformation_mm=0.0,
                 ventricle_expansion=0.0, sulcal_widening=0.0, cortical_change=0.0, snr=0.0, bias_strength=0.0,
                 kspace_fraction=(1.0, 1.0))
    out = {}
    for profile in ("fixed", *SITE_PROFILES):
        acq = {"acquisition": "fixed"} if profile == "fixed" else {"acquisition": "varied", "site_profiles": (profile,)}
        cfg = SynthConfig(size=size, n_slices=24, seed=0, **still, **acq)  # type: ignore[arg-type]
        s = synth_subject(0, cfg)
        g = _output_grid(cfg)
        coords = np.stack([w2v[r, 0] * g[0] + w2v[r, 1] * g[1] + w2v[r, 2] * g[2] + w2v[r, 3] for r in range(3)])
        ref = map_coordinates(vol, coords, order=1)
        brain = s.seg > 0
        out[profile] = float(np.corrcoef(s.images["t1"][brain], ref[brain])[0, 1])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="seconds: one subject per site profile at 64x64 (the tests run it)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.subjects = 64, 1
    ratios = contrast_ratios(args.size, args.subjects)
    print(f"tissue contrast ratios, median over {args.subjects} noiseless subjects at {args.size}^2 (typical range)")
    print("| site profile | contrast | GM/WM | CSF/WM |")
    print("|---|---|--:|--:|")
    flags = []
    for profile, per in ratios.items():
        for c, (gm, csf) in per.items():
            (glo, ghi), (clo, chi) = TYPICAL[c]
            mark = lambda v, lo, hi: f"{v:.2f}" + ("" if lo <= v <= hi else " (!)")  # noqa: E731
            if not (glo <= gm <= ghi and clo <= csf <= chi):
                flags.append(f"{profile} {c}")
            print(f"| {profile} | {c} | {mark(gm, glo, ghi)} ({glo:.2f}-{ghi:.2f}) | {mark(csf, clo, chi)} ({clo:.2f}-{chi:.2f}) |")
    corr = template_correlation(args.size)
    print("\nPearson r of noiseless simulated T1w with the ICBM152 T1 template, inside the brain:")
    for profile, r in corr.items():
        print(f"  {profile}: {r:.3f}")
    print(f"\noutside the typical ranges: {', '.join(flags) or 'none'}")
    return {"ratios": ratios, "template_correlation": corr, "flags": flags}


if __name__ == "__main__":
    main()
