"""The step context: backward, gradient averaging across processes, clipping, optimiser and LR steps."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from robustmri.models.base import OptimizerSpec


def build_optimizer(spec: OptimizerSpec) -> torch.optim.Optimizer:
    """Adam over ``spec.params`` (with decoupled weight decay when ``spec.weight_decay`` > 0); the
    fused implementation (one kernel for every parameter) when they all live on a GPU, torch's
    default on the CPU."""
    fused = bool(spec.params) and all(p.is_cuda for p in spec.params)
    extra = {"fused": True} if fused else {}
    if spec.weight_decay > 0:
        return torch.optim.AdamW(spec.params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay, **extra)
    return torch.optim.Adam(spec.params, lr=spec.lr, betas=spec.betas, **extra)


def build_scheduler(spec: OptimizerSpec, optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """``constant``: factor 1; ``linear_decay``: 1 for the first half, then linear to 0 at ``total_steps``."""
    if spec.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if spec.schedule == "linear_decay":
        half = max(total_steps // 2, 1)

        def factor(step: int) -> float:
            return 1.0 if step < half else max(0.0, 1.0 - (step - half) / max(total_steps - half, 1))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown schedule {spec.schedule!r}")


@dataclass
class EngineStepContext:
    """Implements :class:`robustmri.models.base.StepContext` for the training engine.

    ``optimize(name, loss)`` zeroes optimiser ``name``'s gradients, back-propagates ``loss``,
    averages the gradients over all processes when ``world_size > 1`` (what DDP does), clips them to
    ``grad_clip`` (L2 norm; 0 = off), steps the optimiser and its scheduler.
    """

    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    device: torch.device
    amp_dtype: torch.dtype | None = None
    grad_clip: float = 0.0
    world_size: int = 1
    step: int = 0
    #: optimiser name -> gradient norm before clipping, a device tensor (read it only to log it)
    grad_norms: dict[str, Tensor] = field(default_factory=dict)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def optimize(self, name: str, loss: Tensor) -> None:
        if name not in self.optimizers:
            raise KeyError(f"model asked for optimiser {name!r}; it declared {sorted(self.optimizers)}")
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if self.world_size > 1 and params:
            _all_reduce_mean([p.grad for p in params], self.world_size)
        if self.grad_clip > 0 and params:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.grad_norms[name] = norm.detach()
        opt.step()
        self.schedulers[name].step()


def _all_reduce_mean(grads: list[Tensor], world_size: int) -> None:
    import torch.distributed as dist

    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


@dataclass
class SimpleStepContext(EngineStepContext):
    """A single-process context built straight from a model (for tests and notebooks).

    ``SimpleStepContext.for_model(model, total_steps)`` creates the model's optimisers.
    """

    @classmethod
    def for_model(cls, model: torch.nn.Module, total_steps: int = 1000) -> SimpleStepContext:
        specs = model.optimizers()  # type: ignore[operator]
        opts = {n: build_optimizer(s) for n, s in specs.items()}
        scheds = {n: build_scheduler(specs[n], o, total_steps) for n, o in opts.items()}
        device = next(model.parameters()).device
        return cls(optimizers=opts, schedulers=scheds, device=device)
