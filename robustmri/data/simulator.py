"""The embedded simulator: physics-based multi-contrast brain MRI, one subject per seed.

A BrainWeb-like simulator built on the real MNI ICBM152 2009a anatomy shipped in nilearn's wheel
(:mod:`robustmri.data.anatomy`). Every subject is a seed:

1. **Anatomy** -- the template's CSF / GM / WM fraction maps seen through a random subject transform
   in the spirit of SynthSeg (Billot et al. 2023): an affine (+-12 degrees, +-10 % scaling, +-5 mm,
   plus a per-subject shift of the slab of +-8 mm, so slice positions differ between subjects),
   multi-scale elastic displacement, ventricle enlargement (:mod:`robustmri.data.deform`), then
   sulcal widening and cortical thickness change (:mod:`robustmri.data.remodel`); optionally a
   BraTS-like lesion (tumour core + oedema, :mod:`robustmri.data.lesions`) at ``lesion_rate``.
2. **Physics** -- per-subject jittered T1/T2/PD per tissue (:mod:`robustmri.data.tissues`) turned
   into T1w (spin echo or spoiled gradient echo), T2w, PDw (spin echo) and FLAIR (CSF-nulling
   inversion recovery) images with the signal equations of :mod:`robustmri.data.physics`;
   partial-volume voxels mix tissue signals by fraction.
3. **Acquisition** -- with ``acquisition="varied"`` (the default) a site profile per subject
   (:mod:`robustmri.data.acquisition`: IXI-like or clinical protocols at 1.5 T or 3 T, sequence
   times drawn within ranges), an acquired matrix of 75-100 % of the output's (k-space truncation:
   resolution and Gibbs ringing) and an SNR drawn per contrast in [15, 40]; with ``"fixed"``, one
   sequence set at ``field_strength`` and ``snr``. Then a smooth multiplicative bias field (shared
   coil profile plus a smaller per-contrast part, strength scaled per subject), Rician noise, and
   optional misregistration of every contrast but the first (a small rigid in-plane rotation and
   3-D shift).

:meth:`SynthConfig.classic` gives the narrow variety of format 1 (one template under a small
affine, one protocol, SNR 30), kept to measure what the variety changes (docs/data.md).

The brain is skull-stripped (like BraTS); the background is zero plus Rician noise. Volumes are
(H, W, S) = (size, size, n_slices): axis 0 runs left->right (x), axis 1 posterior->anterior (y),
axis 2 inferior->superior (z, axial slices), RAS world coordinates in mm in the NIfTI affine.
Intensities are in arbitrary units on the PD scale (CSF PD = 1). ``seg`` labels (uint8):
0 background, 1 CSF, 2 GM, 3 WM, 4 oedema, 5 tumour core -- in the frame of the first contrast when
misregistration is on (the other contrasts are then moved against it).

The dataset on disk (NIfTI folders) and its in-memory slices are :mod:`robustmri.data.embedded`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from robustmri.data.acquisition import SITE_PROFILES, check_profiles, draw_site, truncate_kspace
from robustmri.data.anatomy import TemplateTissues, template_tissues
from robustmri.data.contrasts import canonical_contrast
from robustmri.data.deform import (
    AffineMotion,
    Grid,
    RadialExpansion,
    random_affine,
    random_elastic_multiscale,
    random_rigid_inplane,
)
from robustmri.data.head import HEAD_TISSUES, draw_thickness, head_fractions
from robustmri.data.lesions import LESION_TYPES, WhiteMatterLesions, random_lesion, random_wmh
from robustmri.data.remodel import remodel
from robustmri.data.physics import DEFAULT_SEQUENCES, Sequence, add_rician_noise, null_ti, polynomial_bias_field, signal
from robustmri.data.tissues import (
    SEG_LABELS,
    SEG_TISSUES,
    canonical_field_strength,
    jitter_tissues,
    tissue_table,
    wmh_tissue,
)
from robustmri.errors import ConfigError

SYNTH_CONTRASTS: tuple[str, ...] = tuple(DEFAULT_SEQUENCES)
"""Contrasts the simulator can produce: t1, t2, pd, flair (no contrast-enhanced T1)."""

FORMAT_VERSION = 2

VENTRICLE_CENTRE_MNI = (0.0, -14.0, 15.0)
"""Centroid (mm) of the lateral ventricles' CSF in the MNI template (measured on nilearn's maps)."""
VENTRICLE_RADIUS_MM = 22.0


@dataclass(frozen=True)
class SynthConfig:
    """Every parameter of the embedded simulator (lengths in mm, times in ms).

    size: in-plane matrix (size x size), any value >= 16 (64, 128 and 256 are the usual ones).
    n_slices: axial slices in the slab, spread evenly over ``slab_mm`` (world z, MNI mm).
    fov_mm: square in-plane field of view centred on the brain.
    contrasts: which of t1, t2, pd, flair to simulate (the first is the misregistration reference).
    field_strength: "1.5T" (BrainWeb tissue values) or "3T".
    sequences: optional overrides ``{contrast: Sequence}`` of :data:`DEFAULT_SEQUENCES`.
    snr: mean brain signal / noise standard deviation per contrast with ``acquisition="fixed"``;
        ``0`` disables noise (in both modes).
    bias_strength: bias-field polynomial coefficient range (0 disables; 0.3 gives about +-20 %).
    lesion_rate: probability that a subject has a lesion (0 to 1).
    lesion_types: the lesion types a lesioned subject may have (:data:`robustmri.data.lesions.LESION_TYPES`:
        ``tumour``, ``wmh``); with several, a subject drawn by ``lesion_rate`` gets one at random and
        the ``lesioned_subjects`` take them in turn.
    lesioned_subjects: indices of the subjects that have a lesion (None: each draws one with
        probability ``lesion_rate``). Their lesions come from a separate random stream, so a
        lesioned subject is the same anatomy and acquisition as without it (suites name splits
        with ``lesion_splits``, e.g. lesions in the test subjects only; see
        :func:`robustmri.data.resolve.resolve_data`).
    misregistration_mm: maximum rigid shift (mm, per axis) of contrasts 2.. against the first;
        the in-plane rotation maximum is ``misregistration_deg`` (defaults to the same number).
    misregistered_subjects: indices of the subjects whose contrasts are misregistered (None: every
        subject). The others keep their contrasts aligned but draw the same random numbers, so a
        subject is the same anatomy and acquisition either way (misaligned training pairs with
        aligned test targets: Reg-GAN's setting; suites name splits with
        ``misregistration_splits``, see :func:`robustmri.data.resolve.resolve_data`).
    deformation_mm, deformation_levels: standard deviation of the coarsest elastic displacement and
        the number of scales (each finer one has twice the control points and half the amplitude).
    rotation_deg, scale_fraction, translation_mm: ranges of the subject affine.
    slab_jitter_mm: range of a per-subject shift of the slab along z (slice positions differ).
    ventricle_expansion: the largest ventricle enlargement ``beta`` (about ``1 / (1 - beta)``).
    sulcal_widening, cortical_change: largest sulcal widening and cortical thickness change
        (:func:`robustmri.data.remodel.remodel`), drawn U(0, a) and U(-c, c) per subject.
    head: add tissues outside the brain (CSF rim, skull, marrow, scalp fat, soft tissue) as shells
        around the brain (:mod:`robustmri.data.head`): un-skull-stripped, IXI-like images. Drawn from
        a separate random stream, so switching it does not change anything else of a subject.
    acquisition: "varied" (a site profile per subject from ``site_profiles``, SNR drawn in
        ``snr_range`` per contrast, acquired matrix fraction in ``kspace_fraction``) or "fixed"
        (``field_strength``, ``sequences`` and ``snr`` for every subject, full matrix).
    tissue_jitter: (subject-wide, per-tissue) relative ranges of T1/T2/PD variation.
    seed: dataset seed; subject ``i`` uses ``numpy.random.default_rng([seed, i])``.
    """

    size: int = 128
    n_slices: int = 32
    slab_mm: tuple[float, float] = (-20.0, 60.0)
    fov_mm: float = 210.0
    contrasts: tuple[str, ...] = SYNTH_CONTRASTS
    field_strength: str = "1.5T"
    sequences: dict[str, Sequence] = field(default_factory=dict)
    snr: float = 30.0
    bias_strength: float = 0.3
    lesion_rate: float = 0.0
    lesion_types: tuple[str, ...] = ("tumour",)
    lesioned_subjects: tuple[int, ...] | None = None
    misregistration_mm: float = 0.0
    misregistration_deg: float | None = None
    misregistered_subjects: tuple[int, ...] | None = None
    deformation_mm: float = 3.0
    deformation_levels: int = 3
    rotation_deg: float = 12.0
    scale_fraction: float = 0.10
    translation_mm: float = 5.0
    slab_jitter_mm: float = 8.0
    ventricle_expansion: float = 0.35
    sulcal_widening: float = 0.5
    cortical_change: float = 0.3
    tissue_jitter: tuple[float, float] = (0.08, 0.03)
    acquisition: str = "varied"
    site_profiles: tuple[str, ...] = tuple(SITE_PROFILES)
    snr_range: tuple[float, float] = (15.0, 40.0)
    kspace_fraction: tuple[float, float] = (0.75, 1.0)
    head: bool = False
    seed: int = 0

    @classmethod
    def classic(cls, **overrides: Any) -> SynthConfig:
        """Format 1's narrow variety: one template under a small affine (+-3 degrees, +-5 %, +-3 mm)
        and one 2.5 mm elastic scale, no remodelling, one protocol at SNR 30."""
        base: dict[str, Any] = dict(deformation_mm=2.5, deformation_levels=1, rotation_deg=3.0, scale_fraction=0.05,
                                    translation_mm=3.0, slab_jitter_mm=0.0, ventricle_expansion=0.0, sulcal_widening=0.0,
                                    cortical_change=0.0, acquisition="fixed")
        return cls(**{**base, **overrides})

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 16:
            raise ConfigError(f"size must be an integer >= 16 (got {self.size!r}): use e.g. --size 128")
        if not isinstance(self.n_slices, int) or self.n_slices < 1:
            raise ConfigError(f"n_slices must be a positive integer (got {self.n_slices!r}): use e.g. --slices 32")
        if self.fov_mm <= 0 or self.slab_mm[1] <= self.slab_mm[0]:
            raise ConfigError(f"fov_mm must be > 0 and slab_mm increasing (got {self.fov_mm}, {self.slab_mm})")
        if not self.contrasts:
            raise ConfigError(f"choose at least one contrast of {', '.join(SYNTH_CONTRASTS)}")
        canon = tuple(canonical_contrast(c) for c in self.contrasts)
        for c in canon:
            if c not in SYNTH_CONTRASTS:
                raise ConfigError(
                    f"the embedded simulator cannot make contrast {c!r}: use one of {', '.join(SYNTH_CONTRASTS)}"
                )
        if len(set(canon)) != len(canon):
            raise ConfigError(f"contrasts are repeated in {self.contrasts!r}")
        object.__setattr__(self, "contrasts", canon)
        tissue_table(self.field_strength)  # validates
        if self.snr < 0:
            raise ConfigError(f"snr must be >= 0 (0 = noiseless), got {self.snr}")
        if not 0.0 <= self.lesion_rate <= 1.0:
            raise ConfigError(f"lesion rate must be within [0, 1], got {self.lesion_rate}")
        kinds = tuple(self.lesion_types) if not isinstance(self.lesion_types, str) else (self.lesion_types,)
        if not kinds or len(set(kinds)) != len(kinds) or not set(kinds) <= set(LESION_TYPES):
            raise ConfigError(f"lesion_types must be distinct names among {', '.join(LESION_TYPES)}, got {self.lesion_types!r}")
        object.__setattr__(self, "lesion_types", kinds)
        for name in ("bias_strength", "misregistration_mm", "deformation_mm", "rotation_deg", "scale_fraction", "translation_mm",
                     "slab_jitter_mm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("misregistered_subjects", "lesioned_subjects"):
            chosen = getattr(self, name)
            if chosen is None:
                continue
            if isinstance(chosen, (str, bytes)) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                            for i in chosen):
                raise ConfigError(f"{name} must be subject indices >= 0, got {chosen!r}")
            object.__setattr__(self, name, tuple(sorted(set(chosen))))
        if not isinstance(self.deformation_levels, int) or self.deformation_levels < 1:
            raise ConfigError(f"deformation_levels must be an integer >= 1, got {self.deformation_levels!r}")
        if not 0 <= self.ventricle_expansion < 0.9 or not 0 <= self.sulcal_widening <= 1 or not 0 <= self.cortical_change <= 1:
            raise ConfigError("ventricle_expansion must be in [0, 0.9), sulcal_widening and cortical_change in [0, 1], got "
                              f"{self.ventricle_expansion}, {self.sulcal_widening}, {self.cortical_change}")
        if self.acquisition not in ("varied", "fixed"):
            raise ConfigError(f"acquisition must be 'varied' or 'fixed', got {self.acquisition!r}")
        object.__setattr__(self, "site_profiles", tuple(self.site_profiles))
        check_profiles(self.site_profiles)
        object.__setattr__(self, "snr_range", tuple(float(v) for v in self.snr_range))
        object.__setattr__(self, "kspace_fraction", tuple(float(v) for v in self.kspace_fraction))
        lo, hi = self.snr_range
        if not 0 < lo <= hi:
            raise ConfigError(f"snr_range must be (low, high) with 0 < low <= high, got {self.snr_range}")
        lo, hi = self.kspace_fraction
        if not 0.1 <= lo <= hi <= 1.0:
            raise ConfigError(f"kspace_fraction must be (low, high) within [0.1, 1], got {self.kspace_fraction}")
        for c in self.sequences:
            if canonical_contrast(c) not in SYNTH_CONTRASTS:
                raise ConfigError(f"sequence override for unknown contrast {c!r}")
        from robustmri.memory import check_fits

        # about 24 float64 volumes of the output grid are alive at once while a subject is simulated
        check_fits(24 * 8.0 * self.size * self.size * self.n_slices,
                   f"simulating one subject at {self.size}x{self.size}x{self.n_slices}",
                   "use a smaller --size or fewer --slices")

    # geometry -------------------------------------------------------------------------------
    @property
    def voxel_mm(self) -> tuple[float, float, float]:
        """Voxel size (x, y, z) in mm."""
        return (self.fov_mm / self.size, self.fov_mm / self.size, (self.slab_mm[1] - self.slab_mm[0]) / self.n_slices)

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel -> world (RAS mm) affine shared by every volume of every subject."""
        vx, vy, vz = self.voxel_mm
        centre_xy = np.array([0.0, -18.0])  # centre of the MNI brain in x, y (mm)
        a = np.diag([vx, vy, vz, 1.0])
        a[0, 3] = centre_xy[0] - vx * (self.size - 1) / 2.0
        a[1, 3] = centre_xy[1] - vy * (self.size - 1) / 2.0
        a[2, 3] = self.slab_mm[0] + vz / 2.0
        return a

    def sequence(self, contrast: str) -> Sequence:
        over = {canonical_contrast(k): v for k, v in self.sequences.items()}
        return over.get(contrast, DEFAULT_SEQUENCES[contrast])

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sequences"}
        out["slab_mm"] = list(self.slab_mm)
        out["contrasts"] = list(self.contrasts)
        out["tissue_jitter"] = list(self.tissue_jitter)
        out["site_profiles"] = list(self.site_profiles)
        out["snr_range"] = list(self.snr_range)
        out["kspace_fraction"] = list(self.kspace_fraction)
        if self.misregistered_subjects is None:  # datasets made before the field keep their cache key
            del out["misregistered_subjects"]
        else:
            out["misregistered_subjects"] = list(self.misregistered_subjects)
        if self.lesion_types == ("tumour",):  # likewise
            del out["lesion_types"]
        else:
            out["lesion_types"] = list(self.lesion_types)
        if self.lesioned_subjects is None:
            del out["lesioned_subjects"]
        else:
            out["lesioned_subjects"] = list(self.lesioned_subjects)
        out["sequences"] = {c: asdict(self.sequence(c)) for c in self.contrasts}
        return out


