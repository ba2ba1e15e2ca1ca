"""BraTS-like lesions for the embedded simulator: a tumour core inside a shell of oedema.

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
