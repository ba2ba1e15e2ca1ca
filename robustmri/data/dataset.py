"""Torch access to prepared slices: (source, target, mask, subject index) for one split and pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from robustmri.data.cache import CacheEntry, open_entry
from robustmri.data.contrasts import canonical_contrast
from robustmri.data.prepare import read_pointer
from robustmri.data.split import SPLITS, load_split
from robustmri.errors import ConfigError


class PairedSlices(Dataset):
    """Slices of one split for a (source, target) contrast pair, read from a prepared cache.

    ``prepared``: the ``--out`` folder of ``robustmri data prepare`` (its ``prepared.json`` names
    the entry and split), or an entry folder ``slices-*`` (then ``split_file`` defaults to the
    ``split.json`` beside it). Item ``i`` is ``(source, target, mask, subject)``: source and
    target float32 tensors (1, H, W), mask bool (1, H, W), subject an int index into
    :attr:`subjects` (the entry's full sorted subject list, stable across splits).
    """

    def __init__(
        self,
        prepared: str | Path,
        split: str = "train",
        source: str = "t1",
        target: str = "t2",
        split_file: str | Path | None = None,
    ) -> None:
        prepared = Path(prepared)
        if (prepared / "meta.json").is_file():
            entry_dir, default_split = prepared, prepared.parent / "split.json"
        else:
            entry_dir, default_split = read_pointer(prepared)
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        self.entry: CacheEntry = open_entry(entry_dir)
        self.subjects: list[str] = self.entry.subjects
        manifest = load_split(split_file or default_split, self.subjects)
        self.source, self.target = canonical_contrast(source), canonical_contrast(target)
        self._src = self.entry.image(self.source)
        self._tgt = self.entry.image(self.target)
        self._mask = self.entry.arrays["mask"]
        subject_of_row = self.entry.arrays["subject"]
        wanted = np.array([self.subjects.index(s) for s in manifest[split]], dtype=np.int32)
        self.rows: np.ndarray = np.flatnonzero(np.isin(subject_of_row, wanted))
        self.subject_index: np.ndarray = np.asarray(subject_of_row[self.rows], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        r = int(self.rows[i])
        src = torch.from_numpy(np.array(self._src[r], dtype=np.float32))[None]
        tgt = torch.from_numpy(np.array(self._tgt[r], dtype=np.float32))[None]
        mask = torch.from_numpy(np.array(self._mask[r], dtype=bool))[None]
        return src, tgt, mask, int(self.subject_index[i])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole split at once: source, target (B, 1, H, W) float32, mask (B, 1, H, W) bool,
        subject (B,) int64."""
        rows = self.rows
        src = torch.from_numpy(np.array(self._src[rows], dtype=np.float32))[:, None]
        tgt = torch.from_numpy(np.array(self._tgt[rows], dtype=np.float32))[:, None]
        mask = torch.from_numpy(np.array(self._mask[rows], dtype=bool))[:, None]
        return src, tgt, mask, torch.from_numpy(self.subject_index.copy())
