"""Readers for NIfTI dataset folders: IXI, BraTS (2020 and 2023 naming) and robustmri's generic layout.

A reader turns a folder into a list of :class:`SubjectRecord` (subject id, canonical contrast ->
file, optional seg / mask file). Nothing is decoded until :func:`load_subject` or
:func:`load_volume` is called, so discovering a large tree only lists folders.

Layouts (``layout=`` argument, ``"auto"`` tries them in this order):

- ``"ixi"``: one folder with ``IXI002-Guys-0828-T1.nii.gz``, ``...-T2.nii.gz``, ``...-PD.nii.gz``;
  subject id ``IXI002-Guys-0828``; other files (MRA, DTI, ...) are ignored.
- ``"brats"``: one folder per subject, ``BraTS20_Training_001/BraTS20_Training_001_t1.nii.gz``
  (``t1, t1ce, t2, flair, seg``) or ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz``
  (``t1n, t1c, t2w, t2f, seg``). The BraTS ``seg`` labels the tumour only, so it is NOT used as a
  brain mask (the images are skull-stripped; the threshold rule of :mod:`robustmri.data.brainmask` applies).
  Its labels are read into robustmri's (:data:`robustmri.data.tissues.SEG_LABELS`): oedema (BraTS 2)
  -> ``oedema``; necrotic or non-enhancing core (1) and enhancing tumour (4 in 2020, 3 in 2023) ->
  ``core``; 0 -> background. BraTS has no tissue labels, so the clinical scores that need normal
  white matter (lesion contrast, the detector) or tissue (the segmenter's Dice) are NaN on it; the
  scores inside the tumour are given.
- ``"generic"``: ``ROOT/<subject>/<contrast>.nii[.gz]`` plus optional ``seg.nii.gz`` (labels,
  ``seg > 0`` is brain) and ``mask.nii.gz`` (``mask > 0`` is brain): the embedded generator's layout.

Volumes are returned as float32 arrays of shape (X, Y, Z) with their 4x4 voxel-to-world affine (mm).
By default they are reoriented to the closest canonical (RAS+) orientation, a lossless axis
permutation / flip, so that the last axis is always inferior -> superior (axial slices).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustmri.data.contrasts import ALIASES, canonical_contrast
from robustmri.errors import ConfigError, DataError

LAYOUTS: tuple[str, ...] = ("auto", "ixi", "brats", "generic")
"""Accepted values of ``layout``."""

GRID_ATOL: float = 1e-3
"""Two volumes share a grid when their shapes are equal and every affine entry differs by <= this (mm)."""

_NII = r"\.nii(?:\.gz)?"
_IXI_RE = re.compile(rf"^(IXI\d+-[A-Za-z]+-\d+)-(T1|T2|PD)(?:{_NII})$")
_IXI_ANY_RE = re.compile(rf"^IXI\d+-[A-Za-z]+-\d+-.+{_NII}$")


@dataclass(frozen=True)
class SubjectRecord:
    """One subject found on disk; paths only, nothing loaded.

    ``images`` maps canonical contrast names (see :mod:`robustmri.data.contrasts`) to files.
    ``seg_is_brain`` tells whether ``seg > 0`` marks the brain (generic layout) or only a
    lesion (BraTS).
    """

    subject_id: str
    images: dict[str, Path]
    seg: Path | None = None
    mask: Path | None = None
    seg_is_brain: bool = True
    layout: str = "generic"

    def files(self) -> list[Path]:
        """Every file of this subject (images, then seg and mask when present)."""
        out = [self.images[c] for c in sorted(self.images)]
        out += [p for p in (self.seg, self.mask) if p is not None]
        return out


@dataclass
class Volume:
    """A decoded volume: ``data`` float32 (X, Y, Z), ``affine`` float64 (4, 4) voxel -> mm."""

    data: np.ndarray
    affine: np.ndarray
    path: Path

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)


@dataclass
class LoadedSubject:
    """A subject's volumes on one common grid.

    ``images``: canonical contrast -> float32 (X, Y, Z); ``seg``: uint8 labels or ``None``;
    ``mask``: bool brain mask from a mask file or (generic layout) ``seg > 0``, else ``None``
    (the caller then applies the threshold rule); ``affine``: the shared grid (mm).
    """

    record: SubjectRecord
    images: dict[str, np.ndarray]
    affine: np.ndarray
    seg: np.ndarray | None = None
    mask: np.ndarray | None = None
    resampled: list[str] = field(default_factory=list)
    #: contrast -> :class:`robustmri.data.register.Registration` when loaded with ``register=``
    registrations: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------------


def _strip_nii(name: str) -> str | None:
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return None


def _discover_ixi(root: Path) -> list[SubjectRecord]:
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.iterdir()):
        m = _IXI_RE.match(path.name)
        if not m or not path.is_file():
            continue
        sid, mod = m.group(1), canonical_contrast(m.group(2))
        images = found.setdefault(sid, {})
        if mod in images:
            raise DataError(
                f"two {m.group(2)} files for IXI subject {sid}: {images[mod].name} and {path.name}: "
                "keep only one of them in the folder"
            )
        images[mod] = path
    return [
        SubjectRecord(sid, imgs, seg_is_brain=False, layout="ixi") for sid, imgs in sorted(found.items())
    ]


def _brats_entries(folder: Path) -> dict[str, Path]:
    """``{suffix: path}`` for files named ``<folder>_<suffix>.nii[.gz]`` or ``<folder>-<suffix>...``."""
    out: dict[str, Path] = {}
    prefix = folder.name
    for path in sorted(folder.iterdir()):
        stem = _strip_nii(path.name)
        if stem is None or not path.is_file() or not stem.startswith(prefix):
            continue
        rest = stem[len(prefix) :]
        if len(rest) < 2 or rest[0] not in "_-":
            continue
        out[rest[1:].lower()] = path
    return out


def _discover_brats(root: Path) -> list[SubjectRecord]:
    records = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        entries = _brats_entries(folder)
        images: dict[str, Path] = {}
        seg = None
        for suffix, path in entries.items():
            if suffix == "seg":
                seg = path
            elif suffix in ALIASES:
                name = ALIASES[suffix]
                if name in images:
                    raise DataError(
                        f"two {name} files in {folder}: {images[name].name} and {path.name}: "
                        "keep only one of them"
                    )
                images[name] = path
        if images:
            records.append(SubjectRecord(folder.name, images, seg=seg, seg_is_brain=False, layout="brats"))
    return records


def _discover_generic(root: Path) -> list[SubjectRecord]:
    records = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images: dict[str, Path] = {}
        labels: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            stem = _strip_nii(path.name)
            if stem is None or not path.is_file():
                continue
            key = stem.lower()
            if key in ("seg", "mask"):
                if key in labels:
                    raise DataError(
                        f"two {key} files in {folder}: {labels[key].name} and {path.name}: keep only one"
                    )
                labels[key] = path
                continue
            try:
                name = canonical_contrast(stem)
            except ConfigError:
                continue  # not a contrast file: ignored
            if name in images:
                raise DataError(
                    f"two {name} files in {folder}: {images[name].name} and {path.name}: keep only one"
                )
            images[name] = path
        if images:
            records.append(
                SubjectRecord(
                    folder.name, images, seg=labels.get("seg"), mask=labels.get("mask"), layout="generic"
                )
            )
    return records


_DISCOVER = {"ixi": _discover_ixi, "brats": _discover_brats, "generic": _discover_generic}


def _looks_like_brats(root: Path) -> bool:
    for folder in (p for p in root.iterdir() if p.is_dir()):
        if any(s in ALIASES or s == "seg" for s in _brats_entries(folder)):
            return True
    return False


def detect_layout(root: str | Path) -> str:
    """Return ``"ixi"``, ``"brats"`` or ``"generic"`` for the folder ``root``.

    Raises :class:`DataError` when the folder is missing or matches no layout.
    """
    root = _check_root(root)
    if any(_IXI_ANY_RE.match(p.name) for p in root.iterdir()):
        return "ixi"
    if _looks_like_brats(root):
        return "brats"
    if _discover_generic(root):
        return "generic"
    raise DataError(
        f"no IXI files (IXI002-Guys-0828-T1.nii.gz), BraTS subject folders or "
        f"<subject>/<contrast>.nii.gz folders found in {root}: point ROOT at the folder that holds "
        "the subjects or pass --layout ixi|brats|generic"
    )


def _check_root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"data folder {path} does not exist: check the path")
    if not path.is_dir():
        raise DataError(f"{path} is not a folder: pass the folder that holds the subjects")
    return path


def discover_subjects(
    root: str | Path,
    layout: str = "auto",
    contrasts: Sequence[str] | None = None,
) -> list[SubjectRecord]:
    """List the subjects under ``root`` (sorted by subject id); reads no image data.

    ``contrasts``: canonical or alias names every subject must have; ``None`` means every contrast
    found anywhere in the tree. A subject that lacks one raises :class:`DataError` naming the
    expected file. Only the requested contrasts are kept in the returned records.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    root = _check_root(root)
    resolved = detect_layout(root) if layout == "auto" else layout
    records = _DISCOVER[resolved](root)
    if not records:
        raise DataError(
            f"no {resolved} subjects found in {root}: check the folder or pass another --layout "
            "(see docs/data.md for the expected file names)"
        )
    if contrasts is None:
        wanted = sorted({c for r in records for c in r.images})
    else:
        wanted = list(dict.fromkeys(canonical_contrast(c) for c in contrasts))
        if not wanted:
            raise ConfigError("empty contrast list: pass at least one contrast, e.g. --contrasts t1,t2")
    out = []
    for rec in records:
        missing = [c for c in wanted if c not in rec.images]
        if missing:
            raise DataError(
                f"subject {rec.subject_id} has no {missing[0]} image (expected "
                f"{_expected_path(root, rec, missing[0])}): add the file, remove the subject from "
                f"{root}, or choose other contrasts with --contrasts"
            )
        out.append(
            SubjectRecord(
                rec.subject_id,
                {c: rec.images[c] for c in wanted},
                seg=rec.seg,
                mask=rec.mask,
                seg_is_brain=rec.seg_is_brain,
                layout=rec.layout,
            )
        )
    return out


