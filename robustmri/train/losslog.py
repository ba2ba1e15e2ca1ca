"""Training losses kept on the device and read back only when they are logged.

A model's :meth:`~robustmri.models.base.TranslationModel.training_step` returns its losses as
detached scalar tensors (floats are accepted too). Reading a GPU tensor's value (``float(t)``,
``t.item()``) makes the host wait for the device; doing it every step keeps the GPU idle between
steps. :class:`LossLog` holds the latest step's values and a device-side flag that records whether
any step since the last read produced a non-finite value, and reads both with one transfer
(:meth:`LossLog.read`) at log and checkpoint steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

LossValue = Tensor | float
"""A logged loss: a detached scalar tensor (preferred: no host sync) or a Python float."""


class LossLog:
    """The latest losses of a training run (on ``device``) and whether any was non-finite."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.names: list[str] = []
        self._values: Tensor | None = None
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self._first_bad: dict[str, float] | None = None
        self.steps_since_read = 0

    def add(self, losses: dict[str, LossValue]) -> None:
        """Record one step's losses (no host sync)."""
        self.names = list(losses)
        if not losses:
            self._values = None
            self.steps_since_read += 1
            return
        vals = torch.stack([
            v.detach().to(self.device, torch.float32).reshape(()) if isinstance(v, Tensor)
            else torch.tensor(float(v), dtype=torch.float32, device=self.device)
            for v in losses.values()
        ])
        self._values = vals
        self._nonfinite = self._nonfinite | ~torch.isfinite(vals).all()
        self.steps_since_read += 1

    def read(self) -> tuple[dict[str, float], bool]:
        """``(latest losses as floats, whether any step since the last read had a non-finite
        loss)``: one device-to-host transfer. Resets the flag."""
        parts = [self._nonfinite.float().reshape(1)]
        if self._values is not None:
            parts.append(self._values)
        host = torch.cat(parts).tolist()
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.steps_since_read = 0
        return dict(zip(self.names, host[1:], strict=True)), bool(host[0])
