"""Tables about the study's design: the KD+attack ablation (its variants side by side) and the
tuning trials on validation subjects (:mod:`robustmri.analysis.tuning`). Each returns a
:class:`~robustmri.report.table.Table` (rendering rules there).
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from robustmri.analysis.robustness import (
    CLEAN,
)

from robustmri.report.table import (
    Cell,
    Column,
    Table,
    fill_cells,
    ordered_perturbations,
    rows_for,
    table_note,
)

__all__ = ["ablation_table", "tuning_table"]


def ablation_table(subjects: pd.DataFrame, reference: str | None, *, prefix: str = "kd_attack:") -> Table | None:
    """KD+attack variants: clean PSNR/SSIM and PSNR under each perturbation and severity present.

    Rows: the models named ``<prefix><variant>``; the baseline of the paired tests is
    ``kd_attack:g_only`` if present, else ``reference`` (added as a row). None when no variant.
    """
    variants = [m for m in dict.fromkeys(subjects["model"]) if str(m).startswith(prefix)]
    if not variants:
        return None
    baseline = f"{prefix}g_only" if f"{prefix}g_only" in variants else reference
    models = ([baseline] if baseline is not None and baseline not in variants else []) + variants
    sub = subjects[subjects["model"].isin(models)]
    clean = sub[sub["perturbation"] == CLEAN]
    columns = [Column("clean_psnr", "PSNR (dB)", group="clean", better="higher", decimals=2),
               Column("clean_ssim", "SSIM", group="clean", better="higher", decimals=4)]
    long_parts = [clean.assign(column="clean_psnr", score=clean["psnr"]),
                  clean.assign(column="clean_ssim", score=clean["ssim"])]
    pert = sub[(sub["perturbation"] != CLEAN) & (sub["severity"] > 0)]
    for p in ordered_perturbations(pert):
        for sev in sorted(pert.loc[pert["perturbation"] == p, "severity"].unique()):
            key = f"{p}_s{int(sev)}"
            columns.append(Column(key, f"s{int(sev)}", group=f"{p} PSNR", better="higher", decimals=2))
            part = pert[(pert["perturbation"] == p) & (pert["severity"] == sev)]
            long_parts.append(part.assign(column=key, score=part["psnr"]))
    long = pd.concat(long_parts, ignore_index=True)[["direction", "model", "subject", "column", "score"]]
    table = Table("ablation", "Ablation of the KD+attack variants", columns, rows_for(sub, baseline, models), {},
                  baseline, table_note(baseline, "mean over test subjects"), row_label="Variant")
    fill_cells(table, long)
    table.mark_best()
    return table


def tuning_table(scores: pd.DataFrame) -> Table | None:
    """Trials of each tuned method on the validation subjects
    (:func:`robustmri.analysis.tuning.selection_scores`): the criterion's parts and the criterion,
    one block per direction and method; the bold criterion is the trial chosen. None when no method
    has two or more trials."""
    from robustmri.analysis.tuning import PARTS, choose

    tuned = scores.groupby(["direction", "method"], sort=False)["model"].transform("count") >= 2
    if not tuned.any():
        return None
    shown = scores[tuned]
    labels = {"clean": "clean", "corruptions": "corruptions", "attacks": "attacks"}
    columns = [Column(p, labels[p], group="PSNR (dB)", decimals=2) for p in PARTS]
    columns.append(Column("criterion", "criterion", decimals=2))
    picked = choose(shown)
    chosen = set(zip(picked["direction"], picked["model"], strict=True))
    rows, cells = [], {}
    for rec in shown.itertuples(index=False):
        group = rec.method if shown["direction"].nunique() == 1 else f"{rec.direction} {rec.method}"
        row = rec.trial
        rows.append((group, row))
        for key in (*PARTS, "criterion"):
            value = float(getattr(rec, key))
            if np.isfinite(value):
                cells[(group, row, key)] = Cell(value, n=int(rec.n_subjects),
                                                bold=key == "criterion" and (rec.direction, rec.model) in chosen)
    table = Table("tuning", "Tuning on the validation subjects: the trials of each method", columns, rows, cells,
                  None, group_label="Method", row_label="Trial")
    table.note = ("Mean over validation subjects. Criterion: the mean of clean PSNR, PSNR under the corruptions "
                  "(every cell, severity >= 1) and PSNR under the attacks (every cell but the random_linf control), "
                  "per subject, then over subjects. Bold: the trial chosen per method (ties to the one listed first).")
    return table