@dataclass
class Subject:
    """One simulated subject.

    images: contrast -> float32 volume (H, W, S), arbitrary units on the PD scale (>= 0).
    seg: uint8 labels (H, W, S), see :data:`robustmri.data.tissues.SEG_LABELS`.
    affine: 4x4 voxel -> world (mm).
    params: every random draw and physical parameter, JSON-serialisable.
    labels: contrast -> uint8 tissue labels in that contrast's own frame (equal to ``seg`` for the
        first contrast, and for all contrasts when misregistration is off).
    """

    subject_id: str
    images: dict[str, np.ndarray]
    seg: np.ndarray
    affine: np.ndarray
    params: dict[str, Any]
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        """Brain mask (H, W, S) bool: ``seg > 0``."""
        return self.seg > 0


def _output_grid(config: SynthConfig) -> Grid:
    a = config.affine
    i = np.arange(config.size, dtype=np.float32)
    k = np.arange(config.n_slices, dtype=np.float32)
    x = (a[0, 0] * i + a[0, 3]).astype(np.float32)[:, None, None]
    y = (a[1, 1] * i + a[1, 3]).astype(np.float32)[None, :, None]
    z = (a[2, 2] * k + a[2, 3]).astype(np.float32)[None, None, :]
    shape = (config.size, config.size, config.n_slices)
    return (np.broadcast_to(x, shape), np.broadcast_to(y, shape), np.broadcast_to(z, shape))


