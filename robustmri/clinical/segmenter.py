"""A downstream tissue segmenter: what a pipeline run on the synthesized contrast would get.

BraSyn (BraTS 2023-24 missing-modality synthesis) scores a synthesized volume by the Dice of a
segmenter run on it. robustmri does the same for brain tissue: a small segmenter is trained
**once per suite and target contrast** on the *real* target-contrast slices of the training
subjects and their tissue labels, then frozen. It is run on the real and on every synthesized test
image; the Dice of each against the true labels says how much tissue boundary the synthesis kept.
Its Dice on the real test images is its own ceiling: a model that returns the real target scores
exactly that.

- Network: MONAI's 2-D ``UNet`` (``channels`` 16-32-64-128, strides 2, one residual unit per
  level), 4 outputs: background, CSF, grey matter, white matter. MONAI is used rather than a
  hand-written U-Net because it is the reference implementation the field's segmentation code
  uses, maintained and tested.
- Training: cross-entropy, Adam (lr 2e-3), :attr:`SegmenterConfig.steps` steps of
  :attr:`SegmenterConfig.batch_size` slices drawn with a seeded generator; no augmentation, so
  that the instrument is the same for every model. Lesion voxels (labels 4-6) are ignored in the
  loss and in every Dice: the training subjects of a clinical suite have none, and a tissue
  segmenter has no class for them.
- Dice (:func:`subject_dice`): per class, pooled over a subject's test slices,
  ``2 |A n B| / (|A| + |B|)``; NaN when the class is in neither; ``dice_mean`` is the mean over
  CSF, grey and white matter.

Shapes: images (N, 1, H, W) float in [0, 1]; labels (N, 1, H, W) integer tissue labels
(:data:`robustmri.data.tissues.SEG_LABELS`); class maps (N, H, W) int64 in 0..3.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from robustmri.data.tissues import LESION_LABELS, SEG_LABELS
from robustmri.errors import DataError, DependencyError

__all__ = [
    "SEGMENTER_VERSION", "SEG_CLASSES", "FrozenSegmenter", "SegmenterConfig", "build_segmenter", "class_targets",
    "load_or_train_segmenter", "segment", "subject_dice", "train_segmenter",
]

SEG_CLASSES: tuple[str, ...] = ("csf", "gm", "wm")
"""The tissue classes scored, in output-channel order after background (0)."""

SEGMENTER_VERSION = 1
"""Raise when the segmenter's network, training or Dice rule change (its saved copies are then retrained)."""

_IGNORE = -100  # torch's cross-entropy ignore_index: lesion voxels


@dataclasses.dataclass(frozen=True)
class SegmenterConfig:
    """How the segmenter is built and trained (all part of its identity)."""

    steps: int = 400
    batch_size: int = 8
    lr: float = 2e-3
    channels: tuple[int, ...] = (16, 32, 64, 128)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "channels": list(self.channels), "version": SEGMENTER_VERSION}


def build_segmenter(config: SegmenterConfig) -> nn.Module:
    """MONAI's 2-D UNet with 1 input channel and ``1 + len(SEG_CLASSES)`` output logits."""
    try:
        from monai.networks.nets import UNet
    except ImportError:
        raise DependencyError("the clinical segmenter needs MONAI: pip install 'monai>=1.4,<2'") from None
    return UNet(spatial_dims=2, in_channels=1, out_channels=1 + len(SEG_CLASSES), channels=config.channels,
                strides=(2,) * (len(config.channels) - 1), num_res_units=1)


def class_targets(labels: Tensor) -> Tensor:
    """Tissue ``labels`` (N, 1, H, W) -> class indices (N, H, W) int64: background 0, CSF 1, grey
    matter 2, white matter 3; lesion voxels the ignore index (-100)."""
    lab = labels[:, 0].long()
    out = torch.zeros_like(lab)
    for k, name in enumerate(SEG_CLASSES, start=1):
        out[lab == SEG_LABELS[name]] = k
    for value in LESION_LABELS:
        out[lab == value] = _IGNORE
    return out