def _expected_path(root: Path, rec: SubjectRecord, contrast: str) -> Path:
    if rec.layout == "ixi":
        return root / f"{rec.subject_id}-{contrast.upper()}.nii.gz"
    if rec.layout == "brats":
        sample = next(iter(rec.images.values())).name
        sep = "-" if sample.startswith(rec.subject_id + "-") else "_"
        new = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
        suffix = new.get(contrast, contrast) if sep == "-" else contrast
        return root / rec.subject_id / f"{rec.subject_id}{sep}{suffix}.nii.gz"
    return root / rec.subject_id / f"{contrast}.nii.gz"


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def load_volume(path: str | Path, reorient: bool = True) -> Volume:
    """Decode one NIfTI file into a float32 :class:`Volume` of shape (X, Y, Z).

    Trailing singleton dimensions are dropped. Raises :class:`DataError` for a missing, truncated or
    corrupt file, a volume that is not 3-D, or one that contains NaN / infinite values.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist: check the path")
    try:
        img = nib.load(str(path))
        if reorient:
            img = nib.as_closest_canonical(img)
        data = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # any decoding failure: gzip EOF, zlib error, bad header, ...
        raise DataError(
            f"cannot read {path} ({type(exc).__name__}: {exc}): the file is truncated or corrupt, "
            "re-download or re-export it"
        ) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(
            f"{path} has shape {tuple(data.shape)}, expected a 3-D volume: extract one 3-D volume first"
        )
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - finite.sum())
        raise DataError(
            f"{path} contains {bad} NaN/infinite voxels out of {data.size}: replace them "
            "(e.g. numpy.nan_to_num) or re-export the volume"
        )
    return Volume(data=data, affine=affine, path=path)


def same_grid(a: Volume, b: Volume, atol: float = GRID_ATOL) -> bool:
    """True when ``a`` and ``b`` have equal shapes and affines within ``atol`` (mm)."""
    return a.shape == b.shape and bool(np.allclose(a.affine, b.affine, atol=atol, rtol=0.0))


def _resample(vol: Volume, ref: Volume, order: int) -> np.ndarray:
    """``vol`` resampled onto ``ref``'s grid (order 1 = linear for images, 0 = nearest for labels)."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    src = nib.Nifti1Image(vol.data, vol.affine)
    out = resample_from_to(src, (ref.shape, ref.affine), order=order, mode="constant", cval=0.0)
    return np.asarray(out.dataobj, dtype=np.float32)


