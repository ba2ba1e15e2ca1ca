"""Rigid or affine registration of a subject's contrasts to its reference contrast (mutual
information, SimpleITK).

Why SimpleITK: ITK's registration framework is the reference implementation the field uses
(ANTs and elastix are built on it), its Mattes mutual information and multi-resolution
optimisers are well tested on brain MRI, and it is already installed with TorchIO. IXI's T1 is
acquired in a separate session from its T2 and PD, so without registration the pairs are off by
millimetres and degrees (SynDiff's users report 17.3 dB on unregistered IXI against about 30 dB on
registered pairs).

Conventions: volumes are :class:`robustmri.data.readers.Volume` (X, Y, Z) arrays with a RAS+ affine
(mm). A transform is returned as a 4x4 matrix in RAS world coordinates (mm) that maps a point of
the *fixed* (reference) volume to the corresponding point of the *moving* one (ITK's direction),
so the registered moving image is ``moving(T x)`` sampled on the fixed grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustmri.errors import DataError, DependencyError

__all__ = [
    "REGISTRATIONS",
    "Registration",
    "register_volume",
    "rotation_angle_deg",
    "save_registration",
]

REGISTRATIONS = ("rigid", "affine")
MAX_ROTATION_DEG = 30.0
"""A larger rotation away from the start (the head centres aligned) is refused: contrasts of one
session, or of two sessions of one subject, are never that far apart."""
MAX_TRANSLATION_MM = 40.0
"""A larger move of the reference head's centre away from the start is refused. Measured from the
start, not from the headers: two volumes of one subject may have origins tens of millimetres
apart (IXI), and the start already undoes that."""
SCALE_RANGE = (0.8, 1.25)
"""Allowed singular values of an affine transform's linear part."""
MIN_HEAD_DICE = 0.7
"""The head (foreground) masks of the reference and of the registered volume must overlap at
least this much (Dice, inside both fields of view) after the warp. The masks come from each
contrast's own intensity threshold, so they differ at the head's edge even when aligned: correct
registrations of embedded T1/T2 pairs measured 0.83-0.90; a volume showing another object
(the tests' ball of noise) falls far below."""
LEVELS_MM: tuple[tuple[float, float], ...] = ((6.0, 3.0), (3.0, 1.5), (0.0, 0.0))
"""Multi-resolution schedule in physical units: per level, the voxel size the reference is shrunk
to (mm; 0 = its own) and the Gaussian smoothing sigma (mm). The shrink factor of a level is that
size over the reference's finest spacing, rounded, at least 1 (1.64 mm voxels: 4, 2, 1)."""
LPS = np.diag([-1.0, -1.0, 1.0])
"""RAS <-> LPS (ITK's physical space) flip."""


def INTERPOLATOR(sitk: Any) -> int:  # noqa: N802 - a constant that needs the module
    """Interpolation of the moving image inside the metric: linear. Chosen by measurement on the
    registration known answers (``benchmarks/bench_register.py --interpolators linear,bspline
    --subjects 4``: embedded subjects at 128^2 x 32 slices, up to 4 mm / 4 degrees of simulated
    misregistration): linear 0.24 mm median mean error (0.44 mm median max), cubic B-spline 0.23 mm
    (0.44 mm), at 1.9x the time (4.4 against 8.2 s per subject, 2-core AMD EPYC). The moving
    volume is then resampled on the fixed grid linearly as well (:class:`Registration`)."""
    return sitk.sitkLinear


