"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


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
