"""Shared fixtures."""

from __future__ import annotations

import os
import sys
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


READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")
_ROOT = str(Path(__file__).resolve().parents[1])


class ReadCounter:
    """Counts host reads of tensors (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``, ``.cpu()``,
    ``.numpy()``) called from this repository's code, not from torch's nor the tests'; ``where``
    names each read's site (``"cpu at rule.py:420"``)."""

    def __init__(self) -> None:
        self.count = 0
        self.where: list[str] = []


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReadCounter]:
    counter = ReadCounter()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, __original=original, __name=name, **kwargs):  # type: ignore[no-untyped-def]
            frame = sys._getframe(1)
            path = frame.f_code.co_filename
            if path.startswith(_ROOT) and "/tests/" not in path and "/.venv/" not in path:
                counter.count += 1
                counter.where.append(f"{__name} at {Path(path).name}:{frame.f_lineno}")
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    yield counter
