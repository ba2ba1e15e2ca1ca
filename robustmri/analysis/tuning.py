"""Choosing options on validation subjects: trials grouped by method, one declared criterion.

A tuning suite (``eval.split = "val"``) trains one model per trial and labels each
``<method>@<trial>`` (``kd_attack:full@eps0.06``, ``kd_attack:g_pgd@eps0.015``). Models without an
``@`` are methods with one configuration (a floor, an untuned baseline): shown for scale.

The criterion, fixed before any trial is scored, weighs clean quality and robustness equally:

    criterion = mean(clean PSNR, mean PSNR under the corruptions, mean PSNR under the attacks)

per validation subject (each subject's slices and seeds averaged first), then averaged over
subjects. Corruptions are every non-adversarial cell at severity >= 1; attacks every adversarial
cell except the ``random_linf`` control. A part a suite does not score is left out of the mean.
Within each method the trial with the highest criterion is chosen; a tie goes to the trial listed
first in the suite (its declared default comes first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustmri.analysis.robustness import CLEAN
from robustmri.analysis.sanity import CONTROL

__all__ = ["TRIAL_SEPARATOR", "choose", "method_of", "selection_scores"]

TRIAL_SEPARATOR = "@"
"""Separates a method from its trial in a model label: ``<method>@<trial>``."""

PARTS = ("clean", "corruptions", "attacks")
"""The criterion's parts, averaged with equal weight."""


def method_of(label: str) -> tuple[str, str]:
    """``(method, trial)`` of a model label; ``trial`` is ``""`` for a label without ``@``."""
    method, sep, trial = str(label).rpartition(TRIAL_SEPARATOR)
    return (method, trial) if sep and method else (str(label), "")


def selection_scores(subjects: pd.DataFrame, metric: str = "psnr", order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (direction, model): the criterion's parts and the criterion, mean over subjects.

    ``subjects``: the subject frame of :func:`robustmri.analysis.stats.subject_means` (one row per
    direction, model, perturbation, severity and subject; ``metric`` in dB for PSNR). Returns
    columns ``direction, model, method, trial, clean, corruptions, attacks, criterion,
    n_subjects``; a part with no cell is NaN and left out of the criterion. Rows follow ``order``
    (the suite's model order, which breaks ties in :func:`choose`), else the frame's.
    """
    rows = []
    pert = subjects["perturbation"]
    adversarial = subjects["family"] == "adversarial"
    parts = {
        "clean": subjects[pert == CLEAN],
        "corruptions": subjects[(pert != CLEAN) & (subjects["severity"] > 0) & ~adversarial],
        "attacks": subjects[(pert != CLEAN) & (subjects["severity"] > 0) & adversarial & (pert != CONTROL)],
    }
    per_subject = {
        name: frame.groupby(["direction", "model", "subject"], sort=False)[metric].mean()
        for name, frame in parts.items()
    }
    table = pd.DataFrame(per_subject)
    table["criterion"] = table[list(PARTS)].mean(axis=1, skipna=True)
    means = table.groupby(level=["direction", "model"], sort=False).mean()
    counts = table.groupby(level=["direction", "model"], sort=False)["clean"].count()
    order = list(order) if order is not None else list(dict.fromkeys(subjects["model"]))
    for (direction, model), rec in means.iterrows():
        method, trial = method_of(model)
        rows.append({"direction": direction, "model": model, "method": method, "trial": trial,
                     **{p: float(rec[p]) for p in PARTS}, "criterion": float(rec["criterion"]),
                     "n_subjects": int(counts.loc[(direction, model)])})
    out = pd.DataFrame(rows, columns=["direction", "model", "method", "trial", *PARTS, "criterion", "n_subjects"])
    out["_order"] = out["model"].map({m: i for i, m in enumerate(order)}).fillna(len(order))
    return out.sort_values(["direction", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)


def choose(scores: pd.DataFrame) -> pd.DataFrame:
    """The chosen trial per (direction, method) of tuned methods (two or more trials): the
    highest criterion, ties to the trial listed first. Columns of ``scores`` plus ``runner_up``
    (the next trial's criterion, NaN with one trial) and ``margin`` (criterion minus runner-up, dB)."""
    rows = []
    for (_, _), group in scores.groupby(["direction", "method"], sort=False):
        if len(group) < 2:
            continue
        values = group["criterion"].to_numpy(dtype=float)
        best = int(np.nanargmax(values)) if np.isfinite(values).any() else 0
        rest = np.delete(values, best)
        runner_up = float(np.nanmax(rest)) if np.isfinite(rest).any() else float("nan")
        rec = group.iloc[best].to_dict()
        rec["runner_up"] = runner_up
        rec["margin"] = float(values[best] - runner_up)
        rows.append(rec)
    return pd.DataFrame(rows, columns=[*scores.columns, "runner_up", "margin"])
