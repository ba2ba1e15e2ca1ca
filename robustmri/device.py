"""Which torch device a run uses: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

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
    elif name != "cpu":
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(name)
