"""Prepare a NIfTI dataset for training: volumes -> normalised square slices in a cache + a split.

:func:`prepare_dataset` runs, per subject: load (``readers``), brain mask (mask / seg file or
``brainmask`` threshold rule), per-volume normalisation (``normalize``), slicing axis, slice
selection, square fitting and resize (``slices``); results go to a memory-mapped cache entry
(``cache``) and the subject split to ``<out>/split.json`` (``split``). ``<out>/prepared.json``
points at the entry last prepared; :class:`robustmri.data.dataset.PairedSlices` reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from robustmri.atomic import atomic_dir, clean_stale_partials, write_json_if_changed
from robustmri.data import brainmask, readers
from robustmri.data.cache import (
    CACHE_VERSION,
    EntryWriter,
    cache_key,
    entry_path,
    find_entry,
    open_entry,
    write_meta,
)
from robustmri.data.normalize import PERCENTILES, check_method, normalize_volume
from robustmri.data.slices import (
    FITS,
    SliceSpec,
    fit_square,
    parse_axis,
    parse_slices,
    select_slices,
    to_stack,
)
from robustmri.data.split import SPLITS, load_split, make_split, parse_split, save_split
from robustmri.errors import ConfigError, DataError

POINTER_NAME = "prepared.json"
SPLIT_NAME = "split.json"


@dataclass
class PrepareResult:
    """What :func:`prepare_dataset` produced: the cache entry, the split manifest and whether the
    entry was reused (``cache_hit``)."""

    out: Path
    entry: Path
    split_path: Path
    manifest: dict[str, Any]
    meta: dict[str, Any]
    cache_hit: bool

    def slices_per_split(self) -> dict[str, int]:
        """Number of prepared slices in each split (and ``unused``)."""
        per = self.meta["slices_per_subject"]
        return {name: int(sum(per[s] for s in self.manifest.get(name, []))) for name in (*SPLITS, "unused")}

    def summary(self) -> str:
        """Multi-line human summary: subjects, slices per split, slice shape, intensity ranges."""
        m = self.meta
        counts = self.slices_per_split()
        subj = {name: len(self.manifest.get(name, [])) for name in (*SPLITS, "unused")}
        h, w = m["shape"]
        lines = [
            f"{'reused' if self.cache_hit else 'built'} {self.entry}",
            f"layout {m['layout']}; {len(m['subjects'])} subjects; contrasts {', '.join(m['contrasts'])}",
            "subjects: " + ", ".join(f"{k} {v}" for k, v in subj.items() if k != "unused" or v),
            "slices:   " + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "unused" or v)
            + f" (total {m['n_slices']})",
            f"slice shape 1x{h}x{w}; normalisation {m['options']['norm']}; selection {m['options']['slices']}",
            "intensity: "
            + "; ".join(f"{c} [{lo:.4g}, {hi:.4g}]" for c, (lo, hi) in sorted(m["intensity"].items())),
            f"split manifest {self.split_path} (seed {self.manifest.get('seed')})",
        ]
        if m.get("resampled"):
            lines.append(f"resampled onto the {m['reference']} grid: {len(m['resampled'])} subject(s)")
        for subject, contrasts in sorted((m.get("registered") or {}).items()):
            for contrast, r in sorted(contrasts.items()):
                lines.append(registration_line(subject, contrast, m["reference"], r))
        return "\n".join(lines)


def registration_line(subject: str, contrast: str, reference: str, saved: dict[str, Any]) -> str:
    """One line per registered contrast of a subject, from its saved registration (``to_json``):
    the transform, the metric before and after, and the head masks' Dice."""
    t = ", ".join(f"{v:+.1f}" for v in saved["translation_mm"])
    dice = (f"; head Dice {saved['head_dice_start']:.3f} -> {saved['head_dice']:.3f}" if "head_dice" in saved else "")
    return (f"registered {subject} {contrast} -> {reference}: {saved['kind']}, {saved['rotation_deg']:.2f} deg, ({t}) mm; "
            f"MI {saved['metric_before']:.3f} -> {saved['metric_after']:.3f}{dice}")


def _options(
    layout: str,
    contrasts: Sequence[str],
    reference: str,
    size: int,
    slices: str,
    norm: str,
    resample: bool,
    axis: int,
    fit: str,
    reorient: bool,
    with_seg: bool,
    register: str | None = None,
) -> dict[str, Any]:
    extra = {"register": register} if register else {}  # absent when off: older caches keep their keys
    return {
        **extra,
        "layout": layout,
        "contrasts": list(contrasts),
        "reference": reference,
        "size": int(size),
        "slices": slices,
        "norm": norm,
        "resample": bool(resample),
        "axis": int(axis),
        "fit": fit,
        "reorient": bool(reorient),
        "seg": bool(with_seg),
        "threshold_fraction": brainmask.THRESHOLD_FRACTION,
        "percentiles": list(PERCENTILES),
        "cache_version": CACHE_VERSION,
    }


