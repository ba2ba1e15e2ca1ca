"""THE scoring loop: perturb a batch, translate it, score it under one protocol.

Every number robustmri reports comes from :func:`score_cell`: the bench's cells, the drift check's
reference weights and ``robustmri eval`` (the clean cell, severity 0).

Seeding (so that a cell is a pure function of the model, the data and :class:`EvalSettings`, at
any batch size and on any device): every random draw comes from a :class:`robustmri.rng.KeyedStream`
with one stream per slice, keyed by ``(settings.seed, what, subject, slice)`` and never by the
slice's position in a batch.

- corruptions: ``what`` = the perturbation (not the severity, not the model), so every model sees
  the same corrupted inputs (common random numbers, paired comparisons) and the severities of one
  perturbation share their draws;
- attacks: the same key (random starts, restarts, Square's squares, EOT noise); the attack itself
  depends on the model by nature;
- a stochastic model's own noise: ``what`` = ``"model"``, the same in every cell, so the output
  stability compares a perturbed and a clean output made with the same noise.

The batch size is therefore not part of a cell's definition (nor of its provenance): ``results.csv``
is the same for every batch size (tests/test_batch_invariance.py states the float tolerance).

Model space and protocol space: models take and return intensities in [0, 1]; the protocol maps
predictions, targets and sources into its own I/O range before scoring
(:meth:`robustmri.protocol.Protocol.score_unit`), so a peer preset that scores [-1, 1] images
sees [-1, 1] images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from robustmri.bench.plan import Cell
from robustmri.data.paired import PairedTensors
from robustmri.models.base import TranslationModel
from robustmri.protocol import Protocol, get_protocol
from robustmri.protocol.rule import to_host
from robustmri.rng import KeyedStream
from robustmri.threads import rebalance


@dataclass(frozen=True)
class EvalSettings:
    """How cells are scored: protocol, seed and batch size, and the attacks' objective and budget.
    ``batch_size``: slices per batch, or ``"auto"`` (:mod:`robustmri.bench.batching`); the scores
    do not depend on it."""

    protocol: Protocol
    seed: int = 0
    batch_size: int | str = 32
    attack_loss: str = "mse"
    eot_samples: int = 4
    attack_budget: dict[str, dict[str, int]] = field(default_factory=dict)
    attack_objective: str = "target"

    @classmethod
    def from_suite(cls, suite: Any) -> EvalSettings:
        return cls(
            protocol=get_protocol(suite.protocol), seed=suite.eval_seed, batch_size=suite.eval_batch_size,
            attack_loss=suite.attack_loss, eot_samples=suite.eot_samples, attack_budget=dict(suite.attack_budget),
            attack_objective=suite.attack_objective,
        )


@dataclass
class CellScores:
    """Per-slice scores of one cell (columns subject, slice, one per metric, protocol) and,
    when asked, the perturbed inputs and predictions (N, C, H, W) / (N, 1, H, W) in [0, 1] on CPU."""

    frame: pd.DataFrame
    sample: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: Tensor | None = None
    predictions: Tensor | None = None


def batches(n: int, size: int) -> Iterator[tuple[int, slice]]:
    """(batch index, rows) over ``n`` items in batches of ``size``."""
    for b, start in enumerate(range(0, n, size)):
        yield b, slice(start, min(start + size, n))


def model_fn(model: TranslationModel, target: Tensor | None) -> Callable[..., Tensor]:
    """``x -> model(x)`` as attacks see it (with the target for a model that declares it needs it);
    a stochastic model's function also takes ``generator=`` (``AttackContext.seeded``)."""
    tgt = target if model.needs_target else None
    if model.stochastic:
        return lambda x, generator=None: model.translate(x, generator=generator, target=tgt)
    return lambda x: model.translate(x, target=tgt)


RowIds = list[tuple[str, int]]
"""(subject, slice) of each row of a batch: the key of its random streams."""


def row_streams(settings: EvalSettings, what: str, rows: RowIds) -> KeyedStream:
    """One random stream per row, keyed by ``(settings.seed, what, subject, slice)``."""
    return KeyedStream.for_rows(settings.seed, what, rows)


def perturb_batch(
    model: TranslationModel, x: Tensor, y: Tensor, mask: Tensor, cell: Cell, settings: EvalSettings, rows: RowIds,
    spacing: Tensor | None = None,
) -> Tensor:
    """The inputs of ``cell`` for the slices ``rows`` (their (subject, slice) ids): ``x`` itself for
    the clean cell.

    Corruptions act on the whole field of view (``mask`` only sets the brain signal an SNR refers
    to; ``spacing`` (B,) mm converts lengths to pixels). Attacks may change every pixel and
    maximise the reported error: the MSE (or L1) to the target ``y`` inside the brain ``mask``
    (``settings.attack_objective == "target"``), or the distance to the clean output
    (``"stability"``). A stochastic model is attacked with EOT over ``settings.eot_samples`` noise
    draws and scored on a fresh draw from the same distribution (:func:`predict_batch`)."""
    from robustmri.perturb import PERTURBATIONS, attack, get_perturbation

    if cell.is_clean:
        return x
    streams = row_streams(settings, cell.perturbation, rows)
    if PERTURBATIONS[cell.perturbation].needs_model:
        to_target = settings.attack_objective == "target"
        with torch.enable_grad():
            return attack(
                model_fn(model, y), x, cell.perturbation, cell.severity, loss=settings.attack_loss,  # type: ignore[arg-type]
                eot_samples=settings.eot_samples if model.stochastic else 1, generator=streams,
                target=y if to_target else None, loss_mask=mask if to_target else None,
                budget=settings.attack_budget.get(cell.perturbation), seeded=model.stochastic,
            ).detach()
    return get_perturbation(cell.perturbation)(x, cell.severity, mask=mask, generator=streams, spacing_mm=spacing)