def _grid_error(vol: Volume, ref: Volume, ref_name: str) -> DataError:
    return DataError(
        f"{vol.path} (shape {vol.shape}) and {ref.path} (shape {ref.shape}) are on different voxel "
        f"grids (shape or affine differ by more than {GRID_ATOL} mm): register them first, or pass "
        f"--resample (resample=True) to resample onto the {ref_name} grid"
    )


def reference_contrast(contrasts: Sequence[str], reference: str | None = None) -> str:
    """The contrast whose grid the others are checked against (and resampled onto).

    ``reference`` when given (must be among ``contrasts``), else ``t2`` when present (IXI's T2 and
    PD share a grid while T1 does not), else the first of ``contrasts`` in sorted order.
    """
    names = sorted(contrasts)
    if reference is not None:
        ref = canonical_contrast(reference)
        if ref not in names:
            raise ConfigError(
                f"reference contrast {reference!r} is not among the prepared contrasts "
                f"{', '.join(names)}: choose one of them"
            )
        return ref
    return "t2" if "t2" in names else names[0]


def brats_labels(seg: np.ndarray, path: Path | str) -> np.ndarray:
    """BraTS tumour labels (0; 1 necrotic / non-enhancing core, 2 oedema, 3 or 4 enhancing tumour)
    as robustmri's :data:`robustmri.data.tissues.SEG_LABELS` (background, ``core``, ``oedema``)."""
    from robustmri.data.tissues import SEG_LABELS

    unknown = sorted(set(np.unique(seg).tolist()) - {0, 1, 2, 3, 4})
    if unknown:
        raise DataError(f"{path} holds label(s) {unknown}, which BraTS does not use (0-4): check that it is the BraTS "
                        "tumour segmentation, or use the generic layout for other label maps")
    table = np.zeros(256, dtype=np.uint8)
    table[[1, 3, 4]] = SEG_LABELS["core"]
    table[2] = SEG_LABELS["oedema"]
    return table[seg]


