"""Per-subject values, summaries, paired tests and confidence intervals.

Unit of analysis: the **subject**. ``results.csv`` holds one row per slice; :func:`subject_means`
first averages the slices of each subject (per model, direction, seed, perturbation, severity),
then averages those per-subject values over the seeds a model was trained with, so every subject
weighs the same and a model trained with three seeds is compared on the same footing as one trained
with one. Seed-to-seed spread is therefore *not* part of the reported std; the std is the spread
over test subjects. NaN values (an empty mask) are skipped by every mean.

Tests: :func:`compare_to_reference` runs a two-sided paired Wilcoxon signed-rank test
(:func:`scipy.stats.wilcoxon`) of each model against a reference model, pairing the two models'
per-subject values by subject id, and Holm-corrects the p-values over the models compared within
one group (one table cell column: direction x perturbation x severity x metric). With n paired
subjects the smallest two-sided exact p-value is ``2 / 2**n``: below 6 subjects no difference can
reach p < 0.05, which is reported as such rather than treated as an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustmri.errors import ConfigError, DataError
from robustmri.metrics import BETTER
from robustmri.analysis.intervals import interval
from robustmri.results import KEYS, RESULT_COLUMNS, aggregate, subject_means

__all__ = [
    "BETTER",
    "KEYS",
    "RESULT_COLUMNS",
    "WilcoxonResult",
    "interval_summary",
    "compare_to_reference",
    "holm",
    "subject_means",
    "summarize",
    "wilcoxon_paired",
]



def summarize(
    subjects: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] | None = None, *, ddof: int = 0
) -> pd.DataFrame:
    """Mean, std, median and n over subjects of a subject frame, per group of ``by``.

    A thin wrapper over :func:`robustmri.metrics.aggregate` at subject level (each subject already
    has one row per group). ``ddof=0`` (population std) follows the rest of the project.
    Returns a long frame ``*by, metric, mean, std, median, n``.
    """
    return aggregate(subjects, metrics, level="subject", by=list(by), ddof=ddof)


# ----------------------------------------------------------------------------------- tests


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (family-wise error control).

    With the m finite p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value is
    ``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``; a hypothesis is rejected at level alpha
    when ``p~ < alpha``. NaN entries are left NaN and do not count in m. Returns float64, same shape.
    (:func:`scipy.stats.false_discovery_control` offers only Benjamini-Hochberg/Yekutieli.)
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat = p.reshape(-1)
    ok = np.flatnonzero(np.isfinite(flat))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(flat[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])
    adjusted = np.maximum.accumulate(scaled)
    res = out.reshape(-1)
    res[order] = adjusted
    return res.reshape(p.shape)


@dataclass(frozen=True)
class WilcoxonResult:
    """Outcome of a paired test: W statistic, two-sided p-value and the number of pairs used."""

    statistic: float
    pvalue: float
    n: int


def wilcoxon_paired(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> WilcoxonResult:
    """Two-sided paired Wilcoxon signed-rank test of ``x`` against ``y`` (same length, paired).

    Pairs where either value is NaN are dropped. Never raises for small or degenerate samples:
    no pairs gives p = NaN; all differences zero gives W = 0, p = 1. Otherwise the result of
    ``scipy.stats.wilcoxon(x, y)`` (zero_method="wilcox", method="auto": exact for small samples
    without ties or zeros).
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise DataError(f"paired test needs equal-length samples, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    if n == 0:
        return WilcoxonResult(float("nan"), float("nan"), 0)
    if np.all(a - b == 0):
        return WilcoxonResult(0.0, 1.0, n)
    from scipy import stats

    d = a - b
    nz = d[d != 0]
    ranks = stats.rankdata(np.abs(nz))
    if n <= _EXACT_PERMUTATION_MAX_N and (nz.size < n or np.unique(ranks).size < ranks.size):
        # Ties or zeros with few pairs: scipy's "auto" runs a deterministic permutation test through
        # permutation_test (about 0.5 s per call); the same enumeration, vectorised, is exact and fast.
        return _signed_rank_permutation(nz, ranks, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample / normal-approximation notes
        res = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n)


_EXACT_PERMUTATION_MAX_N = 13  # scipy's threshold for its deterministic permutation test


def _signed_rank_permutation(nonzero: np.ndarray, ranks: np.ndarray, n: int) -> WilcoxonResult:
    """Two-sided p of the signed-rank statistic R+ over all 2**k sign flips of the k nonzero
    differences (midranks for ties, zeros dropped); equals scipy.stats.wilcoxon(method="auto")
    for n <= 13 with ties or zeros."""
    k = nonzero.size
    r_plus = float(ranks[nonzero > 0].sum())
    r_minus = float(ranks.sum()) - r_plus
    signs = (np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1
    null = signs @ ranks
    gamma = abs(1e-14 * r_plus)  # permutation_test's tolerance for float ties
    p_less = np.mean(null <= r_plus + gamma)
    p_greater = np.mean(null >= r_plus - gamma)
    p = float(min(1.0, 2.0 * min(p_less, p_greater)))
    return WilcoxonResult(min(r_plus, r_minus), p, n)


def compare_to_reference(
    subjects: pd.DataFrame,
    reference: str,
    by: Sequence[str],
    metrics: Sequence[str],
    *,
    model_col: str = "model",
) -> pd.DataFrame:
    """Paired Wilcoxon tests of every model against ``reference`` within each group of ``by``.

    Args:
        subjects: a subject frame (one row per model, subject and group) with the metric columns.
        reference: the model every other model is compared to.
        by: grouping columns (e.g. ``["direction", "perturbation", "severity"]``); ``model_col``
            and ``subject`` must not be among them.
        metrics: metric columns to test.

    Returns:
        One row per (``*by``, metric, model != reference): ``n`` (paired subjects), ``mean_diff``
        (mean of model - reference over the pairs, metric units), ``statistic``, ``p`` and
        ``p_holm`` (Holm-adjusted over the models of the same ``*by``, metric group). Empty (with
        those columns) when the reference is absent.
    """
    by = list(by)
    columns = [*by, "metric", model_col, "n", "mean_diff", "statistic", "p", "p_holm"]
    if model_col in by or "subject" in by:
        raise ConfigError(f"compare_to_reference: 'by' must not contain {model_col!r} or 'subject'")
    rows: list[dict[str, object]] = []
    for metric in metrics:
        # observed combinations only; a model missing for a subject leaves NaN (that pair is dropped)
        wide = subjects.groupby([*by, "subject", model_col], sort=True, dropna=False)[metric].mean()
        wide = wide.unstack(model_col)
        if reference not in wide.columns:
            continue
        others = [m for m in wide.columns if m != reference]
        groups = wide.groupby(level=by, sort=True, dropna=False) if by else [((), wide)]
        for key, block in groups:
            key = key if isinstance(key, tuple) else (key,)
            ref = block[reference].to_numpy()
            group_rows = []
            for model in others:
                vals = block[model].to_numpy()
                keep = np.isfinite(vals) & np.isfinite(ref)
                if not keep.any():
                    continue
                res = wilcoxon_paired(vals, ref)
                group_rows.append({**dict(zip(by, key)), "metric": metric, model_col: model, "n": res.n,
                                   "mean_diff": float(np.mean(vals[keep] - ref[keep])),
                                   "statistic": res.statistic, "p": res.pvalue})
            adjusted = holm([r["p"] for r in group_rows])
            for r, padj in zip(group_rows, adjusted):
                r["p_holm"] = float(padj)
            rows.extend(group_rows)
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------ intervals


def interval_summary(
    subjects: pd.DataFrame,
    by: Sequence[str],
    metric: str,
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    """Mean over subjects and its confidence interval per group: columns ``*by, mean, ci_low,
    ci_high, n`` (the metric's units). The interval is :func:`robustmri.analysis.intervals.interval`
    of the per-subject values (a t interval; deterministic)."""
    rows = []
    for key, block in subjects.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        v = block[metric].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        iv = interval(v)
        rows.append({**dict(zip(by, key)), "mean": iv.estimate, "ci_low": iv.low, "ci_high": iv.high, "n": int(v.size)})
    return pd.DataFrame(rows, columns=[*by, "mean", "ci_low", "ci_high", "n"])


# ------------------------------------------------------------- paired differences, seeds as a level


def seed_subject_means(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Slices averaged within (cell, seed, subject): one row per ``KEYS + seed`` with ``metrics``
    (the results table's units). Unlike :func:`robustmri.results.subject_means`, seeds stay apart."""
    keys = [*KEYS, "seed"]
    values = frame[[*keys, *metrics]].copy()
    values[list(metrics)] = values[list(metrics)].astype(float)
    return values.groupby(keys, sort=True, dropna=False)[list(metrics)].mean().reset_index()


def paired_difference_ci(
    seed_frame: pd.DataFrame,
    reference: str,
    by: Sequence[str],
    metric: str,
    *,
    level: float = 0.95,
    model_col: str = "model",
) -> pd.DataFrame:
    """Confidence interval of the mean paired difference ``model - reference`` per group of ``by``.

    Subjects are paired (both models scored on the same test subject); training seeds are a level
    of each model on its own (seed 3 of one model and seed 3 of another are unrelated runs). The
    point estimate is the mean over subjects of (the model's mean over its seeds minus the
    reference's), i.e. the paired difference of seed-averaged subject means. The interval is
    :func:`robustmri.analysis.intervals.interval` of the two (seeds, subjects) grids: the paired t
    interval over subjects, widened by each model's seed-to-seed variance (Welch-Satterthwaite df),
    so disagreement between seeds widens it as it should; with one seed each it is the paired t
    interval. Columns: ``*by``, ``model``, ``mean_diff``, ``ci_low``, ``ci_high`` (metric units),
    ``n_subjects``, ``n_seeds`` (the model's). Deterministic.
    """
    by = list(by)
    columns = [*by, model_col, "mean_diff", "ci_low", "ci_high", "n_subjects", "n_seeds"]
    rows: list[dict[str, object]] = []
    if reference not in set(seed_frame[model_col]):
        return pd.DataFrame(rows, columns=columns)
    for key, block in seed_frame.groupby(by, sort=True, dropna=False) if by else [((), seed_frame)]:
        key = key if isinstance(key, tuple) else (key,)
        grid = block.pivot_table(index=[model_col, "seed"], columns="subject", values=metric, aggfunc="mean", dropna=False)
        if reference not in grid.index.get_level_values(0):
            continue
        xr = grid.loc[reference].to_numpy(dtype=np.float64)
        for model in sorted(set(grid.index.get_level_values(0)) - {reference}):
            xm = grid.loc[model].to_numpy(dtype=np.float64)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                diff = np.nanmean(xm, axis=0) - np.nanmean(xr, axis=0)
            if not np.isfinite(diff).any():
                continue
            iv = interval(xm, xr, level=level)
            rows.append({**dict(zip(by, key)), model_col: model, "mean_diff": iv.estimate, "ci_low": iv.low,
                         "ci_high": iv.high, "n_subjects": int(np.isfinite(diff).sum()),
                         "n_seeds": int(np.isfinite(xm).any(axis=1).sum())})
    return pd.DataFrame(rows, columns=columns)