def prepare_dataset(
    root: str | Path,
    out: str | Path,
    *,
    layout: str = "auto",
    contrasts: Sequence[str] | None = None,
    size: int = 128,
    slices: str = "brain:0.1",
    norm: str = "percentile",
    split: str | Sequence[float] | None = None,
    seed: int = 0,
    split_file: str | Path | None = None,
    resample: bool = False,
    reference: str | None = None,
    axis: str | int = "axial",
    fit: str = "pad",
    reorient: bool = True,
    progress: bool = False,
    register: str | None = None,
) -> PrepareResult:
    """Prepare ``root`` into the cache folder ``out`` and return a :class:`PrepareResult`.

    Reuses an existing entry when inputs (path, size, mtime) and options are unchanged. The split
    is recomputed from ``split`` / ``seed`` (or read from ``split_file``) and written to
    ``out/split.json``. Raises :class:`DataError` / :class:`ConfigError` for bad input.

    ``register`` (``"rigid"`` or ``"affine"``): each subject's other contrasts are registered to
    the reference contrast (mutual information, SimpleITK); the transforms and a QC montage per
    subject and contrast are saved under ``<entry>/registration/<subject>/``.
    """
    # 1. validate options before touching the data
    spec = parse_slices(slices)
    check_method(norm)
    axis_i = parse_axis(axis)
    if fit not in FITS:
        raise ConfigError(f"unknown fit {fit!r}: use pad or crop")
    if register is not None and register not in ("rigid", "affine"):
        raise ConfigError(f"--register {register!r}: use rigid or affine")
    if int(size) < 4:
        raise ConfigError(f"invalid size {size}: use at least 4 pixels, e.g. --size 128")
    from robustmri.memory import check_fits

    # a lower bound: one slice of every contrast, the mask and the resampling buffer, float32
    n_images = len(contrasts) if contrasts else 4
    check_fits((n_images + 2) * 4.0 * int(size) * int(size), f"preparing {size}x{size} slices",
               "use a smaller --size (64, 128 or 256 are the usual ones)")
    split_req = parse_split(split) if isinstance(split, str) or split is None else tuple(split)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: pass a folder for the prepared cache")

    # 2. discover subjects (lists folders only)
    records = readers.discover_subjects(root, layout=layout, contrasts=contrasts)
    names = sorted(records[0].images)
    ref_name = readers.reference_contrast(names, reference)
    with_seg = all(r.seg is not None for r in records)
    options = _options(
        records[0].layout, names, ref_name, size, str(spec), norm, resample, axis_i, fit, reorient, with_seg, register
    )
    files = [f for r in records for f in r.files()]
    key = cache_key(files, options)

    # 3. split (cheap, independent of the cache key)
    ids = [r.subject_id for r in records]
    if split_file is not None:
        manifest = load_split(split_file, ids)
    else:
        manifest = make_split(ids, split_req, seed)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(out)  # cache builds and pointer writes of a killed process

    # 4. cache lookup or build
    entry = find_entry(out, key)
    hit = entry is not None
    if entry is None:
        entry = entry_path(out, key)
        try:
            with atomic_dir(entry, overwrite=True) as tmp:
                meta = _build(records, tmp, options, spec, progress)
                meta["key"] = key
                meta["inputs"] = [str(Path(f).resolve()) for f in files]
                write_meta(tmp, meta)
        except BaseException:
            if created:  # a refused input leaves nothing behind, not even the folder
                shutil.rmtree(out, ignore_errors=True)
            raise
    split_path = save_split(manifest, out / SPLIT_NAME)
    write_json_if_changed(out / POINTER_NAME, {"entry": entry.name, "split": SPLIT_NAME, "key": key})
    meta = open_entry(entry).meta
    return PrepareResult(out, entry, split_path, manifest, meta, hit)


def pixel_spacing(affine: np.ndarray, shape: tuple[int, ...], axis: int, size: int, fit: str) -> np.ndarray:
    """In-plane pixel spacing (rows, cols) in mm, float32 (2,), of the ``size`` x ``size`` slices
    cut along voxel ``axis`` from a volume of ``shape`` on the grid ``affine`` (voxel -> mm): the
    voxel sizes of the two in-plane axes times the square side (``fit``: pad = longer side, crop =
    shorter) over ``size``."""
    zooms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    plane = [a for a in range(3) if a != axis]
    h, w = shape[plane[0]], shape[plane[1]]
    side = max(h, w) if fit == "pad" else min(h, w)
    return (zooms[plane] * side / float(size)).astype(np.float32)


