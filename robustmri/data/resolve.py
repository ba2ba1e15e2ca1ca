"""Turn a ``--data`` argument into prepared train/val/test slices.

``--data`` accepts:

- ``embedded`` or ``embedded:N`` -- the embedded simulator with N subjects (default 10), written once
  as NIfTI into the cache folder (deterministic, so it is reused) and prepared like any dataset;
- a folder holding ``prepared.json`` -- the output of ``robustmri data prepare``;
- a NIfTI dataset root (IXI, BraTS or the generic layout) -- prepared into the cache folder on first
  use (keyed by its files and options, see :mod:`robustmri.data.cache`).

The cache folder defaults to ``$ROBUSTMRI_CACHE`` or ``$XDG_CACHE_HOME/robustmri`` (``~/.cache/robustmri``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustmri.data.contrasts import canonical_contrast
from robustmri.errors import ConfigError, DataError

EMBEDDED_DEFAULT_SUBJECTS = 10
EMBEDDED_DEFAULT_SLICES = 16
#: Slice size (pixels) when none is asked for and the data is not already prepared.
DEFAULT_IMAGE_SIZE = 64
#: Volume normalisation of data prepared on the fly when none is asked for (the default protocol's).
DEFAULT_NORM = "percentile"


def default_cache_dir() -> Path:
    """Where prepared data and the embedded dataset are cached."""
    if os.environ.get("ROBUSTMRI_CACHE"):
        return Path(os.environ["ROBUSTMRI_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "robustmri"


@dataclass(frozen=True)
class DataSpec:
    """A resolved ``--data``: the prepared folder (with ``prepared.json``) and a readable description."""

    prepared: Path
    description: str


def _embedded_root(n_subjects: int, size: int, seed: int, cache: Path, progress: bool, options: dict | None = None) -> Path:
    from robustmri.data.simulator import SynthConfig
    from robustmri.data.embedded import write_dataset

    config = SynthConfig(**{"size": size, "n_slices": EMBEDDED_DEFAULT_SLICES, "seed": seed, **(options or {})})
    from robustmri.data.cache import data_code_fingerprint

    # a change of the simulator's code gives a new folder: cached subjects are never reused by other code
    tag = hashlib.sha256(repr((n_subjects, config.to_json(), data_code_fingerprint())).encode()).hexdigest()[:12]
    root = cache / f"embedded-{tag}"
    if not (root / "dataset.json").is_file():
        progress_fn = None
        if progress:
            from robustmri.progress import progress_bar

            def progress_fn(it):  # type: ignore[no-untyped-def]
                return progress_bar(it, total=n_subjects, desc="synth embedded", unit="subject")

        try:
            write_dataset(root, n_subjects, config, overwrite=root.exists(), progress=progress_fn)
        except FileExistsError:  # another process finished the same (deterministic) dataset first
            if not (root / "dataset.json").is_file():
                raise
    return root


MISREGISTRATION_SPLITS_KEY = "misregistration_splits"
"""Embedded option naming the splits whose subjects are misregistered (``["train"]``: misaligned
training pairs, aligned validation and test targets); the others are simulated aligned."""

LESION_SPLITS_KEY = "lesion_splits"
"""Embedded option naming the splits whose subjects have a lesion (``["test"]``: lesions the models
never saw in training, of the types in ``lesion_types``); the others are simulated without one."""

_SPLIT_OPTIONS = {MISREGISTRATION_SPLITS_KEY: "misregistered_subjects", LESION_SPLITS_KEY: "lesioned_subjects"}


def synth_options(
    options: dict[str, Any] | None, n_subjects: int, split: tuple[float, float, float] | None, seed: int,
) -> dict[str, Any]:
    """:class:`robustmri.data.simulator.SynthConfig` fields for ``options``: ``misregistration_splits``
    and ``lesion_splits`` (lists of ``train`` / ``val`` / ``test``) become ``misregistered_subjects``
    and ``lesioned_subjects``, the indices of the subjects :func:`robustmri.data.split.make_split`
    puts in those splits with the same ``split`` and ``seed`` that preparation uses. Other options
    pass through unchanged."""
    from robustmri.data.split import make_split

    out = dict(options or {})
    asked = {key: out.pop(key) for key in _SPLIT_OPTIONS if key in out}
    if not asked:
        return out
    check_split_options(options or {})
    from robustmri.data.simulator import subject_id

    ids = [subject_id(i) for i in range(n_subjects)]
    manifest = make_split(ids, split, seed)
    for key, splits in asked.items():
        chosen = {sid for name in splits for sid in manifest[name]}
        out[_SPLIT_OPTIONS[key]] = tuple(i for i, sid in enumerate(ids) if sid in chosen)
    return out


def check_split_options(options: dict[str, Any]) -> None:
    """Raise ConfigError unless each of the embedded ``options``' ``misregistration_splits`` and
    ``lesion_splits`` (when given) is a non-empty list of distinct split names, and
    ``misregistration_splits`` comes with ``misregistration_mm`` above 0."""
    from robustmri.data.split import SPLITS

    for key in _SPLIT_OPTIONS:
        if key not in options:
            continue
        splits = options[key]
        if (not isinstance(splits, list) or not splits or len(set(map(str, splits))) != len(splits)
                or not all(isinstance(s, str) and s in SPLITS for s in splits)):
            raise ConfigError(f"{key} must be a list of distinct split names among {', '.join(SPLITS)}, "
                              f"e.g. [\"{'train' if key == MISREGISTRATION_SPLITS_KEY else 'test'}\"]; got {splits!r}")
    if MISREGISTRATION_SPLITS_KEY in options and not float(options.get("misregistration_mm") or 0.0) > 0:
        raise ConfigError(f"{MISREGISTRATION_SPLITS_KEY} needs misregistration_mm > 0: set it, or drop "
                          f"{MISREGISTRATION_SPLITS_KEY}")


def resolve_data(
    data: str,
    size: int | None,
    contrasts: tuple[str, ...],
    cache: str | os.PathLike[str] | None = None,
    seed: int = 0,
    progress: bool = False,
    norm: str | None = None,
    embedded_options: dict | None = None,
    split: tuple[float, float, float] | None = None,
) -> DataSpec:
    """Prepare (or reuse) the slices ``data`` names at ``size`` x ``size`` for ``contrasts``.

    ``size`` None: a prepared folder's own size, else :data:`DEFAULT_IMAGE_SIZE`. A prepared folder
    is never resized: asking for another size or a contrast it lacks is a one-line error.

    ``norm``: the volume normalisation (see :mod:`robustmri.data.normalize`) the caller needs,
    usually its protocol's; data prepared here use it (None: ``percentile``), and a prepared
    folder normalised otherwise is a one-line error naming the fix (None: accept the folder's).

    ``embedded_options`` are :class:`robustmri.data.simulator.SynthConfig` fields for the embedded
    dataset (e.g. ``{"misregistration_mm": 2.0, "lesion_rate": 0.3}``), plus ``misregistration_splits``
    (see :func:`synth_options`). ``split``: subject counts or
    fractions (train, val, test); None is the 25:5:10 default. A prepared folder keeps its own split.
    """
    from robustmri.data.prepare import POINTER_NAME, prepare_dataset

    cache_dir = Path(cache).expanduser() if cache else default_cache_dir()
    contrasts = tuple(canonical_contrast(c) for c in contrasts)
    path = Path(data).expanduser()
    is_embedded = data == "embedded" or data.startswith("embedded:")
    if not is_embedded and (path / POINTER_NAME).is_file():
        return _prepared_folder(path, size, contrasts, split, norm)
    size = DEFAULT_IMAGE_SIZE if size is None else size
    norm = DEFAULT_NORM if norm is None else norm
    if is_embedded:
        n = EMBEDDED_DEFAULT_SUBJECTS
        if ":" in data:
            try:
                n = int(data.split(":", 1)[1])
            except ValueError:
                raise DataError(f"bad --data {data!r}: use embedded or embedded:N with N subjects") from None
        root = _embedded_root(n, size, seed, cache_dir, progress, synth_options(embedded_options, n, split, seed))
        out = cache_dir / f"prepared-{root.name}-{size}{_split_tag(split)}{_norm_tag(norm)}"
        prepare_dataset(root, out, size=size, norm=norm, seed=seed, contrasts=list(contrasts), progress=progress,
                        split=split)
        extra = "".join(f", {k}={v}" for k, v in sorted((embedded_options or {}).items()))
        return DataSpec(out, f"embedded ({n} subjects, {size}x{size}, seed {seed}{extra})")
    if not path.exists():
        raise DataError(f"--data {path} does not exist: pass a NIfTI dataset folder, a prepared folder or 'embedded'")
    tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    out = cache_dir / f"prepared-{path.name}-{tag}-{size}{_split_tag(split)}{_norm_tag(norm)}"
    prepare_dataset(path, out, size=size, norm=norm, seed=seed, contrasts=list(contrasts), progress=progress,
                    split=split)
    return DataSpec(out, f"{path} ({size}x{size})")


def _prepared_folder(
    path: Path, size: int | None, contrasts: tuple[str, ...], split: tuple[float, float, float] | None,
    norm: str | None = None,
) -> DataSpec:
    """A folder written by ``robustmri data prepare``, checked against what the caller needs."""
    from robustmri.data.cache import open_entry
    from robustmri.data.prepare import read_pointer

    if split is not None:
        raise ConfigError(
            f"{path} is already prepared with its own split.json: drop the split option, or re-run "
            "`robustmri data prepare ... --split` to change it"
        )
    entry = open_entry(read_pointer(path)[0])
    have_size, have = int(entry.meta["options"]["size"]), entry.contrasts
    if size is not None and size != have_size:
        raise ConfigError(
            f"{path} is prepared at {have_size}x{have_size}, not {size}x{size}: ask for image size {have_size} "
            f"(--image-size, or data.image_size in a suite), or prepare the data again with --size {size}"
        )
    have_norm = str(entry.meta["options"].get("norm", DEFAULT_NORM))
    if norm is not None and norm != have_norm:
        raise ConfigError(
            f"{path} is prepared with --norm {have_norm} but the protocol scores data normalised with {norm}: "
            f"prepare the data again with `robustmri data prepare ... --norm {norm}`, or use a protocol whose "
            f"volume normalisation is {have_norm}"
        )
    missing = [c for c in contrasts if c not in have]
    if missing:
        raise DataError(
            f"{path} holds contrasts {', '.join(have)} but not {', '.join(missing)}: choose among those, or prepare "
            "the data again with the contrasts you need"
        )
    return DataSpec(path, f"prepared {path} ({have_size}x{have_size})")


def _norm_tag(norm: str) -> str:
    """Cache-folder suffix of a non-default normalisation (each gets its own prepared folder)."""
    return "" if norm == DEFAULT_NORM else f"-norm-{norm}"


def _split_tag(split: tuple[float, float, float] | None) -> str:
    """Cache-folder suffix of a non-default split (each split gets its own folder and split.json)."""
    return "" if split is None else "-split" + "-".join(f"{v:g}" for v in split)


def load_split_tensors(spec: DataSpec, split: str, source: str, target: str):  # type: ignore[no-untyped-def]
    """The ``split`` of ``spec`` as :class:`robustmri.train.data.PairedTensors` for ``source`` -> ``target``."""
    from robustmri.data.dataset import PairedSlices
    from robustmri.data.paired import PairedTensors

    ds = PairedSlices(spec.prepared, split=split, source=source, target=target)
    if len(ds) == 0:
        raise DataError(f"the {split} split of {spec.prepared} has no slices: use more subjects or another split")
    src, tgt, mask, subject = ds.tensors()
    import torch

    slice_idx = torch.from_numpy(ds.entry.arrays["slice"][ds.rows].astype("int64"))
    if "spacing" not in ds.entry.arrays:
        raise DataError(
            f"{spec.prepared} was prepared by an older robustmri and holds no pixel spacing: prepare it again "
            "with `robustmri data prepare` (the same options)"
        )
    spacing = torch.from_numpy(ds.entry.arrays["spacing"][ds.rows].astype("float64").mean(axis=1))
    import numpy as np

    labels = None
    if "seg" in ds.entry.arrays:  # tissue labels of the real anatomy (clinical scores)
        labels = torch.from_numpy(np.ascontiguousarray(ds.entry.arrays["seg"][ds.rows], dtype=np.uint8))[:, None]
    slice_mm = None  # through-plane positions (whole-volume scores); absent from entries of robustmri <= 0.x
    if "slice_mm" in ds.entry.arrays:
        slice_mm = torch.from_numpy(ds.entry.arrays["slice_mm"][ds.rows].astype("float64"))
    return PairedTensors(src, tgt, mask, subject, slice_idx, subject_names=list(ds.subjects), spacing=spacing, labels=labels,
                         slice_mm=slice_mm)