def train_segmenter(images: Tensor, labels: Tensor, config: SegmenterConfig, device: torch.device | str = "cpu") -> tuple[nn.Module, float]:
    """Train a segmenter on real ``images`` (N, 1, H, W) in [0, 1] with tissue ``labels``
    (N, 1, H, W); returns the frozen model (eval mode, on ``device``) and its last training loss.
    Deterministic for a seed on one device and thread count."""
    if images.shape[0] == 0 or labels is None:
        raise DataError("the clinical segmenter needs training slices with tissue labels (a seg file per subject)")
    side = images.shape[-1]
    if side % (2 ** (len(config.channels) - 1)):
        raise DataError(f"the clinical segmenter needs an image side divisible by {2 ** (len(config.channels) - 1)}, got {side}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_segmenter(config).to(device)
    targets = class_targets(labels)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    loss_fn = nn.CrossEntropyLoss(ignore_index=_IGNORE)
    model.train()
    last = torch.zeros((), device=device)
    for _ in range(config.steps):
        idx = torch.randint(0, images.shape[0], (config.batch_size,), generator=gen)
        x = images[idx].to(device, torch.float32)
        y = targets[idx].to(device)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = loss.detach()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, float(last)


@torch.no_grad()
def segment(model: nn.Module, images: Tensor, batch_size: int = 32) -> np.ndarray:
    """Class maps (N, H, W) int64 of ``images`` (N, 1, H, W) in [0, 1], on the model's device."""
    device = next(model.parameters()).device
    parts = [model(images[i:i + batch_size].to(device, torch.float32)).argmax(1).cpu()
             for i in range(0, images.shape[0], batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, *images.shape[-2:]), dtype=np.int64)


def subject_dice(classes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Dice per tissue class of one subject's class maps ``classes`` (S, H, W) against its tissue
    ``labels`` (S, H, W), pooled over its slices, lesion voxels ignored: ``dice_csf``,
    ``dice_gm``, ``dice_wm`` (NaN for a class absent from both) and ``dice_mean`` (their mean,
    NaN-skipping)."""
    truth = class_targets(torch.from_numpy(np.asarray(labels))[:, None]).numpy()
    keep = truth != _IGNORE
    out: dict[str, float] = {}
    for k, name in enumerate(SEG_CLASSES, start=1):
        a = (classes == k) & keep
        b = truth == k
        denom = int(a.sum()) + int(b.sum())
        out[f"dice_{name}"] = 2.0 * int((a & b).sum()) / denom if denom else math.nan
    values = [v for v in out.values() if not math.isnan(v)]
    out["dice_mean"] = float(np.mean(values)) if values else math.nan
    return out


class FrozenSegmenter:
    """A trained segmenter with what it was trained on (``info``), and the class maps of the real
    test images kept once per test set (its ceiling is computed once, not per cell)."""

    def __init__(self, model: nn.Module, info: dict[str, Any]) -> None:
        self.model = model
        self.info = info
        self._real: tuple[Tensor, np.ndarray] | None = None  # (the test targets, their class maps)

    def classes(self, images: Tensor) -> np.ndarray:
        """Class maps (N, H, W) of ``images`` (N, 1, H, W) in [0, 1]."""
        return segment(self.model, images)

    def real_classes(self, test: Any) -> np.ndarray:
        """Class maps of ``test.target`` (the real test images), computed once per test set."""
        if self._real is None or self._real[0] is not test.target:  # the tensor itself, not an id a new one may reuse
            self._real = (test.target, self.classes(test.target))
        return self._real[1]


def load_or_train_segmenter(folder: Any, training_data: Callable[[], tuple[Tensor, Tensor | None]], identity: dict[str, Any],
                            config: SegmenterConfig = SegmenterConfig(), device: torch.device | str = "cpu") -> FrozenSegmenter | None:
    """The segmenter saved in ``folder`` (``segmenter.pt``, ``segmenter.json``) when it was trained
    with ``config`` on the data ``identity`` names; otherwise train it on ``training_data()``
    (images (N, 1, H, W) and tissue labels of the real target-contrast training slices) and save
    it atomically. The caller holds a lock so that one process trains and the others load.
    Weights load with ``weights_only=True``. None when the training labels hold no tissue class
    (BraTS labels the tumour only): there is nothing to segment, and the Dice columns stay NaN."""
    import json
    import time
    from pathlib import Path

    from robustmri.atomic import atomic_path, write_json_atomic

    folder = Path(folder)
    meta_path, weights = folder / "segmenter.json", folder / "segmenter.pt"
    want = json.loads(json.dumps({"config": config.to_dict(), "data": identity}, sort_keys=True, default=str))  # as saved
    if meta_path.is_file() and weights.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if {k: meta.get(k) for k in want} == want:
            model = build_segmenter(config)
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            model.to(device).eval()
            for p in model.parameters():
                p.requires_grad_(False)
            return FrozenSegmenter(model, meta)
    images, labels = training_data()
    if labels is None:
        raise DataError("the clinical segmenter needs the training subjects' tissue labels (a seg file per subject)")
    if not (class_targets(labels) > 0).any():
        return None
    t0 = time.perf_counter()
    model, loss = train_segmenter(images, labels, config, device)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    meta = {**want, "train_slices": int(images.shape[0]), "last_loss": round(loss, 5),
            "train_seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(meta_path, meta)
    return FrozenSegmenter(model, meta)
