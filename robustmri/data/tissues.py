"""Tissue relaxation parameters for the embedded brain simulator.

Each tissue has a longitudinal relaxation time T1 (ms), a transverse relaxation time T2 (ms) and a
relative proton density PD (dimensionless, CSF = 1). Values depend on the field strength.

Sources
-------
- **1.5 T** -- the BrainWeb simulator's tissue table (Kwan, Evans & Pike, IEEE TMI 1999;
  Collins et al., IEEE TMI 1998), the de-facto standard for simulated brain MRI:
  CSF T1 2569 / T2 329 / PD 1.00, GM 833 / 83 / 0.86, WM 500 / 70 / 0.77.
- **3 T** -- GM and WM from Stanisz et al., MRM 2005 (GM T1 1820 / T2 99, WM T1 1084 / T2 69);
  CSF T1 about 4000 ms and T2 about 2000 ms, the order of magnitude reported for bulk CSF at 3 T;
  PD as at 1.5 T (proton density does not depend on the field).
- **Lesions** (both fields, *inferred*, not from one source): vasogenic oedema and solid tumour have
  higher water content and longer T1 and T2 than the white matter they replace, so they are dark on
  T1w and bright on T2w and FLAIR as in BraTS. At 1.5 T: oedema T1 1100 / T2 180 / PD 0.92, tumour
  core T1 1000 / T2 120 / PD 0.88; at 3 T the T1 values are scaled by 1.4 and T2 by 0.9, roughly
  the GM/WM field dependence above. White-matter hyperintensities (MS-like plaques, small-vessel
  disease; label ``wmh``): at 1.5 T T1 850 / T2 130 / PD 0.84, at 3 T T1 1500 / T2 115 / PD 0.84:
  between white matter and oedema, so dark on T1w and bright on T2w and FLAIR.

Subject variability: :func:`jitter_tissues` multiplies every parameter by a subject-wide factor per
parameter kind (uniform within +-``global_fraction``, shared by all tissues, which keeps the contrast
ordering between tissues) times a per-tissue factor (uniform within +-``tissue_fraction``). With the
defaults (8 % and 3 %) parameters vary by about +-10 %.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from robustmri.errors import ConfigError

TISSUES: tuple[str, ...] = ("csf", "gm", "wm", "oedema", "core")
"""Tissue classes every subject's relaxation table holds (:func:`jitter_tissues` draws them in this
order), in the order of segmentation labels 1..5."""

SEG_TISSUES: tuple[str, ...] = (*TISSUES, "wmh")
"""Every tissue class a segmentation can hold, in the order of its labels 1..6: white-matter
hyperintensities (label 6) are drawn only for subjects that have them (:func:`wmh_tissue`)."""

SEG_LABELS: dict[str, int] = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "oedema": 4, "core": 5, "wmh": 6}
"""Segmentation label values written to ``seg.nii.gz``."""

LESION_LABELS: tuple[int, ...] = (SEG_LABELS["oedema"], SEG_LABELS["core"], SEG_LABELS["wmh"])
"""Labels of abnormal tissue: what the lesion metrics and the detector count as lesion."""


@dataclass(frozen=True)
class Tissue:
    """Relaxation parameters of one tissue: ``t1`` and ``t2`` in ms, ``pd`` relative to CSF."""

    t1: float
    t2: float
    pd: float


FIELD_STRENGTHS: dict[str, dict[str, Tissue]] = {
    "1.5T": {
        "csf": Tissue(2569.0, 329.0, 1.00),
        "gm": Tissue(833.0, 83.0, 0.86),
        "wm": Tissue(500.0, 70.0, 0.77),
        "oedema": Tissue(1100.0, 180.0, 0.92),
        "core": Tissue(1000.0, 120.0, 0.88),
    },
    "3T": {
        "csf": Tissue(4000.0, 2000.0, 1.00),
        "gm": Tissue(1820.0, 99.0, 0.86),
        "wm": Tissue(1084.0, 69.0, 0.77),
        "oedema": Tissue(1540.0, 162.0, 0.92),
        "core": Tissue(1400.0, 108.0, 0.88),
    },
}


WMH: dict[str, Tissue] = {"1.5T": Tissue(850.0, 130.0, 0.84), "3T": Tissue(1500.0, 115.0, 0.84)}
"""Nominal white-matter hyperintensity values per field strength (*inferred*, see the module docstring)."""


def wmh_tissue(field_strength: str, jittered: dict[str, Tissue], rng: np.random.Generator,
               tissue_fraction: float = 0.03) -> Tissue:
    """The white-matter hyperintensities of one subject: the nominal values of ``field_strength``
    scaled by this subject's white-matter jitter (``jittered["wm"]`` over the nominal white matter:
    the subject-wide factor and white matter's own), times an own factor ``1 + U(-t, t)`` drawn from
    ``rng``, so the subject's other tissues and random draws stay as they are."""
    key = canonical_field_strength(field_strength)
    wm, base = FIELD_STRENGTHS[key]["wm"], WMH[key]
    own = 1.0 + rng.uniform(-tissue_fraction, tissue_fraction, size=3)
    return Tissue(float(base.t1 * jittered["wm"].t1 / wm.t1 * own[0]), float(base.t2 * jittered["wm"].t2 / wm.t2 * own[1]),
                  float(base.pd * jittered["wm"].pd / wm.pd * own[2]))


