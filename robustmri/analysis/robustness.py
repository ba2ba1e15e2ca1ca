"""Robustness scores: degradation vs clean, area under the degradation curve, mCE.

All functions take a *subject frame* (:func:`robustmri.analysis.stats.subject_means`): one row per
model, direction, perturbation, family, severity and subject. The clean row (perturbation
``"clean"``, severity 0) of a model is the severity-0 point of every perturbation's curve.

Definitions (documented in docs/report.md):

- **Degradation** of metric M at severity s, per subject: the loss of quality relative to the same
  model's clean value on the same subject, signed so that positive means worse:
  ``M_clean - M_s`` for higher-is-better metrics (PSNR in dB, SSIM), ``M_s - M_clean`` for
  lower-is-better ones (MAE, NMSE). It is 0 at severity 0 by construction.
- **AUC**: the area under a subject's degradation curve over the severities present (0..5),
  trapezoid rule with unit spacing between severities; units *metric x severity* (dB x severity for
  PSNR). Lower is more robust; 0 means no loss at any severity. Averaged over subjects afterwards.
- **CE / mCE** (ImageNet-C, Hendrycks & Dietterich 2019; used for segmentation by ROOD-MRI): with
  the error E = 1 - SSIM (default; or MAE) averaged over subjects,
  ``CE_p(model) = sum_{s=1..5} E_{p,s}(model) / sum_{s=1..5} E_{p,s}(reference)`` in percent, and
  ``mCE(model)`` is the mean of CE_p over perturbations p. The reference model scores 100; lower
  is better. The relative variant subtracts each model's clean error first:
  ``relCE_p = sum_s (E_{p,s} - E_clean) / sum_s (E_{p,s}^ref - E_clean^ref)`` (NaN when the
  reference does not degrade, i.e. the denominator is <= 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from robustmri.analysis.intervals import interval
from robustmri.analysis.stats import BETTER
from robustmri.errors import ConfigError, DataError
from robustmri.results import CLEAN

__all__ = [
    "CLEAN",
    "corruption_errors",
    "degradation",
    "degradation_auc",
    "mean_corruption_error",
    "with_clean_curves",
]


ErrorKind = Literal["ssim", "mae"]


def with_clean_curves(subjects: pd.DataFrame) -> pd.DataFrame:
    """Each perturbation's rows plus, at severity 0, a copy of the same model's clean rows.

    Returns a subject frame without the ``"clean"`` perturbation, where every (model, direction,
    perturbation) curve starts at severity 0 with the clean values. Raises DataError when a model
    and direction with perturbed rows has no clean rows.
    """
    clean = subjects[subjects["perturbation"] == CLEAN]
    perturbed = subjects[(subjects["perturbation"] != CLEAN) & (subjects["severity"] > 0)]
    if perturbed.empty:
        return perturbed.copy()
    pairs = perturbed[["model", "direction", "perturbation", "family"]].drop_duplicates()
    have_clean = set(map(tuple, clean[["model", "direction"]].drop_duplicates().to_numpy()))
    lacking = sorted({(m, d) for m, d in pairs[["model", "direction"]].to_numpy()} - have_clean)
    if lacking:
        m, d = lacking[0]
        raise DataError(
            f"results have perturbed rows but no clean rows for model {m!r}, direction {d!r}; "
            "re-run the benchmark so that each model has its perturbation 'clean', severity 0 rows"
        )
    starts = clean.drop(columns=["perturbation", "family"]).merge(pairs, on=["model", "direction"])
    starts["severity"] = 0
    out = pd.concat([starts[subjects.columns], perturbed], ignore_index=True)
    return out.sort_values(["model", "direction", "perturbation", "severity", "subject"], kind="stable",
                           ignore_index=True)


def degradation(subjects: pd.DataFrame, metrics: Sequence[str] = ("psnr", "ssim")) -> pd.DataFrame:
    """Per-subject loss of quality vs the same model's clean value (positive = worse).

    Returns the frame of :func:`with_clean_curves` with one column ``deg_<metric>`` per metric
    (metric units: dB for PSNR); severity 0 rows have degradation 0.
    """
    curves = with_clean_curves(subjects)
    clean = subjects[subjects["perturbation"] == CLEAN][["model", "direction", "subject", *metrics]]
    merged = curves.merge(clean, on=["model", "direction", "subject"], how="left", suffixes=("", "__clean"))
    for m in metrics:
        sign = 1.0 if BETTER.get(m, "higher") == "higher" else -1.0
        merged[f"deg_{m}"] = sign * (merged[f"{m}__clean"] - merged[m])
    return merged.drop(columns=[f"{m}__clean" for m in metrics])


def degradation_auc(deg: pd.DataFrame, metric: str = "psnr") -> pd.DataFrame:
    """Area under each subject's degradation curve (trapezoid over severities 0..5).

    Args:
        deg: output of :func:`degradation` with column ``deg_<metric>``.
        metric: which degradation to integrate.

    Returns:
        One row per (model, direction, perturbation, family, subject) with ``auc`` in
        metric x severity units (dB x severity for PSNR; lower = more robust) and ``n_severities``
        (points integrated, including severity 0). A NaN at any severity gives a NaN area.
    """
    col = f"deg_{metric}"
    if col not in deg.columns:
        raise ConfigError(f"degradation frame has no column {col!r}; compute degradation(..., metrics=[{metric!r}])")
    keys = ["model", "direction", "perturbation", "family", "subject"]
    parts = []
    for _, block in deg.groupby("perturbation", sort=True):
        wide = block.pivot_table(index=keys, columns="severity", values=col, aggfunc="mean", dropna=False)
        wide = wide.sort_index(axis=1)
        sev = wide.columns.to_numpy(dtype=np.float64)
        vals = wide.to_numpy(dtype=np.float64)
        area = np.trapezoid(vals, x=sev, axis=1) if sev.size > 1 else np.zeros(len(wide))
        parts.append(pd.DataFrame({"auc": area, "n_severities": sev.size}, index=wide.index).reset_index())
    if not parts:
        return pd.DataFrame(columns=[*keys, "auc", "n_severities"])
    return pd.concat(parts, ignore_index=True)


def _error(subjects: pd.DataFrame, error: ErrorKind) -> pd.Series:
    if error == "ssim":
        return 1.0 - subjects["ssim"]
    if error == "mae":
        return subjects["mae"]
    raise ConfigError(f"unknown corruption error {error!r}; use 'ssim' (1 - SSIM) or 'mae'")


def corruption_errors(subjects: pd.DataFrame, reference: str, *, error: ErrorKind = "ssim") -> pd.DataFrame:
    """Corruption error CE_p of every model on every perturbation, relative to ``reference``.

    Returns one row per (model, direction, perturbation): ``family``, ``ce`` and ``rel_ce`` in
    percent (the reference scores 100), ``err_sum`` (the model's summed error over severities,
    error units) and ``n_severities`` (severities >= 1 present for both the model and the
    reference). NaN where the reference lacks that perturbation.
    """
    frame = subjects.assign(_err=_error(subjects, error))
    mean_err = frame.groupby(["model", "direction", "perturbation", "family", "severity"], sort=True)["_err"].mean()
    mean_err = mean_err.reset_index()
    clean = mean_err[mean_err["perturbation"] == CLEAN].set_index(["model", "direction"])["_err"]
    pert = mean_err[(mean_err["perturbation"] != CLEAN) & (mean_err["severity"] >= 1)]
    rows = []
    for (direction, perturbation), block in pert.groupby(["direction", "perturbation"], sort=True):
        family = str(block["family"].iloc[0])
        by_model = {m: b.set_index("severity")["_err"] for m, b in block.groupby("model", sort=True)}
        ref = by_model.get(reference)
        for model, errs in by_model.items():
            row = {"model": model, "direction": direction, "perturbation": perturbation, "family": family,
                   "err_sum": float(errs.sum()), "ce": np.nan, "rel_ce": np.nan, "n_severities": 0}
            if ref is not None:
                common = errs.index.intersection(ref.index)
                num, den = float(errs[common].sum()), float(ref[common].sum())
                row["n_severities"] = int(common.size)
                if common.size and den > 0:
                    row["ce"] = 100.0 * num / den
                c_m = clean.get((model, direction), np.nan)
                c_r = clean.get((reference, direction), np.nan)
                rel_den = den - common.size * c_r
                if common.size and np.isfinite(rel_den) and rel_den > 0:
                    row["rel_ce"] = 100.0 * (num - common.size * c_m) / rel_den
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "direction", "perturbation", "family", "err_sum", "ce", "rel_ce",
                                       "n_severities"])


def mean_corruption_error(ce: pd.DataFrame) -> pd.DataFrame:
    """mCE and relative mCE per (model, direction): the mean of CE_p over the *corruptions*
    (percent). Attacks (family ``adversarial``) are left out: their damage depends on the attack's
    budget, not on the scanner, and gets a score of its own
    (:func:`robustmri.analysis.sanity.attack_damage`).

    Perturbations whose CE is NaN (reference missing) are skipped; ``n_perturbations`` counts those
    averaged.
    """
    if "family" in ce.columns:
        ce = ce[ce["family"] != "adversarial"]
    grouped = ce.groupby(["model", "direction"], sort=True)
    out = pd.DataFrame({
        "mce": grouped["ce"].mean(),
        "rel_mce": grouped["rel_ce"].mean(),
        "n_perturbations": grouped["ce"].count(),
    })
    return out.reset_index()


def summary_scores(
    subjects: pd.DataFrame,
    reference: str,
    *,
    error: ErrorKind = "ssim",
    level: float = 0.95,
) -> pd.DataFrame:
    """The two headline robustness scores per (direction, model), each with a confidence interval
    over test subjects (:func:`robustmri.analysis.intervals.interval`):

    - ``mce``: the mCE of :func:`mean_corruption_error` (corruptions only, percent of
      ``reference``'s, lower is better); a ratio of summed mean errors, so its interval is the
      jackknife-t over subjects on the log scale (the model and the reference lose the same
      subject together);
    - ``adversarial``: PSNR lost to the attacks (clean minus attacked, dB, mean over every attack
      and severity except the ``random_linf`` control; lower is more robust); a mean of
      per-subject losses, so its interval is the t interval.

    Returns columns direction, model, score, value, ci_low, ci_high, n_subjects (NaN where a score
    has no cells).
    """
    rows = []
    frame = subjects.assign(_err=_error(subjects, error))
    for direction, block in frame.groupby("direction", sort=False):
        subj = sorted(block["subject"].unique())
        n = len(subj)
        index = {s: i for i, s in enumerate(subj)}
        models = list(dict.fromkeys(block["model"]))

        def per_subject(values: pd.DataFrame, column: str) -> dict[tuple, np.ndarray]:
            out: dict[tuple, np.ndarray] = {}
            for key, g in values.groupby(["model", "perturbation", "severity"], sort=True):
                arr = np.full(n, np.nan)
                arr[[index[s] for s in g["subject"]]] = g[column].to_numpy(dtype=np.float64)
                out[key] = arr
            return out

        cor = block[(block["family"] != "adversarial") & (block["perturbation"] != CLEAN) & (block["severity"] >= 1)]
        err = per_subject(cor, "_err")
        perts = sorted({p for _, p, _ in err})
        for model in models:
            # mCE: per corruption, summed mean error over severities common with the reference
            mine_cells, ref_cells = [], []
            for p in perts:
                sevs = sorted(s for m, q, s in err if m == reference and q == p)
                sevs = [s for s in sevs if (model, p, s) in err]
                if not sevs:
                    continue
                mine = np.stack([err[(model, p, s)] for s in sevs])  # (S, n)
                ref = np.stack([err[(reference, p, s)] for s in sevs])
                if np.isnan(mine).any() or np.isnan(ref).any():
                    continue
                mine_cells.append(mine)
                ref_cells.append(ref)
            if mine_cells:
                iv = interval(mine_cells, ref_cells, statistic=_mce_statistic, log_scale=True, level=level)
                rows.append(_score_row(direction, model, "mce", iv.estimate, iv.low, iv.high, n))
            else:
                rows.append(_score_row(direction, model, "mce", np.nan, np.nan, np.nan, n))
        adv = block[(block["family"] == "adversarial") & (block["perturbation"] != "random_linf") & (block["severity"] >= 1)]
        clean = block[block["perturbation"] == CLEAN]
        for model in models:
            c = clean[clean["model"] == model].set_index("subject")["psnr"]
            lost = []
            for _, g in adv[adv["model"] == model].groupby(["perturbation", "severity"], sort=True):
                arr = np.full(n, np.nan)
                arr[[index[s] for s in g["subject"]]] = c.reindex(g["subject"]).to_numpy() - g["psnr"].to_numpy()
                lost.append(arr)
            if lost and not np.isnan(np.stack(lost)).any():
                iv = interval(np.stack(lost).mean(axis=0), level=level)  # (n,) mean over attack cells
                rows.append(_score_row(direction, model, "adversarial", iv.estimate, iv.low, iv.high, n))
            else:
                rows.append(_score_row(direction, model, "adversarial", np.nan, np.nan, np.nan, n))
    return pd.DataFrame(rows, columns=["direction", "model", "score", "value", "ci_low", "ci_high", "n_subjects"])


def _mce_statistic(mine: list[np.ndarray], ref: list[np.ndarray] | None) -> float:
    """The mCE over a subset of subjects: 100 * mean over corruptions of (sum over severities of the
    model's mean error / the reference's); arguments are lists of (severities, n) arrays."""
    assert ref is not None
    return float(np.mean([100.0 * m.mean(axis=1).sum() / r.mean(axis=1).sum() for m, r in zip(mine, ref)]))


def _score_row(direction: str, model: str, score: str, value: float, low: float, high: float, n: int) -> dict[str, object]:
    return {"direction": direction, "model": model, "score": score, "value": float(value), "ci_low": float(low),
            "ci_high": float(high), "n_subjects": n}
