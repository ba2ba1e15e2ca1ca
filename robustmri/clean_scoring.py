"""Clean scoring of a trained model under a declared protocol: the bench's scoring loop
(:func:`robustmri.bench.scoring.score_cell`) on the clean cell, so ``robustmri eval`` and
``robustmri bench`` give the same numbers for the same seed and batch size."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from robustmri.bench.scoring import CellScores, EvalSettings, score_cell
from robustmri.bench.plan import CLEAN_CELL
from robustmri.data.paired import PairedTensors
from robustmri.models.base import TranslationModel
from robustmri.protocol import Protocol, get_protocol


def score_clean(
    model: TranslationModel,
    data: PairedTensors,
    protocol: Protocol | str = "robustmri",
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    seed: int = 0,
    keep: bool = False,
) -> CellScores:
    """Clean per-slice scores of ``model`` on ``data`` (and, with ``keep``, every prediction)."""
    settings = EvalSettings(get_protocol(protocol), seed=seed, batch_size=batch_size)
    return score_cell(model.to(device).eval(), data, CLEAN_CELL, settings, device, keep=keep)


def evaluate(
    model: TranslationModel,
    data: PairedTensors,
    protocol: Protocol | str = "robustmri",
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> pd.DataFrame:
    """Clean per-slice metrics of ``model`` on ``data``: columns subject, slice, one per metric, protocol."""
    return score_clean(model, data, protocol, batch_size, device, seed).frame


def save_predictions(path: str | os.PathLike[str], scores: CellScores, data: PairedTensors) -> Path:
    """Write ``pred``, ``target``, ``source`` (channel 0), ``mask`` as (N, H, W) arrays in the
    model's [0, 1] space, and ``subject`` (text) and ``slice`` (N,), to an ``.npz`` file (atomic),
    so anyone can re-score the predictions with their own code."""
    from robustmri.atomic import atomic_path

    assert scores.predictions is not None and data.slice is not None, "score with keep=True first"
    arrays = {
        "pred": scores.predictions[:, 0].numpy().astype(np.float32),
        "target": data.target[:, 0].numpy().astype(np.float32),
        "source": data.source[:, 0].numpy().astype(np.float32),
        "mask": data.mask[:, 0].numpy().astype(bool),
        "subject": np.asarray(data.subject_labels(slice(None)), dtype=str),
        "slice": data.slice.numpy().astype(np.int64),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return path
