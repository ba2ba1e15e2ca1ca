"""How a training step is laid out on the hardware: compiled networks, channels-last memory,
training slices resident on the device.

None of these changes what is computed, only how: a run with them gives the same losses to float
precision (tests/test_training_step.py measures the spread on the CPU), and they are not part of a
run's identity (:data:`robustmri.train.engine.RESUMABLE_KEYS`).

- ``compile``: :meth:`torch.nn.Module.compile` (TorchInductor) on every network of the model, in
  place, so the state dict keeps its keys and checkpoints stay interchangeable with eager runs.
- ``channels_last``: ``"auto"`` turns it on for CUDA (cuDNN's NHWC convolutions with bf16), off on
  the CPU; ``"on"`` / ``"off"`` force it.
- residency: on a GPU the training slices are copied there once when they take at most
  :data:`RESIDENT_SHARE` of the free memory; each batch is then one indexed read on the device.
"""

from __future__ import annotations

import torch
from torch import nn

from robustmri.data.paired import PairedTensors
from robustmri.errors import ConfigError
from robustmri.models.base import TranslationModel

RESIDENT_SHARE = 0.25
"""Largest share of the device's free memory the training slices may take to be held there."""

CHANNELS_LAST = ("auto", "on", "off")


def use_channels_last(setting: str, device: torch.device) -> bool:
    """Whether a run with ``channels_last = setting`` on ``device`` uses channels-last memory."""
    if setting not in CHANNELS_LAST:
        raise ConfigError(f"--channels-last must be one of {', '.join(CHANNELS_LAST)}, got {setting!r}")
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def networks(model: nn.Module) -> list[nn.Module]:
    """The networks of ``model``: its sub-modules that are not themselves translation models
    (a wrapped generator's own networks are found inside it), in registration order."""
    out: list[nn.Module] = []
    for child in model.children():
        if isinstance(child, TranslationModel):
            out.extend(networks(child))
        elif any(True for _ in child.parameters()):
            out.append(child)
    return out


def compile_networks(model: TranslationModel) -> int:
    """Compile every network of ``model`` in place (:meth:`torch.nn.Module.compile`); returns how many."""
    nets = networks(model)
    for net in nets:
        net.compile()
    return len(nets)


def resident_data(data: PairedTensors, device: torch.device) -> PairedTensors:
    """``data`` held on ``device`` when it is a GPU with room for it (see :data:`RESIDENT_SHARE`);
    else ``data`` itself (batches are then copied per step)."""
    if device.type != "cuda":
        return data
    free, _ = torch.cuda.mem_get_info(device)
    if data.nbytes() > RESIDENT_SHARE * free:
        return data
    return data.resident(device)
