"""Shared by the baselines' slow tests: train a model on embedded t1 -> t2 and score a held-out subject."""

from __future__ import annotations

import time

import torch

from robustmri.train.context import SimpleStepContext


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB, data range 1) over all voxels inside ``mask``."""
    mse = ((pred - target) ** 2)[mask].mean()
    return float(10.0 * torch.log10(1.0 / mse))


def train_and_score(model: torch.nn.Module, steps: int, batch_size: int = 4, seed: int = 0) -> tuple[float, float, float]:
    """Train on subjects 0-4 of the embedded t1 -> t2 data (64^2, 16 slices each), score subject 5;
    returns (PSNR of the model, PSNR of copying the source, seconds)."""
    from robustmri.data.embedded import embedded_slices

    d = embedded_slices(n_subjects=6, size=64, n_slices=16, seed=0, contrasts=("t1", "t2"))
    train, test = d["subject"] < 5, d["subject"] == 5
    src, tgt, mask = d["t1"][train], d["t2"][train], d["mask"][train]
    torch.set_num_threads(1)  # no OpenMP spin-waiting on a shared CPU; the fixture restores the count
    torch.manual_seed(seed)
    ctx = SimpleStepContext.for_model(model, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        idx = torch.randint(0, src.shape[0], (batch_size,), generator=g)
        ctx.step = step
        model.training_step({"source": src[idx], "target": tgt[idx], "mask": mask[idx]}, ctx)  # type: ignore[operator]
    model.eval()
    with torch.no_grad():
        pred = model.translate(d["t1"][test], generator=torch.Generator().manual_seed(0))  # type: ignore[operator]
    seconds = time.perf_counter() - start
    return masked_psnr(pred, d["t2"][test], d["mask"][test]), masked_psnr(d["t1"][test], d["t2"][test], d["mask"][test]), seconds
