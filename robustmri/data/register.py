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
"""A larger recovered rotation is refused as a failed registration (contrasts of one session or
of two sessions of one subject are never that far apart)."""
MAX_TRANSLATION_MM = 40.0
SCALE_RANGE = (0.8, 1.25)
"""Allowed singular values of an affine transform's linear part."""
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
    ``metric_after``: Mattes mutual information (lower is better, ITK's sign) at identity and at the
    solution; ``iterations`` and ``stop``: the optimiser's last level; ``seconds``: wall time."""

    kind: str
    matrix: np.ndarray
    data: np.ndarray
    metric_before: float
    metric_after: float
    iterations: int
    stop: str
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)

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


def _matrix_ras(transform: Any) -> np.ndarray:
    """4x4 RAS matrix of a SimpleITK (LPS) Euler or affine transform, fixed -> moving."""
    a = np.array(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    c = np.array(transform.GetCenter(), dtype=np.float64)
    tr = np.array(transform.GetTranslation(), dtype=np.float64)
    offset = tr + c - a @ c  # y = A x + offset in LPS
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
    """Register ``moving`` to ``fixed`` (each (X, Y, Z) with its RAS affine) by Mattes mutual
    information, 50 bins, ``sampling`` of the voxels drawn with ``seed``; regular-step gradient
    descent over three levels (shrink 4, 2, 1; smoothing 2, 1, 0 voxels), initialised by aligning
    the intensity centres of mass. ``kind``: ``rigid`` (6 parameters) or ``affine`` (12).

    Refused (one-line :class:`DataError` naming ``subject``): a solution that does not lower the
    metric, a rotation above :data:`MAX_ROTATION_DEG`, a translation above
    :data:`MAX_TRANSLATION_MM`, or an affine scale outside :data:`SCALE_RANGE`."""
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


def _register_core(sitk: Any, fixed: np.ndarray, fixed_affine: np.ndarray, moving: np.ndarray, moving_affine: np.ndarray,
              kind: str, seed: int, subject: str, iterations: int, sampling: float, t0: float) -> Registration:
    import time

    f_img = _to_sitk(fixed, fixed_affine)
    m_img = _to_sitk(moving, moving_affine)
    base = sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3)
    initial = sitk.CenteredTransformInitializer(f_img, m_img, base, sitk.CenteredTransformInitializerFilter.MOMENTS)
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
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=False)
    identity = sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3)
    before_reg = sitk.ImageRegistrationMethod()
    before_reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    before_reg.SetMetricSamplingStrategy(before_reg.NONE)
    before_reg.SetInterpolator(sitk.sitkLinear)
    before_reg.SetInitialTransform(identity)
    metric_before = float(before_reg.MetricEvaluate(f_img, m_img))
    final = reg.Execute(f_img, m_img)
    after_reg = sitk.ImageRegistrationMethod()
    after_reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    after_reg.SetMetricSamplingStrategy(after_reg.NONE)
    after_reg.SetInterpolator(sitk.sitkLinear)
    after_reg.SetInitialTransform(final)
    metric_after = float(after_reg.MetricEvaluate(f_img, m_img))
    inner = final.GetNthTransform(0) if hasattr(final, "GetNthTransform") else final
    matrix = _matrix_ras(inner)
    angle, shift = rotation_angle_deg(matrix), float(np.linalg.norm(matrix[:3, 3] - _centre_shift(matrix, fixed, fixed_affine)))
    if not metric_after < metric_before:
        raise DataError(f"subject {subject}: registration did not improve mutual information ({metric_before:.4f} -> "
                        f"{metric_after:.4f}); check the contrasts or prepare without --register")
    if angle > MAX_ROTATION_DEG or shift > MAX_TRANSLATION_MM:
        raise DataError(f"subject {subject}: registration gave a {angle:.1f} degree rotation and a {shift:.1f} mm shift, "
                        f"beyond {MAX_ROTATION_DEG:g} degrees / {MAX_TRANSLATION_MM:g} mm: it did not converge; check the "
                        "volumes' headers or prepare without --register")
    if kind == "affine":
        sv = np.linalg.svd(matrix[:3, :3], compute_uv=False)
        if sv.min() < SCALE_RANGE[0] or sv.max() > SCALE_RANGE[1]:
            raise DataError(f"subject {subject}: affine registration scaled by {sv.min():.2f}-{sv.max():.2f}, outside "
                            f"{SCALE_RANGE[0]}-{SCALE_RANGE[1]}: it did not converge; try --register rigid")
    resampled = sitk.Resample(m_img, f_img, final, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return Registration(
        kind=kind, matrix=matrix, data=_from_sitk(resampled), metric_before=metric_before, metric_after=metric_after,
        iterations=int(reg.GetOptimizerIteration()), stop=str(reg.GetOptimizerStopConditionDescription())[:200],
        seconds=time.perf_counter() - t0, parameters={"sampling": sampling, "seed": seed, "bins": 50},
    )


def _centre_shift(matrix: np.ndarray, fixed: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The translation part a rotation about the volume's centre contributes (so the refusal
    threshold measures how far the centre moves, not where the world origin lies)."""
    centre = affine @ np.array([(fixed.shape[0] - 1) / 2, (fixed.shape[1] - 1) / 2, (fixed.shape[2] - 1) / 2, 1.0])
    return centre[:3] - matrix[:3, :3] @ centre[:3]


def save_registration(folder: Path, contrast: str, result: Registration, fixed: np.ndarray, axis: int = 2) -> None:
    """Write ``folder/<contrast>.json`` (the transform and its diagnostics) and
    ``folder/<contrast>-qc.png``: a checkerboard of the fixed and the registered moving mid slice
    along ``axis`` (16 squares a side), each scaled to its 99th percentile, beside an edge overlay."""
    import json

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.ndimage import sobel

    from robustmri.atomic import atomic_path, write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / f"{contrast}.json", json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    mid = fixed.shape[axis] // 2
    a = np.take(fixed, mid, axis=axis).T[::-1]
    b = np.take(result.data, mid, axis=axis).T[::-1]
    a = a / max(float(np.percentile(a, 99)), 1e-6)
    b = b / max(float(np.percentile(b, 99)), 1e-6)
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w]
    board = ((yy * 16 // h + xx * 16 // w) % 2).astype(bool)
    checker = np.where(board, a, b)
    edges = np.hypot(sobel(b, 0), sobel(b, 1))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), dpi=100)
    axes[0].imshow(np.clip(checker, 0, 1), cmap="gray")
    axes[0].set_title(f"checkerboard: reference / {contrast}", fontsize=9)
    axes[1].imshow(np.clip(a, 0, 1), cmap="gray")
    axes[1].contour(edges > np.percentile(edges, 90), levels=[0.5], colors="r", linewidths=0.5)
    axes[1].set_title(f"{contrast} edges on the reference", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{result.kind}: {rotation_angle_deg(result.matrix):.2f} deg, MI {result.metric_before:.3f} -> "
                 f"{result.metric_after:.3f}", fontsize=9)
    with atomic_path(folder / f"{contrast}-qc.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
