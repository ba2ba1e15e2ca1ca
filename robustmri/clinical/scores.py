"""One row of clinical scores per test subject of a cell (see :mod:`robustmri.clinical.lesions`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from robustmri.clinical.lesions import subject_lesion_scores
from robustmri.errors import DataError

__all__ = ["CLINICAL_SCORES", "clinical_frame"]

CLINICAL_SCORES: tuple[str, ...] = (
    "lesion_psnr", "lesion_mae", "lesion_ssim", "lesion_contrast_real", "contrast_kept", "lesions",
    "detector_sensitivity", "lesions_kept", "lesions_invented",
)
"""The columns of a clinical row, after ``subject`` (units in :func:`subject_lesion_scores`)."""


def clinical_frame(predictions: torch.Tensor, test: object) -> pd.DataFrame:
    """Clinical scores of ``predictions`` ((N, 1, H, W) in [0, 1], the test slices in order) against
    ``test`` (:class:`robustmri.data.paired.PairedTensors` with tissue ``labels``): one row per
    subject, columns ``subject`` and :data:`CLINICAL_SCORES`."""
    labels = getattr(test, "labels", None)
    if labels is None:
        raise DataError("clinical scores need the test subjects' tissue labels (a seg file per subject): prepare data "
                        "that has them (the embedded data does), or turn clinical scoring off")
    if predictions.shape[0] != len(test) or predictions.shape[-2:] != test.target.shape[-2:]:
        raise DataError(f"{tuple(predictions.shape)} predictions for {len(test)} test slices of {tuple(test.target.shape[-2:])}")
    pred = predictions[:, 0].detach().to("cpu", torch.float64).numpy()
    target = test.target[:, 0].to(torch.float64).numpy()
    lab = labels[:, 0].numpy()
    subjects = test.subject.numpy()
    order = test.slice.numpy()
    spacing = test.spacing.numpy() if test.spacing is not None else np.ones(len(test))
    names = test.subject_names
    rows = []
    for s in dict.fromkeys(subjects.tolist()):
        idx = np.flatnonzero(subjects == s)
        idx = idx[np.argsort(order[idx], kind="stable")]
        scores = subject_lesion_scores(pred[idx], target[idx], lab[idx], float(np.mean(spacing[idx])))
        rows.append({"subject": names[s] if names is not None else str(s), **{k: scores[k] for k in CLINICAL_SCORES}})
    return pd.DataFrame(rows, columns=["subject", *CLINICAL_SCORES])