@dataclass
class Registration:
    """Result of registering one moving volume to a fixed one.

    ``matrix``: 4x4 RAS world transform, fixed point -> moving point (mm); ``data``: the moving
    volume resampled on the fixed grid (linear interpolation, 0 outside); ``metric_before`` /
    ``metric_after``: Mattes mutual information (lower is better, ITK's sign) at the start (head
    centres aligned) and at the solution; ``iterations`` and ``stop``: the optimiser's last level; ``seconds``: wall time."""

    kind: str
    matrix: np.ndarray
    data: np.ndarray
    metric_before: float
    metric_after: float
    iterations: int
    stop: str
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)
    data_start: np.ndarray | None = None
    """The moving volume resampled on the fixed grid at the start (head centres aligned), for the
    QC montage's "before" panel; not saved."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "matrix_ras_fixed_to_moving": np.round(self.matrix, 8).tolist(),
            "rotation_deg": round(rotation_angle_deg(self.matrix), 4),
            "translation_mm": np.round(self.matrix[:3, 3], 4).tolist(),
            "metric_before": round(self.metric_before, 6),
            "metric_after": round(self.metric_after, 6),
            "iterations": self.iterations,
            "stop": self.stop,
            "seconds": round(self.seconds, 3),
            **self.parameters,
        }


def _sitk() -> Any:
    try:
        import SimpleITK as sitk
    except ImportError:  # pragma: no cover - a declared dependency
        raise DependencyError("registration needs SimpleITK: pip install SimpleITK") from None
    return sitk


def _to_sitk(data: np.ndarray, affine: np.ndarray) -> Any:
    """(X, Y, Z) array + RAS affine -> SimpleITK image in LPS physical space."""
    sitk = _sitk()
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, (2, 1, 0)), dtype=np.float32))
    lin = affine[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    direction = LPS @ (lin / spacing)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in direction.ravel()])
    img.SetOrigin([float(v) for v in LPS @ affine[:3, 3]])
    return img


def _from_sitk(img: Any) -> np.ndarray:
    return np.transpose(_sitk().GetArrayFromImage(img), (2, 1, 0)).astype(np.float32)


def _planar(data: np.ndarray, affine: np.ndarray) -> bool:
    """One slice whose plane is the world's x-y plane (a 2-D image stored as a volume)."""
    lin = np.asarray(affine, dtype=np.float64)[:3, :3]
    return data.shape[2] == 1 and bool(np.allclose(lin[2, :2], 0.0, atol=1e-6) and np.allclose(lin[:2, 2], 0.0, atol=1e-6))


def _to_sitk_2d(data: np.ndarray, affine: np.ndarray) -> Any:
    """(X, Y, 1) array + RAS affine of an x-y plane -> 2-D SimpleITK image in LPS physical space."""
    sitk = _sitk()
    img = sitk.GetImageFromArray(np.ascontiguousarray(data[:, :, 0].T, dtype=np.float32))
    lin = affine[:2, :2]
    spacing = np.linalg.norm(lin, axis=0)
    img.SetSpacing([float(v) for v in spacing])
    img.SetDirection([float(v) for v in (LPS[:2, :2] @ (lin / spacing)).ravel()])
    img.SetOrigin([float(v) for v in LPS[:2, :2] @ affine[:2, 3]])
    return img


def _from_sitk_2d(img: Any) -> np.ndarray:
    return _sitk().GetArrayFromImage(img).T[:, :, None].astype(np.float32)


def _matrix_ras(transform: Any, dz: float = 0.0) -> np.ndarray:
    """4x4 RAS matrix of a SimpleITK (LPS) Euler or affine transform, fixed -> moving. A 2-D
    transform acts in the x-y plane and moves z by ``dz`` mm (the moving slice's z minus the fixed
    one's)."""
    a = np.array(transform.GetMatrix(), dtype=np.float64)
    n = int(round(math.sqrt(a.size)))
    a = a.reshape(n, n)
    c = np.array(transform.GetCenter(), dtype=np.float64)
    tr = np.array(transform.GetTranslation(), dtype=np.float64)
    offset = tr + c - a @ c  # y = A x + offset in LPS
    if n == 2:
        a3 = np.eye(3)
        a3[:2, :2] = a
        a, offset = a3, np.r_[offset, dz]
    m = np.eye(4)
    m[:3, :3] = LPS @ a @ LPS
    m[:3, 3] = LPS @ offset
    return m


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """Angle (degrees) of the rotation closest to a 4x4 (or 3x3) transform's linear part."""
    a = np.asarray(matrix, dtype=np.float64)[:3, :3]
    u, _, vt = np.linalg.svd(a)
    r = u @ vt
    return float(np.degrees(math.acos(max(-1.0, min(1.0, (np.trace(r) - 1.0) / 2.0)))))


