"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# The tests size torch's pool alone: the node-local CPU sharing of robustmri.threads would let
# another robustmri process on the machine change the tests' thread counts (tests/test_threads.py
# turns it on where it is under test). Subprocesses the tests start inherit this.
os.environ["ROBUSTMRI_CPU_SHARE"] = "0"


@pytest.fixture
def two_threads() -> Iterator[None]:
    """At most 2 intra-op threads during a test (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared-data cache shared by the tests of one module (each module gets its own)."""
    return tmp_path_factory.mktemp("cache")
