"""NIfTI readers: layout detection (IXI, BraTS 2020 / 2023, generic), loading, grid checks, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from robustmri.data import readers
from robustmri.errors import ConfigError, DataError

SHAPE = (24, 24, 10)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
LEVEL = {"t1": 0.8, "t2": 0.5, "pd": 0.6, "t1ce": 0.9, "flair": 0.7}


def phantom(contrast: str = "t1", shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """Ellipsoid 'brain' (value LEVEL[contrast] + a ramp along x) in a zero background."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    c = [(n - 1) / 2 for n in shape]
    inside = ((x - c[0]) / 9) ** 2 + ((y - c[1]) / 9) ** 2 + ((z - c[2]) / 4.5) ** 2 <= 1
    return np.where(inside, LEVEL[contrast] + 0.01 * x, 0.0).astype(np.float32)


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def make_ixi(root: Path, ids: tuple[str, ...] = ("IXI002-Guys-0828", "IXI012-HH-1211")) -> Path:
    for sid in ids:
        for mod in ("T1", "T2", "PD"):
            save(root / f"{sid}-{mod}.nii.gz", phantom(mod.lower()))
    (root / "IXI002-Guys-0828-MRA.nii.gz").write_bytes(b"not read")
    (root / "README.txt").write_text("ignored")
    return root


def make_brats2020(root: Path, n: int = 2) -> Path:
    for i in range(1, n + 1):
        sid = f"BraTS20_Training_{i:03d}"
        for mod in ("t1", "t1ce", "t2", "flair"):
            save(root / sid / f"{sid}_{mod}.nii.gz", phantom(mod))
        seg = np.zeros(SHAPE, np.uint8)
        seg[10:13, 10:13, 4:6] = 4
        save(root / sid / f"{sid}_seg.nii.gz", seg)
    return root


def make_brats2023(root: Path, n: int = 2) -> Path:
    names = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"}
    for i in range(n):
        sid = f"BraTS-GLI-{i:05d}-000"
        for suffix, mod in names.items():
            save(root / sid / f"{sid}-{suffix}.nii.gz", phantom(mod))
        save(root / sid / f"{sid}-seg.nii.gz", np.zeros(SHAPE, np.uint8))
    return root


def make_generic(root: Path, n: int = 2, mask: bool = False) -> Path:
    for i in range(n):
        folder = root / f"sub-{i:03d}"
        for mod in ("t1", "t2"):
            save(folder / f"{mod}.nii.gz", phantom(mod))
        save(folder / "seg.nii.gz", (phantom("t1") > 0).astype(np.uint8) * 3)
        if mask:
            save(folder / "mask.nii.gz", (phantom("t1") > 0).astype(np.uint8))
        (folder / "params.json").write_text("{}")
    return root


# ----------------------------------------------------------------------------- discovery


def test_ixi_discovery_groups_files_by_subject_and_ignores_others(tmp_path: Path) -> None:
    root = make_ixi(tmp_path / "ixi")
    assert readers.detect_layout(root) == "ixi"
    recs = readers.discover_subjects(root)
    assert [r.subject_id for r in recs] == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    assert recs[0].images == {
        "pd": root / "IXI002-Guys-0828-PD.nii.gz",
        "t1": root / "IXI002-Guys-0828-T1.nii.gz",
        "t2": root / "IXI002-Guys-0828-T2.nii.gz",
    }
    assert recs[0].seg is None and recs[0].mask is None and recs[0].layout == "ixi"


@pytest.mark.parametrize("maker", [make_brats2020, make_brats2023])
def test_brats_both_naming_schemes(tmp_path: Path, maker) -> None:  # type: ignore[no-untyped-def]
    root = maker(tmp_path / "brats")
    assert readers.detect_layout(root) == "brats"
    recs = readers.discover_subjects(root)
    assert len(recs) == 2
    assert sorted(recs[0].images) == ["flair", "t1", "t1ce", "t2"]
    assert recs[0].seg is not None and recs[0].seg.name.endswith("seg.nii.gz")
    assert recs[0].seg_is_brain is False  # BraTS seg labels the tumour, not the brain
    sub = readers.load_subject(recs[0])
    assert sub.mask is None and sub.seg is not None and sub.seg.dtype == np.uint8
    np.testing.assert_allclose(sub.images["t1ce"], phantom("t1ce"), atol=1e-6)


