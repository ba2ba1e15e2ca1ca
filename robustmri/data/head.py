"""Tissues outside the brain for the embedded simulator: shells around the brain mask, so that
un-skull-stripped, IXI-like images exist (``SynthConfig(head=True)``, ``robustmri data synth --head``).

nilearn's MNI152 template is brain-extracted (0.04 % of its non-brain voxels exceed 10 % of its
maximum), so the head cannot be taken from it; it is modelled instead as concentric shells at a
distance from a smoothed brain outline (the outline closed over sulci, about the inner skull
surface), from inside out:

==============  ===================================  ======================================
shell           thickness (mm, drawn per subject)    tissue
==============  ===================================  ======================================
CSF rim         1-3                                  the subject's CSF
inner table     1.5-2.5                              cortical bone
diploe          2-5                                  fatty marrow
outer table     1.5-2.5                              cortical bone
scalp fat       2-6                                  subcutaneous fat
soft tissue     2-4                                  muscle and skin, lumped
==============  ===================================  ======================================

Relaxation values (inferred from published ranges, not one source): fat T1 260 / 380 ms and T2 85 /
70 ms at 1.5 / 3 T, PD 0.9; marrow T1 350 / 450, T2 60 / 50, PD 0.7; muscle and skin T1 870 /
1420, T2 47 / 32, PD 0.75; cortical bone PD 0.05 with T2 1 ms (its T2* is well under a millisecond,
so it is dark at any TE used here). Shell fractions are partial-volume weighted at the voxel size.
The segmentation and the brain mask stay brain-only; the shells' thicknesses go to ``params.json``.
"""

from __future__ import annotations

import numpy as np

from robustmri.data.tissues import Tissue

SHELLS: tuple[tuple[str, str, tuple[float, float]], ...] = (
    ("rim", "csf", (1.0, 3.0)),
    ("inner_table", "bone", (1.5, 2.5)),
    ("diploe", "marrow", (2.0, 5.0)),
    ("outer_table", "bone", (1.5, 2.5)),
    ("scalp_fat", "fat", (2.0, 6.0)),
    ("soft_tissue", "soft", (2.0, 4.0)),
)
"""(shell, tissue, thickness range in mm), from the brain outwards."""

HEAD_TISSUES: dict[str, dict[str, Tissue]] = {
    "1.5T": {"bone": Tissue(1000.0, 1.0, 0.05), "marrow": Tissue(350.0, 60.0, 0.7), "fat": Tissue(260.0, 85.0, 0.9),
             "soft": Tissue(870.0, 47.0, 0.75)},
    "3T": {"bone": Tissue(1000.0, 1.0, 0.05), "marrow": Tissue(450.0, 50.0, 0.7), "fat": Tissue(380.0, 70.0, 0.9),
           "soft": Tissue(1420.0, 32.0, 0.75)},
}

OUTLINE_SMOOTHING_MM = 6.0
"""Standard deviation of the Gaussian that closes the brain outline over sulci before the shells."""


def draw_thickness(rng: np.random.Generator) -> dict[str, float]:
    """One subject's shell thicknesses (mm)."""
    return {name: round(float(rng.uniform(lo, hi)), 4) for name, _, (lo, hi) in SHELLS}


def head_fractions(brain: np.ndarray, voxel_mm: tuple[float, float, float], thickness: dict[str, float]) -> dict[str, np.ndarray]:
    """Tissue fractions (H, W, S) float32 of the head shells around ``brain`` (H, W, S) bool:
    ``{tissue: fraction}`` for csf (the rim), bone, marrow, fat and soft; zero inside the brain."""
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    sigma = [OUTLINE_SMOOTHING_MM / v for v in voxel_mm]
    outline = (gaussian_filter(brain.astype(np.float32), sigma=sigma, mode="constant", truncate=3.0) > 0.35) | brain
    d = distance_transform_edt(~outline, sampling=voxel_mm).astype(np.float32)  # mm outside the outline, 0 inside
    v = float(min(voxel_mm[0], voxel_mm[1]))
    out: dict[str, np.ndarray] = {}
    lo = 0.0
    for name, tissue, _ in SHELLS:
        hi = lo + thickness[name]
        beyond_lo = np.clip((d - lo) / v + 0.5, 0.0, 1.0)
        beyond_hi = np.clip((d - hi) / v + 0.5, 0.0, 1.0)
        frac = np.where(brain, 0.0, beyond_lo - beyond_hi).astype(np.float32)
        out[tissue] = out.get(tissue, np.zeros_like(frac)) + frac
        lo = hi
    # the rim also fills the closed-over space between the brain and its outline (sulci, fissures)
    out["csf"] = np.where(brain, 0.0, np.where(d == 0, 1.0, out["csf"])).astype(np.float32)
    return out
