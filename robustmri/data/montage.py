"""Montage of a dataset folder: the middle axial slice of every contrast (and seg) for a few subjects."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robustmri.atomic import atomic_path
from robustmri.data.contrasts import CONTRASTS
from robustmri.errors import DataError

_ORDER = CONTRASTS + ("seg",)


def _subject_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: pass a dataset folder written by `robustmri data synth`")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    subs = [p for p in subs if any(p.glob("*.nii*"))]
    if not subs:
        raise DataError(f"no subject folders with NIfTI files in {root}: expected ROOT/<subject>/<contrast>.nii.gz")
    return subs


def _load(path: Path) -> np.ndarray:
    import nibabel as nib

    try:
        data = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    except Exception as exc:
        raise DataError(f"cannot read {path} ({type(exc).__name__}): re-create or replace the file") from exc
    if data.ndim != 3:
        raise DataError(f"{path} has {data.ndim} dimensions, expected a 3-D volume")
    return data


def _label_cmap():  # type: ignore[no-untyped-def]
    from matplotlib.colors import ListedColormap

    # background, CSF, GM, WM, oedema, tumour core
    return ListedColormap(["black", "#3b8bd9", "#8c8c8c", "#f2f2f2", "#f2c94c", "#d64541"])


def display_axial(slice_xy: np.ndarray) -> np.ndarray:
    """(x, y) RAS slice -> image rows = anterior to posterior, columns = patient right to left (radiological)."""
    return np.flipud(slice_xy.T)


def draw_montage(root: str | os.PathLike[str], out: str | os.PathLike[str], max_subjects: int = 4, dpi: int = 110) -> Path:
    """Draw the middle axial slice of each contrast for the first ``max_subjects`` subjects to ``out`` (PNG/PDF).

    Each contrast is windowed to [0, its 99.5th percentile]; ``seg`` uses a categorical colour map.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    subs = _subject_dirs(root)[:max_subjects]
    present = [c for c in _ORDER if any(subs[0].glob(f"{c}.nii*"))]
    if not present:
        raise DataError(f"{subs[0]} holds no file named <contrast>.nii.gz ({', '.join(_ORDER)})")
    fig, axes = plt.subplots(len(subs), len(present), figsize=(2.2 * len(present), 2.3 * len(subs)), squeeze=False)
    for r, sub in enumerate(subs):
        for c_i, name in enumerate(present):
            ax = axes[r][c_i]
            files = sorted(sub.glob(f"{name}.nii*"))
            ax.set_xticks([])
            ax.set_yticks([])
            if not files:
                ax.set_facecolor("black")
                continue
            vol = _load(files[0])
            img = display_axial(vol[:, :, vol.shape[2] // 2])
            if name == "seg":
                ax.imshow(img, cmap=_label_cmap(), vmin=-0.5, vmax=5.5, interpolation="nearest")
            else:
                hi = float(np.percentile(vol, 99.5)) or 1.0
                ax.imshow(img, cmap="gray", vmin=0.0, vmax=hi, interpolation="nearest")
            if r == 0:
                ax.set_title(name.upper() if name != "seg" else "labels", fontsize=10)
            if c_i == 0:
                ax.set_ylabel(sub.name, fontsize=9)
    fig.suptitle(f"{root.name}: middle axial slice", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    suffix = out.suffix.lstrip(".") or "png"
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=dpi, format=suffix)
    except PermissionError as exc:
        raise DataError(f"cannot write {out} ({exc.strerror}): choose a writable --out") from exc
    finally:
        plt.close(fig)
    return out
