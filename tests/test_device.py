"""Device resolution: seeded CUDA runs are made deterministic (the flags are set before any CUDA work)."""

from __future__ import annotations

import pytest
import torch

from robustmri.device import NONDETERMINISTIC_ENV, resolve_device
from robustmri.errors import ConfigError


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA reported available; the global switches recorded instead of set."""
    calls: list[tuple[bool, bool]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, warn_only=False: calls.append((mode, warn_only)))
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv(NONDETERMINISTIC_ENV, raising=False)
    return calls


def test_cuda_device_switches_on_deterministic_algorithms(fake_cuda):
    import os

    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert fake_cuda == [(True, True)]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_cpu_leaves_the_switches_alone_and_the_opt_out_is_honoured(fake_cuda, monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv(NONDETERMINISTIC_ENV, "1")
    resolve_device("cuda")
    assert fake_cuda == [] and not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark


def test_unknown_device_is_a_one_line_error():
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")
