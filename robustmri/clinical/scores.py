"""One row of clinical scores per test subject of a cell: lesion scores
(:mod:`robustmri.clinical.lesions`) and whole-volume scores (:mod:`robustmri.clinical.volume`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from robustmri.clinical.lesions import subject_lesion_scores
from robustmri.clinical.segmenter import SEG_CLASSES, FrozenSegmenter, subject_dice
from robustmri.clinical.volume import VOLUME_SCORES, subject_volume_scores
from robustmri.errors import DataError

__all__ = ["CLINICAL_SCORES", "DICE_SCORES", "clinical_frame"]

DICE_SCORES: tuple[str, ...] = (*(f"dice_{c}" for c in SEG_CLASSES), "dice_mean", "dice_real")
"""The segmenter's Dice per tissue class on the synthesized image, their mean, and ``dice_real``:
the same mean on the real image (the segmenter's ceiling); NaN without a segmenter."""

CLINICAL_SCORES: tuple[str, ...] = (
    "lesion_psnr", "lesion_mae", "lesion_ssim", "lesion_contrast_real", "contrast_kept", "lesions",
    "detector_sensitivity", "lesions_kept", "lesions_invented", *VOLUME_SCORES, *DICE_SCORES,
)
"""The columns of a clinical row, after ``subject`` (units in :func:`subject_lesion_scores` and
:func:`robustmri.clinical.volume.subject_volume_scores`)."""


def clinical_frame(predictions: torch.Tensor, test: object, segmenter: FrozenSegmenter | None = None) -> pd.DataFrame:
    """Clinical scores of ``predictions`` ((N, 1, H, W) in [0, 1], the test slices in order) against
    ``test`` (:class:`robustmri.data.paired.PairedTensors` with tissue ``labels``): one row per
    subject, columns ``subject`` and :data:`CLINICAL_SCORES`; the Dice columns from
    ``segmenter`` (:mod:`robustmri.clinical.segmenter`), NaN without one."""
    labels = getattr(test, "labels", None)
    if labels is None:
        raise DataError("clinical scores need the test subjects' tissue labels (a seg file per subject): prepare data "
                        "that has them (the embedded data does), or turn clinical scoring off")
    if predictions.shape[0] != len(test) or predictions.shape[-2:] != test.target.shape[-2:]:
        raise DataError(f"{tuple(predictions.shape)} predictions for {len(test)} test slices of {tuple(test.target.shape[-2:])}")
    pred = predictions[:, 0].detach().to("cpu", torch.float64).numpy()
    target = test.target[:, 0].to(torch.float64).numpy()
    lab = labels[:, 0].numpy()
    brain = test.mask[:, 0].numpy().astype(bool)
    positions = test.slice_mm.numpy() if getattr(test, "slice_mm", None) is not None else None
    subjects = test.subject.numpy()
    order = test.slice.numpy()
    spacing = test.spacing.numpy() if test.spacing is not None else np.ones(len(test))
    names = test.subject_names
    if segmenter is not None:
        synth_classes = segmenter.classes(predictions)
        real_classes = segmenter.real_classes(test)
    rows = []
    for s in dict.fromkeys(subjects.tolist()):
        idx = np.flatnonzero(subjects == s)
        idx = idx[np.argsort(order[idx], kind="stable")]
        if positions is not None:  # through-plane order by position (the slice index agrees for one volume)
            idx = idx[np.argsort(positions[idx], kind="stable")]
        pixel_mm = float(np.mean(spacing[idx]))
        scores = subject_lesion_scores(pred[idx], target[idx], lab[idx], pixel_mm)
        scores.update(subject_volume_scores(pred[idx], target[idx], brain[idx], pixel_mm,
                                            None if positions is None else positions[idx]))
        if segmenter is not None:
            scores.update(subject_dice(synth_classes[idx], lab[idx]))
            scores["dice_real"] = subject_dice(real_classes[idx], lab[idx])["dice_mean"]
        else:
            scores.update(dict.fromkeys(DICE_SCORES, float("nan")))
        rows.append({"subject": names[s] if names is not None else str(s), **{k: scores[k] for k in CLINICAL_SCORES}})
    return pd.DataFrame(rows, columns=["subject", *CLINICAL_SCORES])
