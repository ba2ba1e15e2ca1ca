"""How many slices the scoring loop puts in one batch.

Scores do not depend on it (every random draw is keyed per slice, :mod:`robustmri.bench.scoring`),
so the batch is a speed setting only: an integer, or ``"auto"``:

- on the CPU, :data:`CPU_BATCH` slices;
- on a GPU, as many as fit in :data:`MEMORY_SHARE` of the free memory, measured: a probe batch of
  :data:`PROBE_SLICES` slices goes once through the model with a gradient to its input (the most a
  cell needs: a white-box attack's step, EOT and diffusion's checkpointed sampler included), and
  the peak memory per slice sets the batch, rounded down to a multiple of 8, between 1 and
  :data:`MAX_BATCH`.
"""

from __future__ import annotations

import weakref

import torch

from robustmri.models.base import TranslationModel

CPU_BATCH = 32
PROBE_SLICES = 4
MEMORY_SHARE = 0.6
MAX_BATCH = 1024

_sized: weakref.WeakKeyDictionary[TranslationModel, int] = weakref.WeakKeyDictionary()


def eval_batch_size(setting: int | str, model: TranslationModel, source: torch.Tensor, device: torch.device | str) -> int:
    """The slices per batch for ``model`` on ``device``; ``source`` (N, C, H, W): slices of the data
    to score (the probe uses the first :data:`PROBE_SLICES`). See the module docstring."""
    if setting != "auto":
        return int(setting)
    dev = torch.device(device)
    if dev.type != "cuda":
        return CPU_BATCH
    if model in _sized:
        return _sized[model]
    size = _probe(model, source[:PROBE_SLICES].to(dev, torch.float32), dev)
    _sized[model] = size
    return size


def _probe(model: TranslationModel, x: torch.Tensor, dev: torch.device) -> int:
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    target = torch.zeros_like(x[:, :1]) if model.needs_target else None
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model.translate(xg, target=target)
        if out.requires_grad:  # a model without gradients (an external one) is probed forward only
            torch.autograd.grad(out.float().sum(), xg, allow_unused=True)
    del out, xg
    torch.cuda.synchronize(dev)
    per_slice = max((torch.cuda.max_memory_allocated(dev) - base) / x.shape[0], 1.0)
    fit = int(MEMORY_SHARE * free / per_slice)
    return max(1, min(MAX_BATCH, fit // 8 * 8 if fit >= 8 else fit))