def slice_positions(affine: np.ndarray, axis: int, keep: np.ndarray) -> np.ndarray:
    """Through-plane positions in mm, float32 (len(keep),), of the slices ``keep`` (indices along
    voxel ``axis``) of a volume on the grid ``affine``: index times the voxel size along ``axis``
    (relative to the volume's first slice; only differences are used, by whole-volume scores)."""
    step = float(np.sqrt((np.asarray(affine, dtype=np.float64)[:3, axis] ** 2).sum()))
    return (np.asarray(keep, dtype=np.float64) * step).astype(np.float32)


def _build(
    records: Sequence[readers.SubjectRecord],
    tmp: Path,
    options: dict[str, Any],
    spec: SliceSpec,
    progress: bool,
) -> dict[str, Any]:
    from robustmri.progress import progress_bar

    names: list[str] = options["contrasts"]
    norm, size, axis, fit = options["norm"], options["size"], options["axis"], options["fit"]
    writer = EntryWriter(tmp)
    per_subject: dict[str, int] = {}
    resampled: dict[str, list[str]] = {}
    registered: dict[str, dict[str, Any]] = {}
    bar = progress_bar(records, desc="prepare", unit="subject", enabled=progress)
    for index, rec in enumerate(bar):
        bar.set_postfix_str(rec.subject_id, refresh=False)
        sub = readers.load_subject(
            rec, resample=options["resample"], reference=options["reference"], reorient=options["reorient"],
            register=options.get("register"), seed=index,
        )
        if sub.registrations:
            from robustmri.data.register import save_registration

            for contrast, reg in sorted(sub.registrations.items()):
                save_registration(tmp / "registration" / rec.subject_id, contrast, reg,
                                  sub.images[options["reference"]], axis=axis)
            registered[rec.subject_id] = {c: r.to_json() for c, r in sorted(sub.registrations.items())}
        if sub.resampled:
            resampled[rec.subject_id] = sub.resampled
        mask = sub.mask
        if mask is None:
            mask = brainmask.threshold_mask(
                (sub.images[c] for c in names), source=f"subject {rec.subject_id}"
            )
        mask_stack = to_stack(mask, axis)
        keep = select_slices(mask_stack, spec)
        if keep.size == 0:
            raise DataError(
                f"subject {rec.subject_id} ({rec.images[names[0]].parent}) has no slice with at least "
                f"{spec.value:.0%} brain voxels: lower the threshold (e.g. --slices brain:0.05) or use "
                "--slices central:N"
            )
        arrays: dict[str, np.ndarray] = {}
        for c in names:
            vol = normalize_volume(sub.images[c], mask, norm, source=rec.images[c])
            arrays[f"image_{c}"] = fit_square(to_stack(vol, axis)[keep], size, fit)
        arrays["mask"] = fit_square(mask_stack[keep], size, fit, label=True)
        if options["seg"] and sub.seg is not None:
            arrays["seg"] = fit_square(to_stack(sub.seg, axis)[keep], size, fit, label=True)
        arrays["subject"] = np.full(keep.size, index, dtype=np.int32)
        arrays["slice"] = keep.astype(np.int32)
        arrays["spacing"] = np.tile(pixel_spacing(sub.affine, mask.shape, axis, size, fit), (keep.size, 1))
        arrays["slice_mm"] = slice_positions(sub.affine, axis, keep)
        writer.add(arrays)
        per_subject[rec.subject_id] = int(keep.size)
    bar.close()
    divisors: dict[str, float] = {}
    if norm == "mean":
        # dataset-level constant: the largest value among all prepared slices of the contrast
        divisors = {f"image_{c}": writer.maxima[f"image_{c}"] for c in names}
    ranges = writer.finalize(divisors)
    return {
        "format": "robustmri-slices",
        "subjects": [r.subject_id for r in records],
        "layout": options["layout"],
        "contrasts": names,
        "reference": options["reference"],
        "options": options,
        "arrays": sorted(writer.names or []),
        "n_slices": writer.rows,
        "shape": [size, size],
        "slices_per_subject": per_subject,
        "intensity": {c: list(ranges[f"image_{c}"]) for c in names},
        "mean_scale": {c: divisors[f"image_{c}"] for c in names} if divisors else {},
        "resampled": resampled,
        **({"registered": registered} if registered else {}),
    }


def read_pointer(out: str | Path) -> tuple[Path, Path]:
    """``(entry folder, split manifest path)`` recorded in ``out/prepared.json``."""
    import json

    out = Path(out)
    try:
        pointer = json.loads((out / POINTER_NAME).read_text(encoding="utf-8"))
        return out / pointer["entry"], out / pointer["split"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(
            f"{out} holds no prepared dataset ({POINTER_NAME} missing or unreadable): run "
            f"`robustmri data prepare ROOT --out {out}` first"
        ) from None