def register_volume(
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    kind: str = "rigid",
    seed: int = 0,
    subject: str = "subject",
    iterations: int = 200,
    sampling: float = 0.25,
) -> Registration:
    """Register ``moving`` to ``fixed`` (each (X, Y, Z) with its RAS affine, any grids: other
    orientations, matrices, voxel sizes and origins) by Mattes mutual information, 50 bins,
    ``sampling`` of the voxels drawn with ``seed``; regular-step gradient descent over the levels of
    :data:`LEVELS_MM` (voxel sizes and smoothing in mm), started from the intensity centres of mass
    aligned (SimpleITK's MOMENTS initialiser), so the headers' origins need not agree. ``kind``:
    ``rigid`` (6 parameters) or ``affine`` (12, started from the rigid solution). Two single slices
    in the x-y plane (a 2-D pair) are registered in plane (3 or 6 parameters). The moving volume is resampled once onto the
    fixed grid (linear; recorded in the result).

    Success is judged by what the warp does, not by the transform's size alone. Refused (one-line
    :class:`DataError` naming ``subject``, what failed and the numbers): no lower metric than at
    the start; head masks overlapping by less than :data:`MIN_HEAD_DICE` after the warp; a rotation
    above :data:`MAX_ROTATION_DEG` or a move of the head centre above :data:`MAX_TRANSLATION_MM`
    away from the start; an affine scale outside :data:`SCALE_RANGE`."""
    import time

    sitk = _sitk()
    if kind not in REGISTRATIONS:
        raise DataError(f"--register {kind!r}: use one of {', '.join(REGISTRATIONS)}")
    t0 = time.perf_counter()
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # ITK sums per thread: one thread, one answer per seed
    try:
        return _register(sitk, fixed, fixed_affine, moving, moving_affine, kind, seed, subject, iterations, sampling, t0)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _register(*args: Any) -> Registration:
    subject = args[7]
    try:
        return _register_core(*args)
    except RuntimeError as exc:  # ITK's exceptions: empty image, no overlap, singular metric, ...
        reason = next((ln.strip() for ln in str(exc).splitlines() if "ITK ERROR" in ln), str(exc).splitlines()[0])
        raise DataError(f"subject {subject}: registration failed ({reason[:200]}); check that the contrasts show the "
                        "same head, or prepare without --register") from None


def _head_mask(data: np.ndarray) -> np.ndarray:
    from robustmri.data.brainmask import threshold_mask

    return threshold_mask([data]) if np.any(data > 0) else np.zeros(data.shape, dtype=bool)


