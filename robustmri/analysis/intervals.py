"""Confidence intervals: one function, :func:`interval`, for every interval the report prints.

The method was chosen by measurement (``benchmarks/interval_coverage.py``; figures in
docs/report.md): a percentile bootstrap of a mean over 6 subjects covers about 85 % where it says
95 %, because its resamples cannot be more spread than the sample itself. The interval here is a
**Student t interval with a jackknife standard error over subjects**:

    estimate +- t_{df, (1 + level) / 2} * se

- Subjects are the unit (the protocols' ``subject`` aggregation). The jackknife leaves one subject
  out at a time; for a mean its standard error is exactly ``sd / sqrt(n)`` (ddof 1), so the interval
  of a mean is the classic t interval, exact for normal data at any n. For any other statistic of
  per-subject data it is the jackknife-t interval, df = n - 1; a positive ratio (the mCE) gets
  it on the log scale, mapped back.
- Training seeds, where a model has several, are a level of their own: a seed's model is better or
  worse on *every* subject, which the spread over subjects cannot see. The seed-to-seed variance of
  each model's mean over subjects is added (divided by its number of seeds), and the degrees of
  freedom are Welch-Satterthwaite's. With one seed per model this is the paired t interval over
  subjects. The added term also holds the seed-by-subject noise once more, so the interval errs on
  the wide side (measured on the hierarchical design at nominal 95 %: 97.2 % at 6 subjects, 95.3 %
  at 10, 94.7 % at 40).

Everything is deterministic: no resampling, no seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from robustmri.errors import ConfigError

__all__ = ["Interval", "interval", "METHOD"]

METHOD = "Student t with a jackknife standard error over subjects (seeds as a level, Welch-Satterthwaite df)"
"""One line naming the method, for captions and docs."""


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided confidence interval, in the units of the data.

    ``se`` is the standard error, ``df`` the t distribution's degrees of freedom (NaN when the
    interval is undefined), ``n`` the number of subjects used. With one subject, or a zero
    standard error, ``low == high == estimate``; with none, everything is NaN.
    """

    estimate: float
    low: float
    high: float
    se: float
    df: float
    n: int


def _nan_interval(n: int = 0) -> Interval:
    nan = float("nan")
    return Interval(nan, nan, nan, nan, nan, n)


def _as_grid(x: np.ndarray | None) -> np.ndarray | None:
    if x is None:
        return None
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim != 2:
        raise ConfigError(f"interval() takes per-subject values of shape (n,) or (seeds, n), got shape {a.shape}")
    return a


def _seed_component(grid: np.ndarray, keep: np.ndarray) -> tuple[float, float]:
    """(variance of the mean over seeds, its df) from a (seeds, n) grid on the subjects ``keep``."""
    rows = grid[:, keep]
    rows = rows[np.isfinite(rows).any(axis=1)]
    if rows.shape[0] < 2:
        return 0.0, np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        seed_means = np.nanmean(rows, axis=1)
    return float(np.var(seed_means, ddof=1) / rows.shape[0]), float(rows.shape[0] - 1)


def _jackknife_se(statistic: Callable[[np.ndarray], float], n: int) -> float:
    """Jackknife standard error of ``statistic(keep)`` (keep: bool mask over n subjects)."""
    leave = np.empty(n)
    for j in range(n):
        keep = np.ones(n, dtype=bool)
        keep[j] = False
        leave[j] = statistic(keep)
    if not np.isfinite(leave).all():
        return float("nan")
    return float(np.sqrt((n - 1) / n * np.sum((leave - leave.mean()) ** 2)))


def _subject_arrays(x: Any) -> Any:
    """An array, or a list of arrays (ragged leading axes), with subjects on every last axis."""
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], np.ndarray):
        arrays = [np.asarray(a, dtype=np.float64) for a in x]
        if len({a.shape[-1] for a in arrays}) != 1:
            raise ConfigError("interval(statistic=...) needs the same subjects (last axis) in every array")
        return arrays
    return np.asarray(x, dtype=np.float64)


def _subject_count(x: Any) -> int:
    return int(x[0].shape[-1]) if isinstance(x, list) else int(x.shape[-1])


def _take(x: Any, keep: np.ndarray) -> Any:
    return [a[..., keep] for a in x] if isinstance(x, list) else x[..., keep]