def _sample(template: TemplateTissues, grid: Grid) -> dict[str, np.ndarray]:
    """Trilinear samples of the template fraction maps at world coordinates ``grid`` (mm)."""
    from scipy.ndimage import map_coordinates

    w2v = template.world_to_voxel
    coords = np.stack(
        [w2v[r, 0] * grid[0] + w2v[r, 1] * grid[1] + w2v[r, 2] * grid[2] + w2v[r, 3] for r in range(3)]
    ).astype(np.float32)
    return {
        name: map_coordinates(arr, coords, order=1, mode="constant", cval=0.0, prefilter=False).astype(np.float32)
        for name, arr in template.maps.items()
    }


def _lesion_candidates(template: TemplateTissues, config: SynthConfig) -> np.ndarray:
    wm = template.maps["wm"]
    idx = np.argwhere(wm > 0.7)
    world = idx @ template.voxel_to_world[:3, :3].T + template.voxel_to_world[:3, 3]
    lo, hi = config.slab_mm
    inner = (world[:, 2] > lo + 0.25 * (hi - lo)) & (world[:, 2] < hi - 0.25 * (hi - lo))
    return world[inner] if inner.any() else world


def _add_lesion(fractions: dict[str, np.ndarray], core: np.ndarray, shell: np.ndarray) -> dict[str, np.ndarray]:
    brain = fractions["csf"] + fractions["gm"] + fractions["wm"]
    core = core * brain
    oedema = shell * np.clip(fractions["wm"] + 0.5 * fractions["gm"], 0.0, None)
    oedema = np.minimum(oedema, brain - core)
    keep = np.where(brain > 1e-6, (brain - core - oedema) / np.maximum(brain, 1e-6), 0.0).astype(np.float32)
    out = {name: fractions[name] * keep for name in ("csf", "gm", "wm")}
    out["oedema"] = oedema.astype(np.float32)
    out["core"] = core.astype(np.float32)
    return out


