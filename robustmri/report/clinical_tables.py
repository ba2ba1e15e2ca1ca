"""The clinical-utility table: what happens to lesions, clean, under the corruptions and under the
attacks (the rows of ``clinical.csv``, :mod:`robustmri.clinical`).

Rows are models per direction (the reference first); column groups are ``clean``, the corruptions
at the suite's highest corruption severity and the attacks at the highest attack severity (each a
mean over the perturbations of the group, per subject); the columns are the contrast kept, the
lesions kept, the lesions invented per subject and the PSNR inside the lesions. A cell is the mean
over test subjects (each subject's mean over the model's seeds) with its 95 % interval
(:func:`robustmri.analysis.intervals.interval`: subjects and seeds); ``*`` / ``**`` mark a paired
Wilcoxon test against the reference model over subjects, Holm-corrected over the table within a
direction, as in every other table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustmri.analysis.intervals import interval
from robustmri.results import CLEAN
from robustmri.report.table import Column, Table, fill_cells, rows_for, table_note

__all__ = ["CLINICAL_COLUMNS", "clinical_table", "detector_note"]

CLINICAL_COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("contrast_kept", "contrast kept", "higher", 2),
    ("lesions_kept", "lesions kept", "higher", 2),
    ("lesions_invented", "invented / subject", "lower", 2),
    ("lesion_psnr", "lesion PSNR (dB)", "higher", 2),
)
"""(score, header, better, decimals) of each column of a group."""


def _groups(frame: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """(key, header, row selector) of each column group present in ``frame``."""
    out = [("clean", "clean", frame["perturbation"] == CLEAN)]
    perturbed = frame[frame["perturbation"] != CLEAN]
    for key, name, is_attack in (("corrupt", "corruptions", False), ("attack", "attacks", True)):
        part = perturbed[(perturbed["family"] == "adversarial") == is_attack]
        if part.empty:
            continue
        sev = int(part["severity"].max())
        out.append((key, f"{name}, severity {sev}", (frame["perturbation"] != CLEAN)
                    & ((frame["family"] == "adversarial") == is_attack) & (frame["severity"] == sev)))
    return out


def clinical_table(clinical: pd.DataFrame, reference: str | None) -> Table | None:
    """The clinical-utility table of ``clinical`` (the rows of ``clinical.csv``), or None when it
    holds no subject with a lesion."""
    frame = clinical[np.isfinite(clinical["lesions"]) & (clinical["lesions"] > 0)]
    if frame.empty:
        return None
    columns: list[Column] = []
    long_parts, grids = [], {}
    for key, header, select in _groups(frame):
        part = frame[select]
        per_seed = part.groupby(["direction", "model", "seed", "subject"], sort=False)[[c for c, *_ in CLINICAL_COLUMNS]].mean()
        for score, label, better, decimals in CLINICAL_COLUMNS:
            col = f"{key}_{score}"
            columns.append(Column(col, label, group=header, better=better, decimals=decimals, show_ci=True, signed=False))
            values = per_seed[score].reset_index()
            subj = values.groupby(["direction", "model", "subject"], sort=False)[score].mean().reset_index()
            long_parts.append(subj.rename(columns={score: "score"}).assign(column=col))
            for (direction, model), block in values.groupby(["direction", "model"], sort=False):
                grids[(direction, model, col)] = block.pivot_table(index="seed", columns="subject", values=score, aggfunc="mean")
    long = pd.concat(long_parts, ignore_index=True)
    long = long[np.isfinite(long["score"])]
    rows = rows_for(frame, reference)
    table = Table("clinical_utility", "Clinical utility: lesions kept, lost and invented", columns, rows, {}, reference,
                  table_note(reference, "mean over test subjects with lesions [95% interval: subjects and seeds]"))
    fill_cells(table, long)
    for (direction, model, col), grid in grids.items():
        cell = table.cells.get((direction, model, col))
        if cell is None:
            continue
        iv = interval(grid.to_numpy(dtype=np.float64))
        cell.low, cell.high = iv.low, iv.high
    table.mark_best()
    return table


def detector_note(clinical: pd.DataFrame) -> str:
    """One line on the detector's own reading of the real images: lesions per subject and the
    fraction it finds (the ceiling of ``lesions kept``'s denominator), per direction."""
    clean = clinical[(clinical["perturbation"] == CLEAN) & (clinical["lesions"] > 0)]
    if clean.empty:
        return ""
    parts = []
    for direction, block in clean.groupby("direction", sort=False):
        per_subject = block.groupby("subject")[["lesions", "detector_sensitivity", "lesion_contrast_real"]].first()
        parts.append(f"{direction}: {per_subject['lesions'].mean():.1f} lesion(s) per slice stack, the detector finds "
                     f"{per_subject['detector_sensitivity'].mean():.0%} of them on the real images (real lesion contrast "
                     f"{per_subject['lesion_contrast_real'].mean():+.2f} against normal white matter)")
    return "Detector on the real images: " + "; ".join(parts) + "."