def interval(
    values: Any,
    reference: Any = None,
    *,
    statistic: Callable[[Any, Any], float] | None = None,
    log_scale: bool = False,
    level: float = 0.95,
) -> Interval:
    """Confidence interval of a subject-level estimate (see the module docstring for the method).

    Args:
        values: per-subject values, subjects on the last axis: ``(n,)``, or ``(seeds, n)`` for a
            model trained with several seeds (NaN = missing; a subject missing everywhere is
            dropped). Units are the metric's (dB, SSIM, percent).
        reference: the same for a paired difference ``values - reference`` (subjects paired by
            position; its seeds are unrelated to ``values``' seeds).
        statistic: another estimate than the (seed-averaged) mean: ``statistic(v, r)`` receives
            ``values`` and ``reference`` (arrays, or lists of arrays with ragged leading axes)
            restricted to a subset of subjects (last axis) and returns a float; their leading
            axes are its own (e.g. perturbation cells), not seeds.
            Its standard error is the jackknife's over subjects, df = n - 1.
        log_scale: with ``statistic``, for a positive statistic (a ratio such as the mCE): the
            interval is built for its logarithm and mapped back, so it is asymmetric and never
            crosses 0; ``se`` is then the log's. Ratios are closer to normal on the log scale
            (measured on mCE-like ratios at n = 6: 93.0 % against 92.8 % without; a small gain,
            and the interval stays positive).
        level: the two-sided confidence level in (0, 1).

    Returns:
        An :class:`Interval`.
    """
    if not 0 < level < 1:
        raise ConfigError(f"confidence level {level!r} must be in (0, 1), e.g. 0.95")
    if statistic is not None:
        v, r = _subject_arrays(values), None if reference is None else _subject_arrays(reference)
        n = _subject_count(v)
        if n == 0:
            return _nan_interval()
        estimate = float(statistic(v, r))
        if not np.isfinite(estimate) or (log_scale and estimate <= 0):
            return _nan_interval(n)
        if n == 1:
            return Interval(estimate, estimate, estimate, 0.0, float("nan"), 1)

        def at(keep: np.ndarray) -> float:
            value = float(statistic(_take(v, keep), None if r is None else _take(r, keep)))
            return (np.log(value) if value > 0 else float("nan")) if log_scale else value

        se = _jackknife_se(at, n)
        if not log_scale:
            return _student(estimate, se, float(n - 1), n, level)
        iv = _student(float(np.log(estimate)), se, float(n - 1), n, level)
        return Interval(estimate, float(np.exp(iv.low)), float(np.exp(iv.high)), se, iv.df, n)

    vm = _as_grid(values)
    vr = _as_grid(reference)
    assert vm is not None
    if vr is not None and vr.shape[1] != vm.shape[1]:
        raise ConfigError(f"paired values need the same subjects: {vm.shape[1]} against {vr.shape[1]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = np.nanmean(vm, axis=0) if vr is None else np.nanmean(vm, axis=0) - np.nanmean(vr, axis=0)
    keep = np.isfinite(d)
    n = int(keep.sum())
    if n == 0:
        return _nan_interval()
    d = d[keep]
    estimate = float(d.mean())
    if n == 1:
        return Interval(estimate, estimate, estimate, 0.0, float("nan"), 1)
    parts = [(float(np.var(d, ddof=1) / n), float(n - 1))]  # subjects (the jackknife SE of a mean)
    parts.append(_seed_component(vm, keep))
    if vr is not None:
        parts.append(_seed_component(vr, keep))
    var = sum(c for c, _ in parts)
    denom = sum(c * c / k for c, k in parts if c > 0)
    df = var * var / denom if denom > 0 else float(n - 1)
    return _student(estimate, float(np.sqrt(var)), df, n, level)


def _student(estimate: float, se: float, df: float, n: int, level: float) -> Interval:
    if not np.isfinite(se):
        return Interval(estimate, float("nan"), float("nan"), se, df, n)
    if se == 0.0:
        return Interval(estimate, estimate, estimate, 0.0, df, n)
    half = float(stats.t.ppf((1.0 + level) / 2.0, df)) * se
    return Interval(estimate, estimate - half, estimate + half, se, df, n)