def _metric(sitk: Any, f_img: Any, m_img: Any, transform: Any) -> float:
    """Mattes mutual information (50 bins, every voxel, linear interpolation) of ``transform``."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(transform)
    return float(reg.MetricEvaluate(f_img, m_img))


def _head_dice(sitk: Any, f_img: Any, fixed_head: np.ndarray, moving_head: np.ndarray, affine: np.ndarray,
               transform: Any, planar: bool) -> float:
    """Dice of the reference's head mask and the moving one warped onto its grid by ``transform``,
    counted where the moving field of view covers the reference's."""
    to_img, from_img = (_to_sitk_2d, _from_sitk_2d) if planar else (_to_sitk, _from_sitk)
    warped = sitk.Resample(to_img(moving_head.astype(np.float32), affine), f_img, transform, sitk.sitkNearestNeighbor, 0.0)
    ones = np.ones(moving_head.shape, dtype=np.float32)
    cover = from_img(sitk.Resample(to_img(ones, affine), f_img, transform, sitk.sitkNearestNeighbor, 0.0)) > 0.5
    a, b = fixed_head & cover, (from_img(warped) > 0.5) & cover
    total = int(a.sum() + b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 0.0


def _optimise(sitk: Any, f_img: Any, m_img: Any, initial: Any, shrink: list[int], seed: int, iterations: int,
              sampling: float) -> tuple[Any, Any]:
    """Run the multi-resolution optimisation from ``initial`` -> (final transform, the method)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    if sampling >= 1.0:
        reg.SetMetricSamplingStrategy(reg.NONE)
    else:
        reg.SetMetricSamplingStrategy(reg.REGULAR)
        reg.SetMetricSamplingPercentage(float(sampling), int(seed) + 1)  # seed 0 is SimpleITK's "wall clock"
    reg.SetNumberOfThreads(1)
    reg.SetInterpolator(INTERPOLATOR(sitk))
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=int(iterations), relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel([sigma for _, sigma in LEVELS_MM])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    return reg.Execute(f_img, m_img), reg


def _register_core(sitk: Any, fixed: np.ndarray, fixed_affine: np.ndarray, moving: np.ndarray, moving_affine: np.ndarray,
              kind: str, seed: int, subject: str, iterations: int, sampling: float, t0: float) -> Registration:
    import time

    planar = _planar(fixed, fixed_affine) and _planar(moving, moving_affine)  # a 2-D pair: registered in plane
    to_img, from_img = (_to_sitk_2d, _from_sitk_2d) if planar else (_to_sitk, _from_sitk)
    f_img, m_img = to_img(fixed, fixed_affine), to_img(moving, moving_affine)
    dim = 2 if planar else 3
    if planar:  # a slice has few pixels: a sampled metric is too noisy to converge (10 degrees found as 3.7); use all
        sampling = 1.0
    # the start: the intensity centres of mass aligned (header origins may lie tens of mm apart)
    euler = sitk.Euler2DTransform() if planar else sitk.Euler3DTransform()
    initial = sitk.CenteredTransformInitializer(f_img, m_img, euler, sitk.CenteredTransformInitializerFilter.MOMENTS)
    finest = float(min(f_img.GetSpacing()))
    shrink = [max(1, int(round(mm / finest))) if mm > 0 else 1 for mm, _ in LEVELS_MM]
    metric_start = _metric(sitk, f_img, m_img, initial)
    final, reg = _optimise(sitk, f_img, m_img, initial, shrink, seed, iterations, sampling)
    if kind == "affine":  # rigid first, then the 12 (2-D: 6) parameters from there, as ANTs and elastix do
        rigid = final.GetNthTransform(0) if hasattr(final, "GetNthTransform") else final
        affine = sitk.AffineTransform(dim)
        affine.SetCenter(rigid.GetCenter())
        affine.SetMatrix(rigid.GetMatrix())
        affine.SetTranslation(rigid.GetTranslation())
        final, reg = _optimise(sitk, f_img, m_img, affine, shrink, seed, iterations, sampling)
    metric_after = _metric(sitk, f_img, m_img, final)
    dz = float(moving_affine[2, 3] - fixed_affine[2, 3]) if planar else 0.0
    inner = final.GetNthTransform(0) if hasattr(final, "GetNthTransform") else final
    matrix = _matrix_ras(inner, dz)
    start = _matrix_ras(initial, dz)
    fixed_head, moving_head = _head_mask(fixed), _head_mask(moving)
    centre = _centre(fixed_head, fixed_affine)
    angle = rotation_angle_deg(np.linalg.inv(start[:3, :3]) @ matrix[:3, :3])
    shift = float(np.linalg.norm((matrix[:3, :3] @ centre + matrix[:3, 3]) - (start[:3, :3] @ centre + start[:3, 3])))
    dice_start = _head_dice(sitk, f_img, fixed_head, moving_head, moving_affine, initial, planar)
    dice = _head_dice(sitk, f_img, fixed_head, moving_head, moving_affine, final, planar)
    numbers = (f"MI {metric_start:.4f} -> {metric_after:.4f}, head Dice {dice_start:.3f} -> {dice:.3f}, "
               f"{angle:.1f} deg and {shift:.1f} mm from the start (head centres aligned)")
    fix = "check that the contrasts show the same head, or prepare without --register"
    if not metric_after < metric_start:
        raise DataError(f"subject {subject}: registration did not improve mutual information ({numbers}); {fix}")
    if dice < MIN_HEAD_DICE:
        raise DataError(f"subject {subject}: after registration the head masks overlap by Dice {dice:.3f} < {MIN_HEAD_DICE:g} "
                        f"({numbers}); {fix}")
    if angle > MAX_ROTATION_DEG or shift > MAX_TRANSLATION_MM:
        raise DataError(f"subject {subject}: registration moved {angle:.1f} degrees / {shift:.1f} mm from the start, beyond "
                        f"{MAX_ROTATION_DEG:g} degrees / {MAX_TRANSLATION_MM:g} mm: it did not converge ({numbers}); {fix}")
    if kind == "affine":
        sv = np.linalg.svd(matrix[:3, :3], compute_uv=False)
        if sv.min() < SCALE_RANGE[0] or sv.max() > SCALE_RANGE[1]:
            raise DataError(f"subject {subject}: affine registration scaled by {sv.min():.2f}-{sv.max():.2f}, outside "
                            f"{SCALE_RANGE[0]}-{SCALE_RANGE[1]}: it did not converge ({numbers}); try --register rigid")
    resampled = sitk.Resample(m_img, f_img, final, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    at_start = from_img(sitk.Resample(m_img, f_img, initial, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    return Registration(
        kind=kind, matrix=matrix, data=from_img(resampled), metric_before=metric_start, metric_after=metric_after,
        iterations=int(reg.GetOptimizerIteration()), stop=str(reg.GetOptimizerStopConditionDescription())[:200],
        seconds=time.perf_counter() - t0,
        parameters={
            "sampling": sampling, "seed": seed, "bins": 50, "start": "moments", "in_plane": planar,
            "levels_mm": [list(level) for level in LEVELS_MM], "shrink": shrink,
            "head_dice_start": round(dice_start, 4), "head_dice": round(dice, 4),
            "rotation_from_start_deg": round(angle, 4), "shift_from_start_mm": round(shift, 4),
            "resampled_onto": {"grid": "reference", "interpolation": "linear",
                               "spacing_mm": [round(float(v), 4) for v in np.linalg.norm(fixed_affine[:3, :3], axis=0)]},
        },
        data_start=at_start,
    )


def _centre(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World (RAS, mm) centroid of a voxel mask (the volume's centre when it is empty)."""
    idx = np.argwhere(mask).mean(0) if mask.any() else (np.array(mask.shape, dtype=np.float64) - 1) / 2
    return (affine @ np.r_[idx, 1.0])[:3]


def save_registration(folder: Path, contrast: str, result: Registration, fixed: np.ndarray, axis: int = 2) -> None:
    """Write ``folder/<contrast>.json`` (the transform and its diagnostics) and
    ``folder/<contrast>-qc.png``: the registered moving mid slice's edges on the reference at the
    start (head centres aligned) and after the registration, beside a checkerboard of the reference
    and the registered slice (16 squares a side), each scaled to its 99th percentile."""
    import json

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.ndimage import sobel

    from robustmri.atomic import atomic_path, write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / f"{contrast}.json", json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    mid = fixed.shape[axis] // 2

    def mid_slice(volume: np.ndarray) -> np.ndarray:
        img = np.take(volume, mid, axis=axis).T[::-1]
        return img / max(float(np.percentile(img, 99)), 1e-6)

    a, b = mid_slice(fixed), mid_slice(result.data)
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w]
    board = ((yy * 16 // h + xx * 16 // w) % 2).astype(bool)
    panels = [("before (head centres aligned)", result.data_start), ("after registration", result.data)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), dpi=100)
    for ax, (title, volume) in zip(axes[:2], panels):
        ax.imshow(np.clip(a, 0, 1), cmap="gray")
        if volume is not None:
            m = mid_slice(volume)
            edges = np.hypot(sobel(m, 0), sobel(m, 1))
            ax.contour(edges > np.percentile(edges, 90), levels=[0.5], colors="r", linewidths=0.5)
        ax.set_title(f"{title}: {contrast} edges on the reference", fontsize=9)
    axes[2].imshow(np.clip(np.where(board, a, b), 0, 1), cmap="gray")
    axes[2].set_title(f"checkerboard: reference / registered {contrast}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    saved = result.to_json()
    dice = f", head Dice {saved['head_dice_start']:.3f} -> {saved['head_dice']:.3f}" if "head_dice" in saved else ""
    fig.suptitle(f"{result.kind}: {rotation_angle_deg(result.matrix):.2f} deg, MI {result.metric_before:.3f} -> "
                 f"{result.metric_after:.3f}{dice}", fontsize=9)
    with atomic_path(folder / f"{contrast}-qc.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
