"""Subject-level train / val / test split by seeded shuffle, saved as a JSON manifest.

Splitting is by subject, never by slice, so no subject can leak between splits. The manifest
(``split.json``) is the source of truth for later runs: pass it back with ``--split-file`` (or
:func:`load_split`) to reuse exactly the same subjects.

Split request (``split=``):

- ``None`` (default): 25 / 5 / 10 when there are exactly 40 subjects (the IXI protocol of SynDiff
  and ResViT), otherwise proportional to 25 : 5 : 10: ``n_val = round(n * 5 / 40)``,
  ``n_test = round(n * 10 / 40)`` (halves round up), train gets the rest (so a small dataset may
  have an empty val);
- counts ``(25, 5, 10)``: must sum to at most the number of subjects; subjects beyond the sum are
  listed under ``"unused"`` (e.g. 40 of IXI's ~577 subjects);
- fractions ``(0.7, 0.1, 0.2)`` (any value with a decimal point in the CLI): must sum to 1;
  converted to counts like the default.

The order: subject ids are sorted, then permuted by ``numpy.random.default_rng(seed)``; the first
``n_train`` go to train, the next ``n_val`` to val, the next ``n_test`` to test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustmri.atomic import write_json_if_changed
from robustmri.errors import ConfigError, DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_COUNTS: tuple[int, int, int] = (25, 5, 10)
MANIFEST_VERSION = 1


def parse_split(text: str | None) -> tuple[float, float, float] | None:
    """Parse ``"25,5,10"`` (counts) or ``"0.7,0.1,0.2"`` (fractions); ``None``/``""`` -> default."""
    if text is None or not str(text).strip():
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 3:
            raise ValueError
        values = tuple(float(p) if "." in p else int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"invalid split {text!r}: give three counts (25,5,10) or three fractions (0.7,0.1,0.2)"
        ) from None
    return values  # type: ignore[return-value]


def split_counts(n: int, split: Sequence[float] | None = None) -> tuple[int, int, int]:
    """Number of (train, val, test) subjects for ``n`` subjects (rules in the module docstring)."""
    if split is None:
        if n == sum(DEFAULT_COUNTS):
            return DEFAULT_COUNTS
        fractions: Sequence[float] = [c / sum(DEFAULT_COUNTS) for c in DEFAULT_COUNTS]
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in split):
        counts = tuple(int(v) for v in split)
        if len(counts) != 3 or min(counts) < 0 or sum(counts) > n or counts[0] < 1:
            raise ConfigError(
                f"split counts {','.join(map(str, counts))} need 3 non-negative numbers, train >= 1, "
                f"summing to at most the {n} subjects found: lower them"
            )
        return counts  # type: ignore[return-value]
    else:
        fractions = [float(v) for v in split]
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigError(
                f"split fractions {','.join(f'{v:g}' for v in split)} must be 3 non-negative values "
                "summing to 1, e.g. 0.7,0.1,0.2"
            )
    n_val = int(math.floor(n * fractions[1] + 0.5))  # round half up (not Python's half-to-even)
    n_test = int(math.floor(n * fractions[2] + 0.5))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ConfigError(
            f"{n} subject(s) are too few for a train / val / test split: add subjects or pass explicit "
            "counts, e.g. --split 1,0,0"
        )
    return n_train, n_val, n_test


def make_split(
    subject_ids: Sequence[str],
    split: Sequence[float] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build a split manifest ``{"train": [...], "val": [...], "test": [...], "unused": [...], ...}``.

    Deterministic: the same ids, request and seed always give the same manifest.
    """
    ids = sorted(str(s) for s in subject_ids)
    if len(set(ids)) != len(ids):
        raise DataError("duplicate subject ids in the data folder: give every subject a unique name")
    n_train, n_val, n_test = split_counts(len(ids), split)
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    bounds = np.cumsum([0, n_train, n_val, n_test])
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "seed": int(seed),
        "request": None if split is None else list(split),
        "counts": {"train": n_train, "val": n_val, "test": n_test},
    }
    for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
        manifest[name] = sorted(shuffled[lo:hi])
    manifest["unused"] = sorted(shuffled[bounds[-1] :])
    return manifest


def save_split(manifest: dict[str, Any], path: str | Path) -> Path:
    """Write ``manifest`` to ``path`` (JSON, atomically; left alone when it already holds it) and
    return the path."""
    write_json_if_changed(path, manifest)
    return Path(path)


def load_split(path: str | Path, subject_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Read and validate a manifest; with ``subject_ids``, every listed subject must be among them."""
    import json

    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"split file {path} does not exist: check the path or drop --split-file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read split file {path} ({exc}): fix or delete it") from None
    if not isinstance(manifest, dict) or not all(isinstance(manifest.get(k), list) for k in SPLITS):
        raise DataError(f"split file {path} lacks the train / val / test lists: regenerate it")
    seen: dict[str, str] = {}
    for name in SPLITS:
        for sid in manifest[name]:
            if sid in seen:
                raise DataError(
                    f"split file {path} puts subject {sid} in both {seen[sid]} and {name}: regenerate it"
                )
            seen[sid] = name
    if subject_ids is not None:
        known = set(subject_ids)
        missing = [s for s in seen if s not in known]
        if missing:
            raise DataError(
                f"split file {path} lists subject {missing[0]} that is not in the data folder "
                f"({len(missing)} missing): use the matching data folder or regenerate the split"
            )
    manifest.setdefault("unused", [])
    return manifest
