"""Lesions for the embedded simulator: a BraTS-like tumour core inside a shell of oedema
(:func:`random_lesion`), or MS-like white-matter hyperintensities (:func:`random_wmh`).

A lesion is defined analytically in template space (mm), so it moves with every subject transform
and misregistration exactly like the anatomy. Its boundary is an ellipsoid whose radius is modulated
by a smooth random function of direction (irregular, lobulated outline); fractions fall off
linearly over ``edge_mm`` so that partial volume is modelled. Parameter ranges are *inferred* from
typical glioma appearance, not taken from a published simulator: core radius 6-14 mm, oedema
radius 1.6-2.4 times the core's; oedema spreads mostly through white matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robustmri.data.deform import Grid, rotation_matrix


@dataclass(frozen=True)
class Lesion:
    """One lesion: centre (mm, template space), core and oedema radii (mm) and shape parameters."""

    centre: np.ndarray
    core_radius_mm: float
    oedema_radius_mm: float
    axes: np.ndarray  # 3x3: rotation @ diag(1 / stretch)
    lobe_vectors: np.ndarray  # (K, 3) spatial frequencies over the unit sphere
    lobe_phases: np.ndarray  # (K,)
    lobe_amplitudes: np.ndarray  # (K,)

    def to_json(self) -> dict[str, object]:
        return {
            "centre_mm": np.round(self.centre, 4).tolist(),
            "core_radius_mm": round(self.core_radius_mm, 4),
            "oedema_radius_mm": round(self.oedema_radius_mm, 4),
        }

    def fractions(self, grid: Grid, edge_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """Core and oedema-shell fractions in [0, 1] at template coordinates ``grid`` (mm)."""
        d = [g - c for g, c in zip(grid, self.centre)]
        # ellipsoidal distance
        e = [self.axes[r, 0] * d[0] + self.axes[r, 1] * d[1] + self.axes[r, 2] * d[2] for r in range(3)]
        dist = np.sqrt(e[0] ** 2 + e[1] ** 2 + e[2] ** 2) + 1e-6
        u = [c / dist for c in e]
        lobes = np.zeros_like(dist)
        for vec, phase, amp in zip(self.lobe_vectors, self.lobe_phases, self.lobe_amplitudes):
            lobes += amp * np.sin(vec[0] * u[0] + vec[1] * u[1] + vec[2] * u[2] + phase)
        scaled = dist / (1.0 + lobes)
        core = np.clip((self.core_radius_mm - scaled) / edge_mm + 0.5, 0.0, 1.0)
        whole = np.clip((self.oedema_radius_mm - scaled) / edge_mm + 0.5, 0.0, 1.0)
        return core.astype(np.float32), np.clip(whole - core, 0.0, 1.0).astype(np.float32)


def random_lesion(rng: np.random.Generator, candidates_mm: np.ndarray) -> Lesion:
    """Draw a lesion centred on one of ``candidates_mm`` ((N, 3) white-matter points, mm)."""
    centre = candidates_mm[rng.integers(len(candidates_mm))] + rng.uniform(-1.0, 1.0, size=3)
    core = float(rng.uniform(6.0, 14.0))
    oedema = core * float(rng.uniform(1.6, 2.4))
    stretch = rng.uniform(0.8, 1.25, size=3)
    axes = np.diag(1.0 / stretch) @ rotation_matrix(rng.uniform(-180, 180, size=3)).T
    k = 4
    vectors = rng.normal(0.0, 2.0, size=(k, 3))
    phases = rng.uniform(0, 2 * np.pi, size=k)
    amplitudes = rng.uniform(0.04, 0.10, size=k)
    return Lesion(centre, core, oedema, axes, vectors, phases, amplitudes)


LESION_TYPES: tuple[str, ...] = ("tumour", "wmh")
"""Lesion types the simulator draws: ``tumour`` (a core inside oedema, :func:`random_lesion`) and
``wmh`` (MS-like white-matter hyperintensities, :func:`random_wmh`)."""


@dataclass(frozen=True)
class WhiteMatterLesions:
    """Several small periventricular white-matter lesions (MS-like hyperintensities on T2w and
    FLAIR, hypointense on T1w), each a lobulated ellipsoid without an oedema shell.

    Parameter ranges are *inferred* from typical multiple-sclerosis and small-vessel-disease
    appearance, not taken from a published simulator: 4-10 lesions per subject, radius 2.5-6 mm,
    elongated up to 1.6:1, centred 2-12 mm from the lateral ventricles' CSF inside white matter."""

    lesions: tuple[Lesion, ...]

    def to_json(self) -> dict[str, object]:
        return {"type": "wmh", "lesions": [{"centre_mm": np.round(les.centre, 4).tolist(),
                                             "radius_mm": round(les.core_radius_mm, 4)} for les in self.lesions]}

    def fraction(self, grid: Grid, edge_mm: float) -> np.ndarray:
        """Lesion fraction in [0, 1] at template coordinates ``grid`` (mm): the union (maximum) of
        the lesions' core fractions."""
        out = np.zeros_like(np.asarray(grid[0], dtype=np.float32))
        for les in self.lesions:
            core, _ = les.fractions(grid, edge_mm)
            out = np.maximum(out, core)
        return out


def random_wmh(rng: np.random.Generator, candidates_mm: np.ndarray) -> WhiteMatterLesions:
    """Draw 4-10 small lesions centred on points of ``candidates_mm`` ((N, 3) periventricular
    white-matter points, mm)."""
    count = int(rng.integers(4, 11))
    lesions = []
    for _ in range(count):
        centre = candidates_mm[rng.integers(len(candidates_mm))] + rng.uniform(-1.0, 1.0, size=3)
        radius = float(rng.uniform(2.5, 6.0))
        stretch = rng.uniform(0.8, 1.6, size=3)
        axes = np.diag(1.0 / stretch) @ rotation_matrix(rng.uniform(-180, 180, size=3)).T
        k = 3
        lesions.append(Lesion(centre, radius, radius, axes, rng.normal(0.0, 2.0, size=(k, 3)),
                              rng.uniform(0, 2 * np.pi, size=k), rng.uniform(0.03, 0.08, size=k)))
    return WhiteMatterLesions(tuple(lesions))
