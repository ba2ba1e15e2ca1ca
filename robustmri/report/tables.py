"""Tables of clean quality and robustness, built from the subject frame of
:func:`robustmri.analysis.stats.subject_means`: clean quality, the severity grid per metric, AUC
of the degradation curve, mCE, attacks, output stability and the robustness scores. Each returns
a :class:`~robustmri.report.table.Table` (rendering rules there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from robustmri.analysis.robustness import (
    CLEAN,
    corruption_errors,
    degradation,
    degradation_auc,
    mean_corruption_error,
)
from robustmri.analysis.sanity import CONTROL
from robustmri.analysis.stats import BETTER

from robustmri.report.table import (
    METRIC_DECIMALS,
    METRIC_LABEL,
    Cell,
    Column,
    Table,
    fill_cells,
    mark_partial,
    order_rows,
    ordered_families,
    ordered_perturbations,
    rows_for,
    table_note,
)

__all__ = [
    "attack_table", "auc_table", "ce_table", "clean_table", "robustness_table", "scores_table", "stability_table",
]


def clean_table(
    subjects: pd.DataFrame, reference: str | None, metrics: Sequence[str] = ("psnr", "ssim", "mae")
) -> Table:
    """Clean quality per model and direction: mean ± std over subjects of each metric."""
    clean = subjects[subjects["perturbation"] == CLEAN]
    metrics = [m for m in metrics if m in clean.columns]
    columns = [Column(m, METRIC_LABEL.get(m, m), better=BETTER.get(m), decimals=METRIC_DECIMALS.get(m, 3),
                      show_std=True) for m in metrics]
    table = Table("clean_quality", "Clean translation quality", columns, rows_for(clean, reference), {}, reference,
                  table_note(reference))
    long = clean.melt(id_vars=["direction", "model", "subject"], value_vars=metrics, var_name="column",
                      value_name="score")
    fill_cells(table, long)
    table.mark_best()
    return table


def robustness_table(
    subjects: pd.DataFrame,
    reference: str | None,
    metric: str = "psnr",
    *,
    error: Literal["ssim", "mae"] = "ssim",
) -> Table:
    """Mean ``metric`` per model under each perturbation family and severity, plus AUC and mCE.

    Columns: Clean, then per family the severities present (the per-subject values of the family's
    perturbations are averaged first), ``AUC`` (mean over perturbations of the per-subject area
    under the ``metric`` degradation curve, metric x severity, lower = more robust; tested) and
    ``mCE`` (percent of the reference's, from :func:`corruption_errors` with ``error``; not tested).
    """
    better = BETTER.get(metric, "higher")
    dec = METRIC_DECIMALS.get(metric, 3)
    unit = "dB" if metric == "psnr" else ""
    rows = rows_for(subjects, reference)
    # the attacks' control (random signs) is not a perturbation a model should be robust to: it has
    # its own column in the adversarial table and stays out of family means and AUC
    subjects = subjects[subjects["perturbation"] != CONTROL]
    clean = subjects[subjects["perturbation"] == CLEAN]
    pert = subjects[(subjects["perturbation"] != CLEAN) & (subjects["severity"] > 0)]
    columns = [Column("clean", "clean", better=better, decimals=dec)]
    long_parts = [clean.assign(column="clean")[["direction", "model", "subject", "column", metric]]]
    fam = pert.groupby(["direction", "model", "family", "severity", "subject"], sort=False)[metric].mean().reset_index()
    families = ordered_families(pert)
    for family in families:
        for sev in sorted(fam.loc[fam["family"] == family, "severity"].unique()):
            key = f"{family}_s{int(sev)}"
            columns.append(Column(key, f"s{int(sev)}", group=family, better=better, decimals=dec))
            part = fam[(fam["family"] == family) & (fam["severity"] == sev)]
            long_parts.append(part.assign(column=key)[["direction", "model", "subject", "column", metric]])
    auc_unit = f"{unit} × sev".strip() if unit else "× sev"
    table = Table(f"robustness_{metric}", f"{METRIC_LABEL.get(metric, metric)} under perturbations", columns, rows,
                  {}, reference, "")
    long = pd.concat(long_parts, ignore_index=True).rename(columns={metric: "score"})
    if not pert.empty:
        deg = degradation(subjects, [metric])
        auc = degradation_auc(deg, metric)
        per_subject = auc.groupby(["direction", "model", "subject"], sort=False)["auc"].mean().reset_index()
        columns.append(Column("auc", f"AUC ({auc_unit})", group="scores", better="lower", decimals=dec))
        long = pd.concat([long, per_subject.assign(column="auc").rename(columns={"auc": "score"})], ignore_index=True)
    fill_cells(table, long)
    if not pert.empty and reference is not None and error in subjects.columns:
        ce = corruption_errors(subjects, reference, error=error)
        mce = mean_corruption_error(ce)
        if mce["mce"].notna().any():
            columns.append(Column("mce", "mCE (%)", group="scores", better="lower", decimals=1))
            for rec in mce.itertuples(index=False):
                table.cells[(rec.direction, rec.model, "mce")] = Cell(float(rec.mce), n=int(rec.n_perturbations))
    err_name = "1 − SSIM" if error == "ssim" else "MAE"
    table.note = (table_note(reference, "mean over test subjects; family columns average the family's perturbations")
                  + f" AUC: area under the per-subject {metric.upper()} loss-vs-severity curve over severities 0..5 "
                  f"({auc_unit}), averaged over perturbations; lower is more robust."
                  + (f" mCE: summed {err_name} over severities relative to {reference} (=100), averaged over "
                     "perturbations; lower is better." if reference is not None else ""))
    mark_partial(table, pert, summary_columns=("auc", "mce"))
    table.mark_best()
    return table


def auc_table(subjects: pd.DataFrame, reference: str | None, metric: str = "psnr") -> Table:
    """Per-perturbation AUC of the ``metric`` degradation curve (metric x severity), tested vs reference."""
    dec = METRIC_DECIMALS.get(metric, 3)
    deg = degradation(subjects[subjects["perturbation"] != CONTROL], [metric])
    auc = degradation_auc(deg, metric)
    perts = ordered_perturbations(auc)
    fam_of = dict(zip(auc["perturbation"], auc["family"]))
    columns = [Column(p, p, group=fam_of[p], better="lower", decimals=dec) for p in perts]
    columns.append(Column("mean", "mean", group="all", better="lower", decimals=dec))
    unit = "dB × severity" if metric == "psnr" else "× severity"
    table = Table(f"auc_{metric}", f"Area under the {metric.upper()} degradation curve ({unit})", columns,
                  rows_for(subjects, reference), {}, reference, "")
    long = auc.rename(columns={"perturbation": "column", "auc": "score"})[["direction", "model", "subject", "column",
                                                                            "score"]]
    mean = auc.groupby(["direction", "model", "subject"], sort=False)["auc"].mean().reset_index()
    long = pd.concat([long, mean.assign(column="mean").rename(columns={"auc": "score"})], ignore_index=True)
    fill_cells(table, long)
    table.note = table_note(reference, f"mean over subjects of the area under the {metric.upper()} loss curve, severities "
                                  "0..5, trapezoid rule; lower is more robust")
    mark_partial(table, auc, family_columns=False, summary_columns=("mean",))
    table.mark_best()
    return table


def ce_table(subjects: pd.DataFrame, reference: str, *, error: Literal["ssim", "mae"] = "ssim") -> Table:
    """Per-perturbation corruption error CE_p (%), mCE and relative mCE; the reference scores 100."""
    ce = corruption_errors(subjects, reference, error=error)
    mce = mean_corruption_error(ce)
    perts = ordered_perturbations(ce)
    fam_of = dict(zip(ce["perturbation"], ce["family"]))
    columns = [Column(p, p, group=fam_of[p], better="lower", decimals=1) for p in perts]
    columns += [Column("mce", "mCE", group="mean", better="lower", decimals=1),
                Column("rel_mce", "rel. mCE", group="mean", better="lower", decimals=1)]
    table = Table("corruption_error", "Corruption error CE (%, reference = 100)", columns,
                  rows_for(subjects, reference), {}, reference, "")
    for rec in ce.itertuples(index=False):
        table.cells[(rec.direction, rec.model, rec.perturbation)] = Cell(float(rec.ce), n=int(rec.n_severities))
    for rec in mce.itertuples(index=False):
        table.cells[(rec.direction, rec.model, "mce")] = Cell(float(rec.mce), n=int(rec.n_perturbations))
        table.cells[(rec.direction, rec.model, "rel_mce")] = Cell(float(rec.rel_mce), n=int(rec.n_perturbations))
    err_name = "1 − SSIM" if error == "ssim" else "MAE"
    table.note = (f"CE: mean {err_name} over subjects, summed over severities 1..5, divided by {reference}'s, in %. "
                  "mCE: mean CE over perturbations. rel. mCE: the same with each model's clean error subtracted "
                  "first. Lower is better; bold: best per column.")
    mark_partial(table, ce, family_columns=False, summary_columns=("mce", "rel_mce"))
    table.mark_best()
    return table


def attack_table(subjects: pd.DataFrame, reference: str | None, metric: str = "psnr") -> Table | None:
    """The adversarial score: PSNR (or ``metric``) lost to each attack and severity against the same
    model's clean score, mean ± std over subjects, tested against ``reference``. None without attacks.

    Kept apart from the mCE (corruptions only): an attack's damage depends on its budget."""
    adv = subjects[(subjects["family"] == "adversarial") & (subjects["perturbation"] != CLEAN)]
    if adv.empty:
        return None
    dec = METRIC_DECIMALS.get(metric, 3)
    deg = degradation(subjects, [metric])
    deg = deg[(deg["family"] == "adversarial") & (deg["severity"] > 0)]
    keys = sorted({(p, int(s)) for p, s in zip(deg["perturbation"], deg["severity"])},
                  key=lambda k: (k[0] != "random_linf", k[0], k[1]))
    columns = [Column(f"{p}@{s}", f"s{s}", group=p, better="lower", decimals=dec, show_std=True) for p, s in keys]
    unit = "dB" if metric == "psnr" else ""
    table = Table(f"attacks_{metric}", f"Adversarial score: {metric.upper()} lost to each attack ({unit})".replace(" ()", ""),
                  columns, rows_for(subjects, reference), {}, reference, "")
    long = deg.assign(column=deg["perturbation"] + "@" + deg["severity"].astype(int).astype(str))
    long = long.rename(columns={f"deg_{metric}": "score"})[["direction", "model", "subject", "column", "score"]]
    fill_cells(table, long)
    table.note = table_note(reference, f"mean ± std over subjects of the clean {metric.upper()} minus the attacked one; "
                                  "lower is more robust; random_linf is the control (random signs of the same norm)")
    table.mark_best()
    return table


def stability_table(subjects: pd.DataFrame, reference: str | None, metric: str = "stability_psnr") -> Table | None:
    """Output stability per perturbation family and severity: the protocol's PSNR (or SSIM) of the
    perturbed output against the same model's clean output, mean over subjects (higher = the
    output moved less), tested against ``reference``. None when the results hold no stability values."""
    if metric not in subjects.columns:
        return None
    pert = subjects[(subjects["perturbation"] != CLEAN) & (subjects["severity"] > 0) & subjects[metric].notna()]
    if pert.empty:
        return None
    base = metric.removeprefix("stability_")
    dec = METRIC_DECIMALS.get(base, 3)
    fam = pert.groupby(["direction", "model", "family", "severity", "subject"], sort=False)[metric].mean().reset_index()
    columns, parts = [], []
    for family in ordered_families(pert):
        for sev in sorted(fam.loc[fam["family"] == family, "severity"].unique()):
            key = f"{family}_s{int(sev)}"
            columns.append(Column(key, f"s{int(sev)}", group=family, better="higher", decimals=dec))
            part = fam[(fam["family"] == family) & (fam["severity"] == sev)]
            parts.append(part.assign(column=key)[["direction", "model", "subject", "column", metric]])
    label = METRIC_LABEL.get(base, base)
    table = Table(metric, f"Output stability: {label} of the perturbed output against the clean output", columns,
                  rows_for(subjects, reference), {}, reference, "")
    fill_cells(table, pd.concat(parts, ignore_index=True).rename(columns={metric: "score"}))
    table.note = table_note(reference, "mean over test subjects; family columns average the family's perturbations; "
                                  "higher = the perturbation moved the output less (the target plays no part)")
    mark_partial(table, pert)
    table.mark_best()
    return table


def scores_table(scores: pd.DataFrame, reference: str | None, subjects: pd.DataFrame | None = None) -> Table:
    """The headline scores of :func:`robustmri.analysis.robustness.summary_scores` with their
    confidence intervals (:func:`robustmri.analysis.intervals.interval`): mCE (corruptions, % of the reference) and the adversarial score
    (PSNR lost to the attacks, dB). ``subjects`` (the per-subject rows the scores came from) marks
    a score averaged over fewer attacks or corruptions than the other rows' (:func:`mark_partial`)."""
    columns = [
        Column("mce", "value", group="mCE (%)", better="lower", decimals=1),
        Column("mce_low", "95% CI low", group="mCE (%)", decimals=1),
        Column("mce_high", "95% CI high", group="mCE (%)", decimals=1),
        Column("adversarial", "value", group="adversarial (dB lost)", better="lower", decimals=2),
        Column("adversarial_low", "95% CI low", group="adversarial (dB lost)", decimals=2),
        Column("adversarial_high", "95% CI high", group="adversarial (dB lost)", decimals=2),
    ]
    rows = []
    for direction in dict.fromkeys(scores["direction"]):
        present = list(dict.fromkeys(scores.loc[scores["direction"] == direction, "model"]))
        rows += [(direction, m) for m in order_rows(present, reference)]
    table = Table("scores", "Robustness scores with 95% confidence intervals", columns, rows, {}, reference, "")
    for rec in scores.itertuples(index=False):
        if not np.isfinite(rec.value):
            continue
        n = int(rec.n_subjects)
        table.cells[(rec.direction, rec.model, rec.score)] = Cell(float(rec.value), n=n)
        table.cells[(rec.direction, rec.model, f"{rec.score}_low")] = Cell(float(rec.ci_low), n=n)
        table.cells[(rec.direction, rec.model, f"{rec.score}_high")] = Cell(float(rec.ci_high), n=n)
    table.note = ("mCE: corruption error summed over severities relative to the reference model (= 100), averaged over "
                  "the corruptions (attacks excluded). Adversarial: PSNR lost to the attacks (clean minus attacked, "
                  "dB), averaged over every attack and severity except the random_linf control. 95% CI over test "
                  "subjects: t interval of the mean loss; for the mCE, jackknife-t on the log scale (each left-out "
                  "subject leaves the model and the reference together).")
    if subjects is not None:
        pert = subjects[(subjects["perturbation"] != CLEAN) & (subjects["severity"] > 0) & (subjects["perturbation"] != CONTROL)]
        mark_partial(table, pert[pert["family"] == "adversarial"], family_columns=False, summary_columns=("adversarial",))
        mark_partial(table, pert[pert["family"] != "adversarial"], family_columns=False, summary_columns=("mce",))
    table.mark_best()
    return table
