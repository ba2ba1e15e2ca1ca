"""Which torch device a run uses: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from robustmri.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from robustmri.train.distributed import DistInfo


def resolve_device(name: str, dist: DistInfo | None = None) -> torch.device:
    """``auto`` -> CUDA (this process's local rank) when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but no CUDA device is available: use --device cpu")
        if name == "cuda" and dist is not None and dist.enabled:
            name = f"cuda:{dist.local_rank}"
        deterministic_cuda()
    elif name != "cpu":
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(name)


#: set to 1 to let CUDA pick its fastest (nondeterministic) algorithms: seeded runs then differ
NONDETERMINISTIC_ENV = "ROBUSTMRI_CUDA_NONDETERMINISTIC"


def deterministic_cuda() -> bool:
    """Make seeded CUDA work repeat: cuDNN's deterministic algorithms without autotuning, cuBLAS's
    fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS starts, so this runs before any
    CUDA work) and torch's deterministic implementations where they exist. Ops without one (e.g.
    ``grid_sample``'s backward, which the registration teacher uses) warn once and stay
    nondeterministic. Measured on an H200: without this, two runs of one seed of KD+attack differ
    by up to 0.78 in a parameter after 60 steps and bitwise equal with it (README, GPU section).

    Returns whether it was applied (not when ``ROBUSTMRI_CUDA_NONDETERMINISTIC=1``)."""
    if os.environ.get(NONDETERMINISTIC_ENV, "") == "1":
        return False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return True