def test_generic_layout_with_seg_gives_brain_mask(tmp_path: Path) -> None:
    root = make_generic(tmp_path / "gen")
    assert readers.detect_layout(root) == "generic"
    rec = readers.discover_subjects(root, contrasts=["T1w", "t2"])[0]
    assert rec.subject_id == "sub-000" and sorted(rec.images) == ["t1", "t2"]
    sub = readers.load_subject(rec)
    assert sub.images["t1"].dtype == np.float32 and sub.images["t1"].shape == SHAPE
    np.testing.assert_array_equal(sub.mask, phantom("t1") > 0)
    np.testing.assert_allclose(sub.affine, AFFINE)


def test_load_volume_reorients_to_ras(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS: first axis runs right -> left
    vol = readers.load_volume(save(tmp_path / "v.nii.gz", data, flipped))
    np.testing.assert_array_equal(vol.data, data[::-1])
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    raw = readers.load_volume(tmp_path / "v.nii.gz", reorient=False)
    np.testing.assert_array_equal(raw.data, data)


# ----------------------------------------------------------------------------- grids


def test_ixi_t1_on_another_grid_is_an_error_naming_both_files(tmp_path: Path) -> None:
    root = make_ixi(tmp_path / "ixi", ids=("IXI002-Guys-0828",))
    shifted = AFFINE.copy()
    shifted[0, 3] = 2.0  # T1 one voxel (2 mm) further along x
    save(root / "IXI002-Guys-0828-T1.nii.gz", phantom("t1"), shifted)
    rec = readers.discover_subjects(root)[0]
    with pytest.raises(DataError) as err:
        readers.load_subject(rec)
    msg = str(err.value)
    assert "IXI002-Guys-0828-T1.nii.gz" in msg and "IXI002-Guys-0828-T2.nii.gz" in msg
    assert "--resample" in msg and "\n" not in msg


def test_resample_moves_t1_onto_t2_grid(tmp_path: Path) -> None:
    root = make_ixi(tmp_path / "ixi", ids=("IXI002-Guys-0828",))
    shifted = AFFINE.copy()
    shifted[0, 3] = 2.0
    t1 = phantom("t1")
    save(root / "IXI002-Guys-0828-T1.nii.gz", t1, shifted)
    sub = readers.load_subject(readers.discover_subjects(root)[0], resample=True)
    # T2 voxel i lies where T1 voxel i-1 lies: linear resampling is an exact 1-voxel shift
    expected = np.zeros_like(t1)
    expected[1:] = t1[:-1]
    np.testing.assert_allclose(sub.images["t1"], expected, atol=1e-5)
    np.testing.assert_allclose(sub.images["t2"], phantom("t2"))
    assert sub.resampled == ["t1"]


def test_mismatched_shapes_in_a_subject(tmp_path: Path) -> None:
    root = make_generic(tmp_path / "gen", n=1)
    save(root / "sub-000" / "t2.nii.gz", phantom("t2", (24, 24, 9)))
    with pytest.raises(DataError, match=r"sub-000/t1\.nii\.gz .*sub-000/t2\.nii\.gz"):
        readers.load_subject(readers.discover_subjects(root)[0])
    sub = readers.load_subject(readers.discover_subjects(root)[0], resample=True)
    assert sub.images["t1"].shape == (24, 24, 9) and sub.seg is not None and sub.seg.shape == (24, 24, 9)
    assert set(np.unique(sub.seg)) <= {0, 3}  # nearest neighbour keeps labels


# ----------------------------------------------------------------------------- bad input


def _one_line(exc: pytest.ExceptionInfo[BaseException], *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_unrecognised_layout(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError) as err:
        readers.discover_subjects(tmp_path)
    _one_line(err, str(tmp_path), "--layout")
    with pytest.raises(DataError, match="does not exist"):
        readers.discover_subjects(tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown layout"):
        readers.discover_subjects(tmp_path, layout="hcp")


def test_missing_contrast_names_expected_file(tmp_path: Path) -> None:
    root = make_ixi(tmp_path / "ixi")
    (root / "IXI012-HH-1211-PD.nii.gz").unlink()
    with pytest.raises(DataError) as err:
        readers.discover_subjects(root)
    _one_line(err, "IXI012-HH-1211-PD.nii.gz", "--contrasts")
    assert len(readers.discover_subjects(root, contrasts=["t1", "t2"])) == 2
    root2 = make_brats2023(tmp_path / "b23")
    (root2 / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t2f.nii.gz").unlink()
    with pytest.raises(DataError) as err:
        readers.discover_subjects(root2)
    _one_line(err, "BraTS-GLI-00001-000-t2f.nii.gz")


def test_truncated_gzip_is_a_data_error(tmp_path: Path) -> None:
    root = make_generic(tmp_path / "gen", n=1)
    path = root / "sub-000" / "t2.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    with pytest.raises(DataError) as err:
        readers.load_subject(readers.discover_subjects(root)[0])
    _one_line(err, str(path), "truncated or corrupt")


def test_nan_volume_and_empty_mask(tmp_path: Path) -> None:
    root = make_generic(tmp_path / "gen", n=1, mask=True)
    save(root / "sub-000" / "mask.nii.gz", np.zeros(SHAPE, np.uint8))
    with pytest.raises(DataError) as err:
        readers.load_subject(readers.discover_subjects(root)[0])
    _one_line(err, "mask.nii.gz", "empty")
    save(root / "sub-000" / "t1.nii.gz", np.full(SHAPE, np.nan, np.float32))
    with pytest.raises(DataError) as err:
        readers.load_volume(root / "sub-000" / "t1.nii.gz")
    _one_line(err, "t1.nii.gz", "NaN")


def test_embedded_generator_output_loads_through_generic_reader(tmp_path: Path) -> None:
    from robustmri.data.simulator import SynthConfig
    from robustmri.data.embedded import write_dataset

    root = write_dataset(tmp_path / "emb", 2, SynthConfig(size=16, n_slices=3, contrasts=("t1", "t2"), seed=1))
    assert readers.detect_layout(root) == "generic"
    recs = readers.discover_subjects(root)
    assert [r.subject_id for r in recs] == ["sub-000", "sub-001"]
    assert sorted(recs[0].images) == ["t1", "t2"] and recs[0].seg_is_brain
    sub = readers.load_subject(recs[1])
    raw = nib.load(str(root / "sub-001" / "t2.nii.gz"))
    assert sub.images["t2"].shape == raw.shape == (16, 16, 3)
    np.testing.assert_allclose(sub.images["t2"], raw.get_fdata(), rtol=1e-6)  # RAS already: no flip
    seg = np.asarray(nib.load(str(root / "sub-001" / "seg.nii.gz")).dataobj)
    np.testing.assert_array_equal(sub.mask, seg > 0)


def test_brats_tumour_labels_are_read_as_robustmri_lesion_labels(tmp_path: Path) -> None:
    from robustmri.data.tissues import SEG_LABELS

    root = make_brats2023(tmp_path / "b23", n=1)
    sid = "BraTS-GLI-00000-000"
    seg = np.zeros(SHAPE, np.uint8)
    seg[8:10, 8:10, 4] = 1  # necrotic / non-enhancing core
    seg[10:12, 8:10, 4] = 2  # oedema
    seg[12:14, 8:10, 4] = 3  # enhancing tumour (2023)
    save(root / sid / f"{sid}-seg.nii.gz", seg)
    sub = readers.load_subject(readers.discover_subjects(root)[0])
    core, oedema = SEG_LABELS["core"], SEG_LABELS["oedema"]
    assert (sub.seg[8:10, 8:10, 4] == core).all() and (sub.seg[12:14, 8:10, 4] == core).all()
    assert (sub.seg[10:12, 8:10, 4] == oedema).all() and int((sub.seg > 0).sum()) == 12
    seg[0, 0, 0] = 7
    save(root / sid / f"{sid}-seg.nii.gz", seg)
    with pytest.raises(DataError, match=r"label\(s\) \[7\], which BraTS does not use"):
        readers.load_subject(readers.discover_subjects(root)[0])
