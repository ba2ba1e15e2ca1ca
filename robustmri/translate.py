"""Apply a trained run or an external model to NIfTI volumes: ``robustmri translate -i IN -o OUT``.

Each volume goes through the preparation the model was trained (or scored) with, read from the
run's ``data.json`` (written by ``robustmri train`` and ``robustmri bench``) or given explicitly:

1. reoriented to the closest canonical (RAS+) orientation (as ``data prepare`` does);
2. normalised per volume (``percentile``: brain intensities clipped to the 0.5-99.5th
   percentiles and scaled to [0, 1]; the brain mask is the filled threshold mask of
   :func:`robustmri.data.brainmask.threshold_mask`);
3. cut into slices along ``axis`` (every slice, not only the brain ones), padded (or cropped) to
   a centred square and resized to the model's grid (:func:`robustmri.data.slices.fit_square`);
4. translated in batches; then every step is undone: resized back to the square, the padding
   removed (a ``crop`` fit leaves the cropped margins at 0), the slices stacked and the volume put
   back in the input's voxel order.

The output has the input's shape, affine and header (float32, scaling reset). Intensities: the
model's [0, 1] scale of the *target* contrast, which has no scale of its own in the input (a T1
says nothing about how bright the T2 would be). ``like=`` a volume of the target contrast (the
subject's own, or one from the same scanner and protocol) maps them back through the inverse of
the same normalisation with that volume's statistics (``percentile``: ``lo + y * (hi - lo)``;
``zscore``: ``mean + y * std``; ``minmax``: ``min + y * (max - min)``; ``mean``:
``y * divisor * mean``).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustmri.errors import ConfigError, DataError
from robustmri.rng import KeyedStream

__all__ = ["DATA_FILE", "Preparation", "Selection", "load_translator", "name_contrast", "run_data_identity", "select_inputs",
           "translate_path", "translate_volume"]

DATA_FILE = "data.json"
"""In a run folder: how the data the model was trained on were prepared (see :func:`record_preparation`)."""

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class Preparation:
    """How slices were made from a volume: normalisation ``norm`` (and for ``mean`` the
    dataset-level ``mean_divisor`` of the source contrast), slice ``axis`` (voxel axis after
    canonical reorientation; 2 = axial), square ``fit`` (pad or crop), model grid ``size`` (px)."""

    norm: str = "percentile"
    axis: int = 2
    fit: str = "pad"
    size: int = 64
    mean_divisor: float = 1.0

    @classmethod
    def from_run(cls, run_dir: Path, size: int, source: str | None) -> tuple[Preparation, bool]:
        """The run's preparation from its ``data.json`` (second value True), else the defaults of
        ``data prepare`` at the model's ``size`` (False)."""
        path = run_dir / DATA_FILE
        if not path.is_file():
            return cls(size=size), False
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            opts = d["options"]
            divisor = float((d.get("mean_scale") or {}).get(source or "", 1.0))
            return cls(norm=str(opts["norm"]), axis=int(opts["axis"]), fit=str(opts["fit"]), size=size,
                       mean_divisor=divisor), True
        except (OSError, ValueError, KeyError, TypeError):
            raise DataError(f"{path} is unreadable: delete it to use the defaults, or restore it") from None


def record_preparation(
    run_dir: str | os.PathLike[str],
    prepared: str | os.PathLike[str],
    description: str,
    source: str | None = None,
    split: tuple[float, float, float] | list[float] | None = None,
    embedded_options: dict[str, Any] | None = None,
) -> None:
    """Write ``run_dir/data.json``: how the data the run was trained on were prepared
    (normalisation, axis, fit, size, reorientation, mean scale: what ``translate`` repeats), and
    which data they were: ``source`` (the ``--data`` / ``data.source`` given), the ``split`` and
    ``embedded_options`` it was prepared with, the prepared folder, its cache key, and the exact
    subjects of its train, val and test splits (what ``eval`` defaults to, and the subjects it
    refuses to score as unseen). Written only when its content changes."""
    from robustmri.atomic import write_json_if_changed
    from robustmri.data.prepare import POINTER_NAME, read_pointer

    entry, split_path = read_pointer(prepared)
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # an entry without metadata: translate falls back to its defaults and says so
    opts = meta.get("options", {})
    keep = {k: opts[k] for k in ("norm", "percentiles", "axis", "fit", "size", "reorient", "slices") if k in opts}
    record: dict[str, Any] = {"options": keep, "mean_scale": meta.get("mean_scale", {}), "data": description}
    try:
        pointer = json.loads((Path(prepared) / POINTER_NAME).read_text(encoding="utf-8"))
        manifest = json.loads(split_path.read_text(encoding="utf-8"))
        record["identity"] = {
            "source": source, "split": list(split) if split is not None else None,
            "embedded_options": dict(embedded_options or {}), "prepared": str(Path(prepared).resolve()),
            "entry": entry.name, "key": pointer.get("key"),
            "subjects": {name: list(manifest.get(name, [])) for name in ("train", "val", "test")},
        }
    except (OSError, ValueError, AttributeError):
        pass  # a prepared folder without a readable split: eval then needs --data
    write_json_if_changed(Path(run_dir) / DATA_FILE, record)


