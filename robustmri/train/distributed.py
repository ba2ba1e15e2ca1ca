"""Process-group setup for ``torchrun``: the engine runs unchanged on 1 process or N (DDP semantics).

Under ``torchrun`` the variables ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` are set; the engine
then joins a process group (NCCL on CUDA, gloo on CPU), gives each process its own shard of every
step's samples, averages gradients across processes before each optimiser step (what
``DistributedDataParallel`` does) and broadcasts buffers (BatchNorm statistics) from rank 0 after
each step so that all replicas stay identical. Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank, local, world)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of ``module`` from rank ``src`` to every process."""
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy floating-point buffers (e.g. BatchNorm running statistics) of ``module`` from ``src``."""
    import torch.distributed as dist

    with torch.no_grad():
        for b in module.buffers():
            dist.broadcast(b.data, src)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown(info: DistInfo, *, failed: bool = False) -> None:
    """Leave the process group.

    After a normal end every process first waits at a barrier: with gloo, a process that tears
    down its connections while a peer still uses them can abort that peer at exit (seen as
    ``terminate called without an active exception`` in about 1 run in 12). After a failure
    (``failed=True``) there is no barrier, since the peers may never reach it: this process leaves
    at once and ``torchrun`` stops the others.
    """
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            if not failed:
                dist.barrier()
            dist.destroy_process_group()


def replicas_identical(module: nn.Module) -> bool:
    """True when every process holds bit-identical parameters and buffers (checked by a checksum)."""
    import torch.distributed as dist

    with torch.no_grad():
        total = torch.zeros((), dtype=torch.float64)
        for i, t in enumerate(list(module.parameters()) + list(module.buffers())):
            total += (t.detach().double().cpu().flatten() * (1.0 + (i % 7))).sum()
    gathered: list[float] = [0.0] * dist.get_world_size()
    dist.all_gather_object(gathered, float(total))
    return all(g == gathered[0] for g in gathered)