def _wmh_candidates(template: TemplateTissues, config: SynthConfig) -> np.ndarray:
    """Periventricular white matter (mm, template space): white-matter points 2-12 mm from the
    lateral ventricles' CSF (template CSF within 1.3 ventricle radii of their centroid), inside the
    slab's middle half; the tumour's candidates if there are none."""
    from scipy.ndimage import distance_transform_edt

    csf, wm = template.maps["csf"], template.maps["wm"]
    idx = np.indices(csf.shape).reshape(3, -1).T
    world = idx @ template.voxel_to_world[:3, :3].T + template.voxel_to_world[:3, 3]
    near = np.linalg.norm(world - np.array(VENTRICLE_CENTRE_MNI), axis=1).reshape(csf.shape) < 1.3 * VENTRICLE_RADIUS_MM
    ventricles = (csf > 0.5) & near
    if not ventricles.any():
        return _lesion_candidates(template, config)
    spacing = np.abs(np.diag(template.voxel_to_world)[:3])
    dist = distance_transform_edt(~ventricles, sampling=spacing)
    keep = ((wm > 0.7) & (dist >= 2.0) & (dist <= 12.0)).reshape(-1)
    lo, hi = config.slab_mm
    inner = (world[:, 2] > lo + 0.25 * (hi - lo)) & (world[:, 2] < hi - 0.25 * (hi - lo))
    chosen = world[keep & inner]
    return chosen if len(chosen) else _lesion_candidates(template, config)


