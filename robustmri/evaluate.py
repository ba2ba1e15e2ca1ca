"""Batched inference and clean scoring of a trained model under a declared protocol."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import Tensor

from robustmri.models.base import TranslationModel
from robustmri.protocol import Protocol, get_protocol
from robustmri.train.data import PairedTensors


@torch.no_grad()
def predict(
    model: TranslationModel,
    source: Tensor,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    seed: int = 0,
    target: Tensor | None = None,
) -> Tensor:
    """Run ``model`` in eval mode over ``source`` (N, C, H, W) in batches; returns (N, 1, H, W) on CPU.

    Stochastic models get one ``torch.Generator`` seeded with ``seed`` for the whole pass, so the
    same seed gives the same outputs. ``target`` is passed only to models that declare
    ``needs_target`` (the KD teacher oracle, a diagnostic upper bound).
    """
    model = model.to(device).eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    outs = []
    needs_target = bool(getattr(model, "needs_target", False))
    for start in range(0, source.shape[0], batch_size):
        x = source[start : start + batch_size].to(device)
        kwargs: dict[str, Any] = {"generator": gen}
        if needs_target:
            assert target is not None, "this model needs the target at test time"
            kwargs["target"] = target[start : start + batch_size].to(device)
        outs.append(model.translate(x, **kwargs).float().cpu())
    return torch.cat(outs)


def score_slices(protocol: Protocol | str, pred: Tensor, data: PairedTensors, batch_size: int = 64) -> pd.DataFrame:
    """Per-slice metrics of ``pred`` (N, 1, H, W) against ``data.target`` under ``protocol``."""
    protocol = get_protocol(protocol)
    frames = []
    for start in range(0, pred.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        scores = protocol.score(pred[sl], data.target[sl], mask=data.mask[sl], source=data.source[sl, :1])
        assert data.slice is not None
        frames.append(protocol.results_frame(scores, data.subject[sl], data.slice[sl]))
    return pd.concat(frames, ignore_index=True)


def evaluate(
    model: TranslationModel,
    data: PairedTensors,
    protocol: Protocol | str = "robustmri",
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> pd.DataFrame:
    """Clean per-slice metrics of ``model`` on ``data`` (columns subject, slice, metrics, protocol)."""
    pred = predict(model, data.source, batch_size, device, seed, target=data.target)
    return score_slices(protocol, pred, data)