def run_data_identity(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``identity`` block of ``run_dir/data.json`` (see :func:`record_preparation`), or None for
    a run that recorded none (trained by an older robustmri)."""
    path = Path(run_dir) / DATA_FILE
    if not path.is_file():
        return None
    try:
        identity = json.loads(path.read_text(encoding="utf-8")).get("identity")
    except (OSError, ValueError, AttributeError):
        raise DataError(f"{path} is unreadable: restore it, or pass --data to say which data to score") from None
    return identity if isinstance(identity, dict) else None


def _inverse_fit(stack: np.ndarray, shape: tuple[int, int], fit: str) -> np.ndarray:
    """(S, size, size) -> (S, H, W): the inverse of :func:`robustmri.data.slices.fit_square`
    (resize back to the square's side, then remove the padding or put the crop back in a zero
    frame)."""
    import torch.nn.functional as F

    h, w = shape
    side = max(h, w) if fit == "pad" else min(h, w)
    if stack.shape[-1] != side:
        t = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
        antialias = side < stack.shape[-1]
        stack = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False, antialias=antialias)[:, 0].numpy()
    ch, cw = min(h, side), min(w, side)
    sy, sx = (h - ch) // 2, (w - cw) // 2
    dy, dx = (side - ch) // 2, (side - cw) // 2
    out = np.zeros((stack.shape[0], h, w), dtype=np.float32)
    out[:, sy : sy + ch, sx : sx + cw] = stack[:, dy : dy + ch, dx : dx + cw]
    return out


def _denormalise(y: np.ndarray, like: np.ndarray, prep: Preparation, source: str) -> np.ndarray:
    from robustmri.data.brainmask import threshold_mask
    from robustmri.data.normalize import PERCENTILES

    v = like.astype(np.float64)
    if prep.norm == "none":
        return y
    if prep.norm == "minmax":
        return (v.min() + y * (v.max() - v.min())).astype(np.float32)
    brain = v[threshold_mask([like], source=source)]
    if prep.norm == "percentile":
        lo, hi = np.percentile(brain, PERCENTILES)
        return (lo + y * (hi - lo)).astype(np.float32)
    if prep.norm == "zscore":
        return (brain.mean() + y * brain.std()).astype(np.float32)
    return (y * prep.mean_divisor * brain.mean()).astype(np.float32)  # mean


def translate_volume(
    predict: Callable[[torch.Tensor, int], torch.Tensor],
    data: np.ndarray,
    prep: Preparation,
    batch_size: int = 32,
    source: str = "volume",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Translate one canonical (X, Y, Z) volume slice-wise; returns (X, Y, Z) float32 in [0, 1]
    scale. ``predict(x, first)`` maps (B, 1, size, size) in [0, 1], slices ``first .. first + B - 1``
    of the stack, to (B, 1, size, size). ``mask``: bool
    brain mask of the volume for the normalisation's statistics (None: the threshold rule on this
    volume alone; ``data prepare`` uses a mask file, a seg, or the rule on all contrasts)."""
    from robustmri.data.brainmask import threshold_mask
    from robustmri.data.normalize import normalize_volume
    from robustmri.data.slices import fit_square, to_stack

    if mask is None:
        mask = threshold_mask([data], source=source)
    vol = normalize_volume(data, mask, prep.norm, source=source)
    if prep.norm == "mean":
        vol = vol / prep.mean_divisor
    stack = to_stack(vol, prep.axis)  # (S, H, W) view
    fitted = fit_square(np.ascontiguousarray(stack), prep.size, prep.fit)
    out = np.empty_like(fitted)
    for start in range(0, fitted.shape[0], batch_size):
        x = torch.from_numpy(fitted[start : start + batch_size])[:, None]
        out[start : start + batch_size] = predict(x, start)[:, 0].detach().float().cpu().numpy()
    back = _inverse_fit(out, stack.shape[1:], prep.fit)
    return np.moveaxis(back, 0, prep.axis)


def load_translator(
    run: str | os.PathLike[str] | None = None,
    external: str | None = None,
    io_range: str = "unit",
    size: int | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> tuple[Callable[[torch.Tensor, int], torch.Tensor], int, Path | None, str | None]:
    """``(predict, model grid size, run folder or None, source contrast or None)`` for a trained
    run folder or an external model entry (then ``size`` is required). ``predict(x, first)``
    translates slices ``first ..`` of a volume; a stochastic model draws its noise per slice from
    ``(seed, slice index)``, so the output does not depend on ``--batch-size``."""
    from robustmri.device import resolve_device

    dev = resolve_device(device)
    if (run is None) == (external is None):
        raise ConfigError("give either --run RUN_DIR (a trained run) or --external ENTRY (your own model)")
    if run is not None:
        from robustmri.train.engine import load_trained

        run_dir = Path(run)
        if not (run_dir / "config.json").is_file():
            raise DataError(f"{run_dir} is not a run folder (no config.json): pass a folder written by `robustmri train` "
                            "or a bench's runs/<name>")
        model, config = load_trained(run_dir, device=dev)
        grid = int(getattr(config, "image_size", None) or model.image_size)
        src = getattr(config, "source", None)
        if model.needs_target:
            raise ConfigError(f"{run_dir} holds an oracle model (it needs the real target at test time): it cannot translate")
    else:
        from robustmri.models.external import ExternalModel, load_external_module

        if size is None:
            raise ConfigError("--external needs --size: the slice size in pixels the model expects")
        model = ExternalModel(load_external_module(external or "", label="external"), "external", io_range).to(dev)
        grid, run_dir, src = int(size), None, None

    def predict(x: torch.Tensor, first: int = 0) -> torch.Tensor:
        gen = KeyedStream.for_rows(seed, "translate", [(first + i,) for i in range(x.shape[0])])
        with torch.no_grad():
            return model.translate(x.to(dev), generator=gen)

    return predict, grid, run_dir, src


LABEL_MAP_MAX_VALUES = 64
"""An integer-valued volume with at most this many distinct values is a label map (``seg``, a
mask), not an image: scans stored as integers (IXI's int16) hold thousands of values."""


@dataclass(frozen=True)
class Selection:
    """The NIfTI files ``translate`` will translate, and those it skips with the reason why."""

    files: list[Path]
    skipped: list[tuple[Path, str]]


def name_contrast(path: Path) -> str | None:
    """The contrast a file name states, from its tokens split on ``_ - .`` (case-insensitive,
    aliases of :data:`robustmri.data.contrasts.ALIASES`): ``IXI002-Guys-0828-T1.nii.gz`` -> ``t1``,
    ``sub-01_T2w.nii.gz`` -> ``t2``, ``BraTS-GLI-00000-000-t2f.nii.gz`` -> ``flair``; a label
    volume's name (``seg``, ``mask``) -> ``"seg"`` / ``"mask"``; an nnU-Net channel (``case_0000``)
    -> ``"0000"``; None when the name states none."""
    import re

    from robustmri.data.contrasts import ALIASES, LABEL_VOLUMES

    stem = path.name
    for suffix in NIFTI_SUFFIXES[::-1]:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    tokens = [t for t in re.split(r"[_\-. ]+", stem.lower()) if t]
    for token in reversed(tokens):
        if token in ALIASES:
            return ALIASES[token]
        if token in LABEL_VOLUMES:
            return token
    if tokens and re.fullmatch(r"\d{4}", tokens[-1]) and "_" in stem:
        return tokens[-1]
    return None


def is_label_map(path: Path) -> bool:
    """True for an integer-valued volume with at most :data:`LABEL_MAP_MAX_VALUES` distinct values."""
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception:  # noqa: BLE001 - unreadable files are reported when translated
        return False
    if data.dtype.kind == "f":
        finite = data[np.isfinite(data)]
        if finite.size == 0 or not np.array_equal(finite, np.round(finite)):
            return False
        data = finite
    return np.unique(data).size <= LABEL_MAP_MAX_VALUES


def select_inputs(path: Path, *, pattern: str | None = None, contrast: str | None = None) -> Selection:
    """The files of ``path`` (a NIfTI file or a folder of them) to translate.

    ``pattern``: a glob on the file name (``"*_0000.nii.gz"``). ``contrast``: keep only files whose
    name states that contrast (:func:`name_contrast`; a canonical name or alias, or an nnU-Net
    channel such as ``0000``); files that state another are skipped, and so are files that state
    none. Label maps (:func:`is_label_map`) are always skipped. Raises DataError when nothing is left.
    """
    import fnmatch

    from robustmri.data.contrasts import canonical_contrast

    files = list_inputs(path)
    want = None
    if contrast is not None:
        text = str(contrast).strip()
        want = text if text.isdigit() and len(text) == 4 else canonical_contrast(text)
    keep: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for f in files:
        stated = name_contrast(f)
        if pattern is not None and path.is_dir() and not fnmatch.fnmatch(f.name, pattern):
            skipped.append((f, f"does not match --pattern {pattern}"))
        elif stated in ("seg", "mask") or is_label_map(f):
            skipped.append((f, "a label map (integer values, few distinct): not an image"))
        elif want is not None and stated != want:
            skipped.append((f, f"its name states {stated}, not {want}" if stated else
                               f"its name states no contrast (--contrast {want} asks for one)"))
        else:
            keep.append(f)
    if not keep:
        why = "; ".join(f"{f.name}: {reason}" for f, reason in skipped[:3])
        raise DataError(f"nothing to translate in {path} ({why}{'; ...' if len(skipped) > 3 else ''}): "
                        "check --contrast / --pattern")
    return Selection(keep, skipped)


def list_inputs(path: Path) -> list[Path]:
    """The NIfTI files ``path`` names: itself, or every .nii / .nii.gz file in the folder (sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
        if not found:
            raise DataError(f"{path} holds no .nii or .nii.gz file: pass a NIfTI file or a folder of them")
        return found
    raise DataError(f"{path} does not exist: pass a NIfTI file or a folder of them")


def translate_path(
    inp: str | os.PathLike[str],
    out: str | os.PathLike[str],
    predict: Callable[[torch.Tensor], torch.Tensor],
    prep: Preparation,
    like: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    progress: Callable[[str], Any] | None = None,
    mask: str | os.PathLike[str] | None = None,
    files: list[Path] | None = None,
) -> list[Path]:
    """Translate a NIfTI file (``out``: a file name, or a folder to hold it under its own name) or
    the NIfTI files of a folder (``out``: a folder): ``files`` (from :func:`select_inputs`), by
    default every one. Each output is written atomically, with the input's shape, affine and
    header. Returns the written paths."""
    import nibabel as nib

    from robustmri.atomic import atomic_path
    from robustmri.data.readers import load_volume

    src = Path(inp)
    files = list_inputs(src) if files is None else list(files)
    dst = Path(out)
    single_file = src.is_file() and dst.name.endswith(NIFTI_SUFFIXES)
    if not single_file:
        if dst.exists() and not dst.is_dir():
            raise ConfigError(f"-o {dst} is a file: pass a folder for the outputs of {len(files)} input(s)")
        dst.mkdir(parents=True, exist_ok=True)
    like_vol = load_volume(like).data if like is not None else None
    if mask is not None and len(files) != 1:
        raise ConfigError(f"--mask goes with one input file, not a folder of {len(files)}: translate them one by one")
    written = []
    for f in files:
        target = dst if single_file else dst / f.name
        if target.resolve() == f.resolve():
            raise ConfigError(f"-o would overwrite the input {f}: choose another output")
        try:
            img = nib.load(str(f))
        except Exception as exc:  # noqa: BLE001 - any decoding failure
            raise DataError(f"cannot read {f} ({type(exc).__name__}: {exc}): the file is truncated or corrupt") from None
        vol = load_volume(f)  # canonical orientation, validated
        brain = None
        if mask is not None:
            m = load_volume(mask)
            if m.data.shape != vol.data.shape or not np.allclose(m.affine, vol.affine, atol=1e-3):
                raise DataError(f"--mask {mask} is not on the grid of {f} (shape {m.data.shape} vs {vol.data.shape}): "
                                "give the brain mask of this volume")
            brain = m.data > 0
            if not brain.any():
                raise DataError(f"--mask {mask} has no voxel > 0: give a brain mask")
        y = translate_volume(predict, vol.data, prep, batch_size=batch_size, source=str(f), mask=brain)
        if like_vol is not None:
            y = _denormalise(y, like_vol, prep, str(like))
        # back to the input's voxel order: canonical -> original orientation
        orig = nib.orientations.io_orientation(img.affine)
        to_orig = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), orig)
        data = nib.orientations.apply_orientation(y, to_orig).astype(np.float32)
        if data.shape != img.shape[:3]:  # pragma: no cover - guarded by the orientation algebra
            raise DataError(f"{f}: the translated volume came out {data.shape}, not {img.shape[:3]}")
        header = img.header.copy()
        header.set_data_dtype(np.float32)
        result = nib.Nifti1Image(data, img.affine, header=header)
        result.header.set_slope_inter(1.0, 0.0)
        payload = result.to_bytes()
        if target.name.endswith(".gz"):
            payload = gzip.compress(payload, compresslevel=6, mtime=0)  # mtime 0: equal inputs, equal bytes
        with atomic_path(target) as tmp:
            tmp.write_bytes(payload)
        written.append(target)
        if progress is not None:
            progress(f"{f.name} -> {target}")
    return written