def _add_wmh(fractions: dict[str, np.ndarray], lesion: np.ndarray) -> dict[str, np.ndarray]:
    """White-matter hyperintensities take the white matter's place where they lie (a lesion
    fraction ``lesion`` of a voxel's white matter)."""
    out = dict(fractions)
    wmh = (lesion * fractions["wm"]).astype(np.float32)
    out["wm"] = (fractions["wm"] - wmh).astype(np.float32)
    out["wmh"] = wmh
    return out


def _segmentation(fractions: dict[str, np.ndarray]) -> np.ndarray:
    stack = [fractions.get(t, None) for t in SEG_TISSUES]
    shape = fractions["csf"].shape
    stack = [np.zeros(shape, np.float32) if s is None else s for s in stack]
    brain = np.sum(stack, axis=0)
    labels = (np.argmax(np.stack(stack), axis=0) + 1).astype(np.uint8)
    labels[brain < 0.5] = SEG_LABELS["background"]
    return labels


def synth_subject(index: int, config: SynthConfig | None = None) -> Subject:
    """Simulate subject ``index`` of the dataset defined by ``config`` (deterministic in both).

    Returns a :class:`Subject` whose volumes have shape (config.size, config.size, config.n_slices).
    """
    config = config or SynthConfig()
    if index < 0:
        raise ConfigError(f"subject index must be >= 0, got {index}")
    rng = np.random.default_rng([config.seed, index])
    shape = (config.size, config.size, config.n_slices)
    template = template_tissues(config.slab_mm, config.voxel_mm)
    out_grid = _output_grid(config)
    centre = np.array([0.0, -18.0, 0.5 * (config.slab_mm[0] + config.slab_mm[1])])

    # Subject anatomy: output (subject) space -> template space.
    subject_affine, affine_params = random_affine(
        rng, centre, config.rotation_deg, config.scale_fraction, config.translation_mm
    )
    if config.slab_jitter_mm > 0:  # this subject's slices sit elsewhere along z
        dz = float(rng.uniform(-config.slab_jitter_mm, config.slab_jitter_mm))
        subject_affine = AffineMotion(subject_affine.matrix, subject_affine.centre, subject_affine.translation + np.array([0, 0, dz]))
        affine_params["slab_shift_mm"] = round(dz, 6)
    elastic = random_elastic_multiscale(rng, shape, config.deformation_mm, config.deformation_levels)
    ventricles = RadialExpansion(np.array(VENTRICLE_CENTRE_MNI), VENTRICLE_RADIUS_MM,
                                 float(rng.uniform(0, config.ventricle_expansion)) if config.ventricle_expansion > 0 else 0.0)
    sulcal = float(rng.uniform(0, config.sulcal_widening)) if config.sulcal_widening > 0 else 0.0
    cortical = float(rng.uniform(-config.cortical_change, config.cortical_change)) if config.cortical_change > 0 else 0.0
    # Misregistration of contrasts 2.. against the first (applied in subject space, before anatomy).
    motions: dict[str, AffineMotion | None] = {config.contrasts[0]: None}
    motion_params: dict[str, Any] = {}
    max_deg = config.misregistration_deg if config.misregistration_deg is not None else config.misregistration_mm
    misregistered = config.misregistered_subjects is None or index in config.misregistered_subjects
    for c in config.contrasts[1:]:
        if config.misregistration_mm > 0 or max_deg > 0:
            motions[c], motion_params[c] = random_rigid_inplane(rng, centre, config.misregistration_mm, max_deg)
            if not misregistered:  # drawn (the random stream stays the same), not applied
                motions[c] = None
                motion_params[c] = {"applied": False, **motion_params[c]}
        else:
            motions[c] = None

    has_lesion = bool(rng.random() < config.lesion_rate)
    lesion_rng = np.random.default_rng([config.seed, index, 2])  # lesions beyond the original tumour
    if config.lesioned_subjects is not None:  # chosen subjects, types in turn
        has_lesion = index in config.lesioned_subjects
        kind = config.lesion_types[config.lesioned_subjects.index(index) % len(config.lesion_types)] if has_lesion else None
    elif has_lesion:
        kinds = config.lesion_types
        kind = kinds[0] if len(kinds) == 1 else kinds[int(lesion_rng.integers(len(kinds)))]
    else:
        kind = None
    lesion = wmh = None
    if kind == "tumour":
        # the original stream for datasets drawn by rate with tumours only: they stay byte-identical
        legacy = config.lesioned_subjects is None and config.lesion_types == ("tumour",)
        lesion = random_lesion(rng if legacy else lesion_rng, _lesion_candidates(template, config))
    elif kind == "wmh":
        wmh = random_wmh(lesion_rng, _wmh_candidates(template, config))
    if config.acquisition == "varied":
        site, field_strength, site_sequences = draw_site(rng, config.site_profiles, config.contrasts)
        snrs = {c: float(rng.uniform(*config.snr_range)) if config.snr > 0 else 0.0 for c in config.contrasts}
        kfrac = {c: float(rng.uniform(*config.kspace_fraction)) for c in config.contrasts}
        bias_scale = float(rng.uniform(0.5, 1.5))
    else:
        site, field_strength, site_sequences = "fixed", config.field_strength, {}
        snrs = {c: config.snr for c in config.contrasts}
        kfrac = {c: 1.0 for c in config.contrasts}
        bias_scale = 1.0
    overrides = {canonical_contrast(k): v for k, v in config.sequences.items()}
    tissues = jitter_tissues(tissue_table(field_strength), rng, *config.tissue_jitter)
    if wmh is not None:
        tissues["wmh"] = wmh_tissue(field_strength, tissues, lesion_rng, config.tissue_jitter[1])
    thickness = draw_thickness(np.random.default_rng([config.seed, index, 1])) if config.head else None
    head_key = canonical_field_strength(field_strength)

    def template_grid(motion: AffineMotion | None) -> Grid:
        g = out_grid if motion is None else motion.apply(out_grid)
        g = subject_affine.apply(g)
        if elastic is not None:
            g = (g[0] + elastic[0], g[1] + elastic[1], g[2] + elastic[2])
        return ventricles.apply(g)

    def fractions_for(motion: AffineMotion | None) -> dict[str, np.ndarray]:
        g = template_grid(motion)
        f = _sample(template, g)
        if sulcal or cortical:
            f = remodel(f, config.voxel_mm, sulcal, cortical)
        if lesion is not None:
            core, shell = lesion.fractions(g, edge_mm=max(config.voxel_mm[0], 1.0))
            f = _add_lesion(f, core, shell)
        if wmh is not None:
            f = _add_wmh(f, wmh.fraction(g, edge_mm=max(config.voxel_mm[0], 1.0)))
        return f

    reference = fractions_for(None)
    seg = _segmentation(reference)

    # Bias field: a coil profile shared by all contrasts times a smaller per-contrast part.
    norm = [(g - c) / (0.5 * config.fov_mm) for g, c in zip(out_grid, centre)]
    shared_bias = polynomial_bias_field((norm[0], norm[1], norm[2]), rng, config.bias_strength * bias_scale)

    nominal_csf_t1 = tissue_table(field_strength)["csf"].t1
    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    sequences: dict[str, Any] = {}
    noise_sigma: dict[str, float] = {}
    for c in config.contrasts:
        frac = reference if motions[c] is None else fractions_for(motions[c])
        labels[c] = seg if motions[c] is None else _segmentation(frac)
        seq = overrides.get(c) or site_sequences.get(c) or config.sequence(c)
        ti = seq.ti if seq.kind == "ir" and seq.ti is not None else (null_ti(nominal_csf_t1, seq.tr) if seq.kind == "ir" else None)
        sequences[c] = {"kind": seq.kind, "tr_ms": seq.tr, "te_ms": seq.te, "ti_ms": ti, "flip_deg": seq.flip_deg,
                        "snr": round(snrs[c], 4), "kspace_fraction": round(kfrac[c], 4)}
        img = np.zeros(shape, dtype=np.float32)
        for t in SEG_TISSUES:
            if t not in frac:
                continue
            p = tissues[t]
            s = float(signal(seq, p.pd, p.t1, p.t2, csf_t1=nominal_csf_t1))
            img += frac[t] * s
        if thickness is not None:  # the head around this contrast's own brain (it moves with it)
            for t, f in head_fractions(labels[c] > 0, config.voxel_mm, thickness).items():
                p = tissues["csf"] if t == "csf" else HEAD_TISSUES[head_key][t]
                img += f * float(signal(seq, p.pd, p.t1, p.t2, csf_t1=nominal_csf_t1))
        own_bias = polynomial_bias_field((norm[0], norm[1], norm[2]), rng, config.bias_strength * bias_scale * 0.25)
        img *= shared_bias * own_bias
        img = truncate_kspace(img, kfrac[c])
        brain = seg > 0
        sigma = float(img[brain].mean() / snrs[c]) if (snrs[c] > 0 and brain.any()) else 0.0
        noise_sigma[c] = sigma
        images[c] = add_rician_noise(img, sigma, rng)

    params: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "index": index,
        "seed": [config.seed, index],
        "config": config.to_json(),
        "subject_affine": affine_params,
        "anatomy": {"ventricle_expansion": round(ventricles.beta, 6), "sulcal_widening": round(sulcal, 6),
                    "cortical_change": round(cortical, 6)},
        "site": {"profile": site, "field_strength": field_strength},
        "head_mm": thickness,
        "misregistration": motion_params,
        "lesion": _lesion_json(lesion, wmh, config),
        "tissues": {t: {"t1_ms": round(p.t1, 4), "t2_ms": round(p.t2, 4), "pd": round(p.pd, 6)} for t, p in tissues.items()},
        "sequences": sequences,
        "noise_sigma": {c: round(s, 8) for c, s in noise_sigma.items()},
        "seg_labels": {k: v for k, v in SEG_LABELS.items() if k != "wmh" or wmh is not None},
    }
    return Subject(subject_id(index), images, seg, config.affine.copy(), params, labels)


def _lesion_json(lesion: Any, wmh: WhiteMatterLesions | None, config: SynthConfig) -> dict[str, Any] | None:
    """``params.json``'s record of the lesion: its type is named unless the dataset is one of
    tumours drawn by rate (whose records stay as they were)."""
    if wmh is not None:
        return wmh.to_json()
    if lesion is None:
        return None
    if config.lesioned_subjects is None and config.lesion_types == ("tumour",):
        return lesion.to_json()
    return {"type": "tumour", **lesion.to_json()}


# ---------------------------------------------------------------------------------------- names


def subject_id(index: int) -> str:
    """The folder name of embedded subject ``index`` (``sub-000``)."""
    return f"sub-{index:03d}"
