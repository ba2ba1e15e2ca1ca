"""The embedded default dataset on disk and in memory, made by :mod:`robustmri.data.simulator`.

- :func:`write_dataset`: subjects as NIfTI folders (``<contrast>.nii.gz``, ``seg.nii.gz``,
  ``params.json``), written atomically and byte-identically for one configuration, with a
  ``dataset.json`` that names the simulator's format version and configuration;
- :func:`embedded_slices`: the axial slices of a few subjects as arrays (percentile-scaled in the
  brain), cached per configuration in this process, for tests and benchmarks that need data in
  seconds.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from robustmri.atomic import atomic_dir, clean_stale_partials, write_bytes_atomic, write_json_atomic
from robustmri.data.simulator import FORMAT_VERSION, Subject, SynthConfig, subject_id, synth_subject
from robustmri.errors import ConfigError


def nifti_bytes(volume: np.ndarray, affine: np.ndarray) -> bytes:
    """Gzipped NIfTI-1 bytes of ``volume`` with ``affine``; byte-identical for identical input.

    The gzip header carries no file name and mtime 0, so the same data always gives the same bytes.
    """
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(volume), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)


def write_subject(subject: Subject, folder: str | os.PathLike[str]) -> Path:
    """Write ``subject`` as ``folder/<contrast>.nii.gz``, ``seg.nii.gz`` and ``params.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for c, vol in subject.images.items():
        write_bytes_atomic(folder / f"{c}.nii.gz", nifti_bytes(vol.astype(np.float32), subject.affine))
    write_bytes_atomic(folder / "seg.nii.gz", nifti_bytes(subject.seg.astype(np.uint8), subject.affine))
    write_json_atomic(folder / "params.json", subject.params)
    return folder


def write_dataset(
    out_dir: str | os.PathLike[str],
    n_subjects: int,
    config: SynthConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> Path:
    """Simulate ``n_subjects`` subjects and write them to ``out_dir`` in robustmri's generic layout.

    Layout: ``out_dir/sub-000/{t1,t2,pd,flair,seg}.nii.gz`` + ``sub-000/params.json`` and
    ``out_dir/dataset.json`` (the configuration). The folder is built under a temporary name and
    renamed at the end, so an interrupted run leaves nothing half-written. An existing ``out_dir``
    is an error unless ``overwrite`` is set. Same config -> byte-identical files.
    """
    config = config or SynthConfig()
    if not isinstance(n_subjects, int) or n_subjects < 1:
        raise ConfigError(f"number of subjects must be a positive integer, got {n_subjects!r}: use e.g. --subjects 20")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists: choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder: choose another --out")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {parent} ({exc.strerror}): choose a writable --out") from exc
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"output folder {parent} is not writable: choose a writable --out")
    clean_stale_partials(parent, out.name)  # what a killed synth of this --out left behind
    indices: Iterable[int] = range(n_subjects)
    if progress is not None:
        indices = progress(indices)
    try:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            for i in indices:
                write_subject(synth_subject(i, config), tmp / subject_id(i))
            write_json_atomic(
                tmp / "dataset.json",
                {
                    "generator": "robustmri.data.embedded",
                    "format_version": FORMAT_VERSION,
                    "n_subjects": n_subjects,
                    "subjects": [subject_id(i) for i in range(n_subjects)],
                    "config": config.to_json(),
                },
            )
    except PermissionError as exc:
        raise ConfigError(f"cannot write to {out} ({exc.strerror}): choose a writable --out") from exc
    return out


# ------------------------------------------------------------------------------ in-memory slices


def _percentile_scale(volume: np.ndarray, mask: np.ndarray, upper: float = 99.5) -> np.ndarray:
    hi = float(np.percentile(volume[mask], upper)) if mask.any() else float(volume.max())
    return np.clip(volume / max(hi, 1e-8), 0.0, 1.0).astype(np.float32)


def embedded_slices(
    n_subjects: int = 4,
    size: int = 64,
    n_slices: int = 8,
    seed: int = 0,
    contrasts: tuple[str, ...] = ("t1", "t2"),
    **config_overrides: Any,
) -> dict[str, Any]:
    """Axial slices of ``n_subjects`` simulated subjects as torch tensors, ready for a model.

    Each volume is divided by its 99.5th percentile inside the brain and clipped to [0, 1].
    Returns ``{contrast: FloatTensor (N, 1, size, size), "mask": BoolTensor (N, 1, size, size),
    "subject": LongTensor (N,), "slice": LongTensor (N,), "spacing": DoubleTensor (N,) in-plane
    pixel spacing in mm, "slice_mm": DoubleTensor (N,) through-plane position in mm}`` with N = n_subjects * n_slices, subjects
    in order. Extra keyword arguments override :class:`SynthConfig` fields. Results are cached per
    process; the returned tensors are fresh copies.
    """
    import torch

    key = json.dumps(
        {"n": n_subjects, "size": size, "slices": n_slices, "seed": seed, "contrasts": list(contrasts), **config_overrides},
        sort_keys=True,
        default=str,
    )
    arrays = _embedded_arrays(key)
    return {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}


_ARRAY_CACHE: dict[str, dict[str, np.ndarray]] = {}


def _embedded_arrays(key: str) -> dict[str, np.ndarray]:
    if key in _ARRAY_CACHE:
        return _ARRAY_CACHE[key]
    spec = json.loads(key)
    overrides = {k: v for k, v in spec.items() if k not in ("n", "size", "slices", "seed", "contrasts")}
    for name in ("slab_mm", "tissue_jitter", "site_profiles", "snr_range", "kspace_fraction"):
        if name in overrides:
            overrides[name] = tuple(overrides[name])
    config = SynthConfig(size=spec["size"], n_slices=spec["slices"], seed=spec["seed"], contrasts=tuple(spec["contrasts"]), **overrides)
    per: dict[str, list[np.ndarray]] = {c: [] for c in config.contrasts}
    masks, subjects, slices = [], [], []
    for i in range(spec["n"]):
        subj = synth_subject(i, config)
        mask = subj.mask
        for c in config.contrasts:
            vol = _percentile_scale(subj.images[c], mask)
            per[c].append(np.moveaxis(vol, 2, 0)[:, None])
        masks.append(np.moveaxis(mask, 2, 0)[:, None])
        subjects.append(np.full(config.n_slices, i, dtype=np.int64))
        slices.append(np.arange(config.n_slices, dtype=np.int64))
    out = {c: np.ascontiguousarray(np.concatenate(v)) for c, v in per.items()}
    out["mask"] = np.ascontiguousarray(np.concatenate(masks))
    out["subject"] = np.concatenate(subjects)
    out["slice"] = np.concatenate(slices)
    out["spacing"] = np.full(out["slice"].shape[0], config.voxel_mm[0], dtype=np.float64)
    out["slice_mm"] = out["slice"].astype(np.float64) * config.voxel_mm[2]
    _ARRAY_CACHE[key] = out
    return out
