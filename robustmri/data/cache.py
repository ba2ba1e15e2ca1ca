"""On-disk cache of prepared slices: memory-mapped ``.npy`` arrays, keyed by inputs and options.

An entry is a folder ``<out>/slices-<key16>/`` where ``key`` is the SHA-256 of (cache format
version, every input file's resolved path, size and mtime in ns, every preparation option). Same
inputs and options -> same folder -> reused without reading a volume; touching or replacing an
input file, or changing an option, gives a new key and a new entry. The subject split is NOT part
of the key (splits select subjects from an entry), so changing ``--seed`` never rebuilds slices.

An entry holds:

- ``image_<contrast>.npy``: float32 (N, H, W), one row per prepared slice, all subjects;
- ``mask.npy``: bool (N, H, W) brain mask; ``seg.npy``: uint8 (N, H, W) labels, only when every
  subject has a seg file;
- ``subject.npy``: int32 (N,) index into ``meta["subjects"]``; ``slice.npy``: int32 (N,) slice
  index along the slicing axis of the original volume;
- ``meta.json``: subjects, contrasts, options, inputs, per-subject slice counts, intensity ranges.

Entries are built in a temporary sibling folder and renamed into place at the end
(:func:`robustmri.atomic.atomic_dir`), so an interrupted or failed build never leaves a partial
entry under the final name. Old entries are never deleted automatically; removing any
``slices-*`` folder is safe.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustmri.errors import DataError

CACHE_VERSION = 1
"""Bump when the entry format or the preparation algorithm changes (old entries are then ignored)."""

ENTRY_PREFIX = "slices-"
META_NAME = "meta.json"


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """``{"path", "size", "mtime_ns"}`` of a file (resolved absolute path); no content is read."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise DataError(f"cannot stat input file {p} ({exc.strerror}): check that it exists") from None
    return {"path": str(p), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


@functools.cache
def data_code_fingerprint() -> str:
    """SHA-256 (16 hex) of the source of :mod:`robustmri.data`: the code that simulates, reads,
    normalises and slices data. Part of every cache key, so a cached dataset is never reused by
    code that would compute it differently (the drift check's evaluation layer relies on this)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(files: Iterable[str | Path], options: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the cache format version, the data code (:func:`data_code_fingerprint`),
    the files' fingerprints and ``options``."""
    payload = {
        "version": CACHE_VERSION,
        "code": data_code_fingerprint(),
        "files": [file_fingerprint(f) for f in files],
        "options": dict(options),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def entry_path(out: str | Path, key: str) -> Path:
    """Folder of the entry with ``key`` under the cache folder ``out``."""
    return Path(out) / f"{ENTRY_PREFIX}{key[:16]}"


def find_entry(out: str | Path, key: str) -> Path | None:
    """The complete entry for ``key`` or ``None`` (an entry is complete when its meta matches)."""
    path = entry_path(out, key)
    try:
        meta = json.loads((path / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return path if meta.get("key") == key else None


def partial_entries(out: str | Path) -> list[Path]:
    """Temporary build folders under ``out`` (left only by a process killed mid-build)."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.name.startswith(f".{ENTRY_PREFIX}") and p.is_dir())


class EntryWriter:
    """Accumulates per-subject slice arrays in ``tmp`` then concatenates them into ``.npy`` files.

    Use inside :func:`robustmri.atomic.atomic_dir`: ``add`` once per subject (arrays of shape
    (n, H, W) keyed by array name), then ``finalize`` with optional per-array divisors.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = Path(tmp)
        self.chunks = self.tmp / "chunks"
        self.chunks.mkdir()
        self.count = 0
        self.rows = 0
        self.names: list[str] | None = None
        self.maxima: dict[str, float] = {}

    def add(self, arrays: Mapping[str, np.ndarray]) -> None:
        names = sorted(arrays)
        if self.names is None:
            self.names = names
        elif names != self.names:
            raise ValueError(f"array names changed: {names} != {self.names}")
        n = {int(a.shape[0]) for a in arrays.values()}
        if len(n) != 1:
            raise ValueError("all arrays of one subject need the same number of slices")
        for name, arr in arrays.items():
            np.save(self.chunks / f"{self.count:06d}_{name}.npy", np.ascontiguousarray(arr))
            if arr.dtype.kind == "f" and arr.size:
                self.maxima[name] = max(self.maxima.get(name, -np.inf), float(arr.max()))
        self.count += 1
        self.rows += n.pop()

    def finalize(self, divisors: Mapping[str, float] | None = None) -> dict[str, tuple[float, float]]:
        """Write ``<name>.npy`` for every array name; returns ``{name: (min, max)}`` of float arrays."""
        divisors = dict(divisors or {})
        ranges: dict[str, tuple[float, float]] = {}
        for name in self.names or []:
            first = np.load(self.chunks / f"000000_{name}.npy", mmap_mode="r")
            shape = (self.rows, *first.shape[1:])
            dest = np.lib.format.open_memmap(self.tmp / f"{name}.npy", mode="w+", dtype=first.dtype, shape=shape)
            del first
            row, lo, hi = 0, np.inf, -np.inf
            for i in range(self.count):
                chunk_path = self.chunks / f"{i:06d}_{name}.npy"
                chunk = np.load(chunk_path)
                if name in divisors:
                    chunk = (chunk / np.float32(divisors[name])).astype(dest.dtype)
                dest[row : row + chunk.shape[0]] = chunk
                if chunk.dtype.kind == "f" and chunk.size:
                    lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
                row += chunk.shape[0]
                chunk_path.unlink()
            dest.flush()
            del dest
            if np.isfinite(lo):
                ranges[name] = (lo, hi)
        shutil.rmtree(self.chunks)
        return ranges


def write_meta(folder: Path, meta: Mapping[str, Any]) -> None:
    """Write ``meta.json`` into ``folder`` (fsync'ed; the folder itself is renamed atomically)."""
    with open(folder / META_NAME, "w", encoding="utf-8") as fh:
        json.dump(dict(meta), fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


@dataclass
class CacheEntry:
    """A prepared entry opened read-only: ``arrays`` are ``np.load(..., mmap_mode="r")`` views."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def subjects(self) -> list[str]:
        return list(self.meta["subjects"])

    @property
    def contrasts(self) -> list[str]:
        return list(self.meta["contrasts"])

    def image(self, contrast: str) -> np.ndarray:
        """Float32 (N, H, W) memory-mapped slices of ``contrast``."""
        key = f"image_{contrast}"
        if key not in self.arrays:
            raise DataError(
                f"contrast {contrast!r} was not prepared in {self.path} (has {', '.join(self.contrasts)}): "
                "prepare it with --contrasts"
            )
        return self.arrays[key]


def open_entry(path: str | Path) -> CacheEntry:
    """Open a complete entry folder; raises :class:`DataError` if it is missing or incomplete."""
    path = Path(path)
    try:
        meta = json.loads((path / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError(
            f"{path} is not a prepared slice cache (no readable {META_NAME}): run `robustmri data prepare`"
        ) from None
    arrays = {}
    for name in meta.get("arrays", []):
        try:
            arrays[name] = np.load(path / f"{name}.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(
                f"cache array {path / (name + '.npy')} is unreadable ({exc}): delete {path} and prepare again"
            ) from None
    return CacheEntry(path=path, meta=meta, arrays=arrays)