def tissue_table(field_strength: str) -> dict[str, Tissue]:
    """Return the nominal tissue table for ``field_strength`` (``"1.5T"`` or ``"3T"``)."""
    return dict(FIELD_STRENGTHS[canonical_field_strength(field_strength)])


def canonical_field_strength(field_strength: str) -> str:
    """``"1.5T"`` or ``"3T"`` for the accepted spellings (1.5, 3, 3.0T, ...); one-line error otherwise."""
    key = str(field_strength).upper().replace(" ", "")
    if key in ("1.5", "1.5T"):
        key = "1.5T"
    elif key in ("3", "3T", "3.0T", "3.0"):
        key = "3T"
    if key not in FIELD_STRENGTHS:
        raise ConfigError(
            f"unknown field strength {field_strength!r}: use one of {', '.join(FIELD_STRENGTHS)}"
        )
    return key


def jitter_tissues(
    table: dict[str, Tissue],
    rng: np.random.Generator,
    global_fraction: float = 0.08,
    tissue_fraction: float = 0.03,
) -> dict[str, Tissue]:
    """Return a subject-specific copy of ``table`` with multiplicative parameter jitter.

    Each of T1, T2 and PD gets one subject-wide factor ``1 + U(-g, g)`` shared by all tissues and a
    per-tissue factor ``1 + U(-t, t)``; ``g = global_fraction``, ``t = tissue_fraction``.
    """
    if global_fraction < 0 or tissue_fraction < 0:
        raise ConfigError("tissue jitter fractions must be >= 0")
    shared = 1.0 + rng.uniform(-global_fraction, global_fraction, size=3)
    out: dict[str, Tissue] = {}
    for name in TISSUES:
        own = 1.0 + rng.uniform(-tissue_fraction, tissue_fraction, size=3)
        base = table[name]
        out[name] = replace(
            base,
            t1=float(base.t1 * shared[0] * own[0]),
            t2=float(base.t2 * shared[1] * own[1]),
            pd=float(base.pd * shared[2] * own[2]),
        )
    return out


def label_interior(seg: np.ndarray, label: int) -> np.ndarray:
    """Voxels of ``label`` in ``seg`` (H, W, S) whose 6 neighbours share the label: the tissue's
    interior, with little partial volume (bool, same shape)."""
    m = seg == label
    inner = m.copy()
    for axis in range(3):
        for shift in (1, -1):
            inner &= np.roll(m, shift, axis=axis)
    return inner