@torch.no_grad()
def predict_batch(model: TranslationModel, x: Tensor, y: Tensor, settings: EvalSettings, rows: RowIds) -> Tensor:
    """The model's output (B, 1, H, W) in [0, 1], float32, for the slices ``rows``."""
    target = y if model.needs_target else None
    return model.translate(x, generator=row_streams(settings, "model", rows), target=target).float()


STABILITY_PSNR_CAP = 100.0
"""Largest stability PSNR reported (dB): outputs equal to float precision."""


def output_stability(
    model: TranslationModel, x: Tensor, y: Tensor, mask: Tensor, x_in: Tensor, pred: Tensor, cell: Cell,
    settings: EvalSettings, rows: RowIds, batch_index: int, clean_cache: dict[int, Tensor] | None = None,
) -> dict[str, Tensor]:
    """How far the perturbation moved the output: the protocol's PSNR and SSIM of ``pred`` against
    the model's clean output for the same batch (same noise draw for a stochastic model), as
    ``stability_psnr`` / ``stability_ssim``, (B,) float64 tensors on the scoring device (read back
    with the batch's other scores). NaN for the clean cell, where the clean output
    is the reference itself. PSNR is capped at :data:`STABILITY_PSNR_CAP` dB: a perturbation that
    leaves the input as it is (a 2 mm voxel on a 3.3 mm grid) leaves the output unchanged, and an
    infinite value would swamp every mean it enters. ``clean_cache`` (batch index -> clean output,
    kept on the scoring device: no host round trip) lets the cells of one model share the clean outputs instead of recomputing them."""
    from robustmri.results import STABILITY_METRICS

    n = pred.shape[0]
    missing = torch.full((n,), float("nan"), dtype=torch.float64, device=pred.device)
    if cell.is_clean:
        return {name: missing for name in STABILITY_METRICS}
    if clean_cache is not None and batch_index in clean_cache:
        clean = clean_cache[batch_index].to(pred.device)
    else:
        clean = predict_batch(model, x, y, settings, rows)
        if clean_cache is not None:
            clean_cache[batch_index] = clean.detach()
    scores = settings.protocol.score_unit(pred, clean, mask=mask, source=x_in[:, :1])
    out = {}
    for name in STABILITY_METRICS:
        base = name.removeprefix("stability_")
        out[name] = scores[base].detach().to(torch.float64) if base in scores else missing
    out["stability_psnr"] = out["stability_psnr"].clamp(max=STABILITY_PSNR_CAP)
    return out


def score_cell(
    model: TranslationModel,
    data: PairedTensors,
    cell: Cell,
    settings: EvalSettings,
    device: torch.device | str = "cpu",
    sample_index: int | None = None,
    keep: bool = False,
    clean_cache: dict[int, Tensor] | None = None,
) -> CellScores:
    """Score ``model`` on ``data`` under ``cell``, batch by batch.

    ``sample_index``: a row whose input and output are returned in ``sample`` (the report's
    qualitative grid); ``keep``: also return every perturbed input and prediction; ``clean_cache``:
    one dict per (model, data, settings), shared by that model's cells (see :func:`output_stability`).
    """
    from robustmri.bench.batching import eval_batch_size

    device = torch.device(device)
    protocol = settings.protocol
    frames, sample = [], {}
    inputs, preds = [], []
    assert data.slice is not None
    for b, rows in batches(len(data), eval_batch_size(settings.batch_size, model, data.source, device)):
        rebalance()  # this process's share of the CPUs, if another robustmri process started or ended
        labels, slices = data.subject_labels(rows), data.slice[rows].tolist()  # ids are held on the CPU
        ids = list(zip(labels, slices, strict=True))
        x = data.source[rows].to(device, torch.float32)
        y = data.target[rows].to(device, torch.float32)
        m = data.mask[rows].to(device, torch.bool)
        sp = None if data.spacing is None else data.spacing[rows]
        x_in = perturb_batch(model, x, y, m, cell, settings, ids, sp)
        pred = predict_batch(model, x_in, y, settings, ids)
        scores = protocol.score_unit(pred, y, mask=m, source=x_in[:, :1])
        if cell.is_clean and clean_cache is not None:
            clean_cache[b] = pred.detach()
        stability = output_stability(model, x, y, m, x_in, pred, cell, settings, ids, b, clean_cache)
        host = to_host({**{n: scores[n] for n in protocol.metrics}, **stability})  # the batch's one read back
        frame = protocol.results_frame(host, labels, slices)
        for name in stability:
            frame[name] = host[name]
        frames.append(frame)
        if sample_index is not None and rows.start <= sample_index < rows.stop:
            k = sample_index - rows.start
            sample = {"input": x_in[k, 0].float().cpu().numpy(), "output": pred[k, 0].cpu().numpy()}
        if keep:
            inputs.append(x_in.float().cpu())
            preds.append(pred.cpu())
    frame = pd.concat(frames, ignore_index=True)
    frame["subject"] = frame["subject"].astype(str)
    return CellScores(frame, sample, torch.cat(inputs) if keep else None, torch.cat(preds) if keep else None)
