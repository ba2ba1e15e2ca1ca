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

__all__ = ["CLINICAL_COLUMNS", "VOLUME_COLUMNS", "clinical_table", "detector_note", "segmentation_table", "volume_table"]

CLINICAL_COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("contrast_kept", "contrast kept", "higher", 2),
    ("lesions_kept", "lesions kept", "higher", 2),
    ("lesions_invented", "invented / subject", "lower", 2),
    ("lesion_psnr", "lesion PSNR (dB)", "higher", 2),
)
"""(score, header, better, decimals) of each column of a group."""

VOLUME_COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("volume_psnr", "volume PSNR (dB)", "higher", 2),
    ("volume_ssim", "3-D SSIM", "higher", 3),
)
"""The whole-volume table's columns (:mod:`robustmri.clinical.volume`)."""


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
    return _group_table(frame, CLINICAL_COLUMNS, reference, "clinical_utility",
                        "Clinical utility: lesions kept, lost and invented",
                        "mean over test subjects with lesions [95% interval: subjects and seeds]")


def volume_table(clinical: pd.DataFrame, reference: str | None) -> Table | None:
    """The whole-volume table of ``clinical``: volume PSNR and 3-D SSIM of every test subject's
    stacked slices (BraSyn's practice), or None when ``clinical.csv`` has none (an older version)."""
    if any(c not in clinical.columns for c, *_ in VOLUME_COLUMNS):
        return None
    frame = clinical[np.isfinite(clinical["volume_psnr"])]
    return _group_table(frame, VOLUME_COLUMNS, reference, "volume_scores",
                        "Whole-volume scores: volume PSNR and 3-D SSIM of each test subject's slice stack",
                        "mean over test subjects, one score per subject's stacked test slices (slice-wise scores: the "
                        "quality tables) [95% interval: subjects and seeds]")


def _group_table(frame: pd.DataFrame, spec: tuple[tuple[str, str, str, int], ...], reference: str | None, name: str,
                 title: str, what: str) -> Table | None:
    """A table of the per-subject scores ``spec`` of ``frame`` (rows of ``clinical.csv``) in the
    clean / corruptions / attacks column groups, with intervals and the usual paired tests."""
    if frame.empty:
        return None
    return _table(frame, [(key, header, select, spec) for key, header, select in _groups(frame)], reference, name, title,
                  what)


def _table(frame: pd.DataFrame, groups: list[tuple[str, str, pd.Series, tuple[tuple[str, str, str, int], ...]]],
           reference: str | None, name: str, title: str, what: str) -> Table:
    """The table of ``groups`` (key, header, row selector, column specs) of ``frame``: a cell is
    the mean over subjects of each subject's mean over seeds, with its 95 % interval."""
    columns: list[Column] = []
    long_parts, grids = [], {}
    for key, header, select, spec in groups:
        part = frame[select]
        per_seed = part.groupby(["direction", "model", "seed", "subject"], sort=False)[[c for c, *_ in spec]].mean()
        for score, label, better, decimals in spec:
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
    table = Table(name, title, columns, rows, {}, reference, table_note(reference, what))
    fill_cells(table, long)
    for (direction, model, col), grid in grids.items():
        cell = table.cells.get((direction, model, col))
        if cell is None:
            continue
        iv = interval(grid.to_numpy(dtype=np.float64))
        cell.low, cell.high = iv.low, iv.high
    table.mark_best()
    return table


def segmentation_table(clinical: pd.DataFrame, reference: str | None) -> Table | None:
    """The downstream-segmentation table: the frozen tissue segmenter's Dice on each model's clean
    output, then per perturbation at its highest severity the Dice lost and, beside it, the volume
    PSNR lost (each a per-subject difference from the same model, seed and subject clean). None
    when ``clinical.csv`` has no Dice (no segmenter ran)."""
    if "dice_mean" not in clinical.columns or not np.isfinite(clinical["dice_mean"]).any():
        return None
    keys = ["direction", "model", "seed", "subject"]
    clean = clinical[clinical["perturbation"] == CLEAN][[*keys, "dice_mean", "volume_psnr"]]
    frame = clinical.merge(clean.rename(columns={"dice_mean": "clean_dice", "volume_psnr": "clean_vpsnr"}), on=keys, how="left")
    frame["dice_lost"] = frame["clean_dice"] - frame["dice_mean"]
    frame["psnr_lost"] = frame["clean_vpsnr"] - frame["volume_psnr"]
    groups = [("clean", "clean", frame["perturbation"] == CLEAN, (("dice_mean", "tissue Dice", "higher", 3),))]
    lost = (("dice_lost", "Dice lost", "lower", 3), ("psnr_lost", "volume PSNR lost (dB)", "lower", 2))
    perturbed = frame[frame["perturbation"] != CLEAN]
    for pert in dict.fromkeys(perturbed["perturbation"]):
        sev = int(perturbed.loc[perturbed["perturbation"] == pert, "severity"].max())
        groups.append((f"{pert}_s{sev}", f"{pert} {sev}", (frame["perturbation"] == pert) & (frame["severity"] == sev), lost))
    n_subjects = int(clean.groupby("direction")["subject"].nunique().max())
    real = clinical[clinical["perturbation"] == CLEAN].groupby("direction")["dice_real"].mean()
    what = ("tissue Dice (CSF, grey and white matter, lesions ignored) of a segmenter trained once on the real training "
            "images and frozen, mean over test subjects; losses against the same model clean [95% interval: subjects "
            "and seeds]. Its Dice on the real test images, its ceiling: "
            + ", ".join(f"{d} {v:.3f}" for d, v in real.items()) + f" ({n_subjects} subjects)")
    return _table(frame, groups, reference, "segmentation", "Downstream segmentation: tissue Dice kept and lost", what)


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