def load_subject(
    record: SubjectRecord,
    *,
    resample: bool = False,
    reference: str | None = None,
    reorient: bool = True,
    register: str | None = None,
    seed: int = 0,
) -> LoadedSubject:
    """Decode every volume of ``record`` onto one grid.

    All images, the seg and the mask must share the reference contrast's grid (see
    :func:`reference_contrast`); otherwise :class:`DataError` names both files, unless
    ``resample=True``, which resamples them onto the reference grid (linear for images, nearest
    for seg / mask). A mask (or, for the generic layout, a seg) without any brain voxel is an error.

    ``register`` (``"rigid"`` or ``"affine"``): register every other contrast to the reference one
    by mutual information (:func:`robustmri.data.register.register_volume`, seeded by ``seed``),
    whatever its grid; the results are kept in :attr:`LoadedSubject.registrations`.
    """
    ref_name = reference_contrast(list(record.images), reference)
    ref = load_volume(record.images[ref_name], reorient=reorient)
    images: dict[str, np.ndarray] = {}
    resampled: list[str] = []

    def on_grid(vol: Volume, order: int, label: str) -> np.ndarray:
        if same_grid(vol, ref):
            return vol.data
        if not resample:
            raise _grid_error(vol, ref, ref_name)
        resampled.append(label)
        return _resample(vol, ref, order)

    registrations: dict[str, Any] = {}
    for name in sorted(record.images):
        vol = ref if name == ref_name else load_volume(record.images[name], reorient=reorient)
        if register is not None and name != ref_name:
            from robustmri.data.register import register_volume

            # mutual information to the reference contrast; the result lies on the reference grid
            reg = register_volume(ref.data, ref.affine, vol.data, vol.affine, register, seed=seed,
                                  subject=f"{record.subject_id} ({name} to {ref_name})")
            registrations[name] = reg
            images[name] = reg.data
            continue
        images[name] = on_grid(vol, 1, name)

    seg = mask = None
    if record.seg is not None:
        seg_f = on_grid(load_volume(record.seg, reorient=reorient), 0, "seg")
        seg = np.rint(seg_f).clip(0, 255).astype(np.uint8)
        if record.layout == "brats":
            seg = brats_labels(seg, record.seg)
        if record.seg_is_brain:
            mask = seg > 0
            if not mask.any():
                raise DataError(
                    f"segmentation {record.seg} has no label > 0 (no brain voxel): fix the file or "
                    "delete it so that the threshold rule builds the brain mask"
                )
    if record.mask is not None:
        mask = on_grid(load_volume(record.mask, reorient=reorient), 0, "mask") > 0
        if not mask.any():
            raise DataError(
                f"brain mask {record.mask} is empty (no voxel > 0): fix the mask or delete it so that "
                "the threshold rule builds one"
            )
    return LoadedSubject(record, images, ref.affine, seg=seg, mask=mask, resampled=resampled, registrations=registrations)
