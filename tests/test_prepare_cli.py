"""`robustmri data prepare` and prepare_dataset: end to end on tiny fake IXI / BraTS / generic trees,
cache reuse and invalidation, atomicity after failures, one-line CLI errors, the torch Dataset."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from robustmri.cli import main
from robustmri.data import readers
from robustmri.data.dataset import PairedSlices
from robustmri.data.normalize import normalize_volume
from robustmri.data.prepare import prepare_dataset
from robustmri.data.slices import fit_square, to_stack

SHAPE = (24, 24, 10)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
LEVEL = {"t1": 0.8, "t2": 0.5, "pd": 0.6, "t1ce": 0.9, "flair": 0.7}
IXI_IDS = ("IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212", "IXI014-HH-1236")


def phantom(contrast: str = "t1", shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    c = [(n - 1) / 2 for n in shape]
    inside = ((x - c[0]) / 9) ** 2 + ((y - c[1]) / 9) ** 2 + ((z - c[2]) / 4.5) ** 2 <= 1
    return np.where(inside, LEVEL[contrast] + 0.01 * x, 0.0).astype(np.float32)


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def make_ixi(root: Path, ids: tuple[str, ...] = IXI_IDS) -> Path:
    for sid in ids:
        for mod in ("T1", "T2", "PD"):
            save(root / f"{sid}-{mod}.nii.gz", phantom(mod.lower()))
    return root


def make_brats(root: Path, new_names: bool, n: int = 2) -> Path:
    for i in range(n):
        sid = f"BraTS-GLI-{i:05d}-000" if new_names else f"BraTS20_Training_{i + 1:03d}"
        sep = "-" if new_names else "_"
        mods = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"} if new_names else {
            m: m for m in ("t1", "t1ce", "t2", "flair")
        }
        for suffix, mod in mods.items():
            save(root / sid / f"{sid}{sep}{suffix}.nii.gz", phantom(mod))
        seg = np.zeros(SHAPE, np.uint8)
        seg[10:14, 10:14, 3:7] = 2
        save(root / sid / f"{sid}{sep}seg.nii.gz", seg)
    return root


def make_generic(root: Path, n: int = 3, scales: tuple[float, ...] | None = None) -> Path:
    for i in range(n):
        s = 1.0 if scales is None else scales[i]
        for mod in ("t1", "t2"):
            save(root / f"sub-{i:03d}" / f"{mod}.nii.gz", s * phantom(mod))
    return root


def entries(out: Path) -> tuple[list[str], list[str]]:
    """(complete entries, temporary / partial folders) in a cache folder."""
    names = sorted(p.name for p in out.iterdir()) if out.exists() else []
    return [n for n in names if n.startswith("slices-")], [n for n in names if n.startswith(".")]


def error_lines(err: str) -> list[str]:
    """stderr without blank lines and without the progress lines (``prepare: 1/3 (33%) ...``)."""
    return [line for line in err.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]


PROGRESS_LINE = re.compile(r"^[\w ]+: \d+(/\d+ \(\d+%\))? [\d.]+ s")


# ----------------------------------------------------------------------------- end to end


def test_prepare_ixi_cli_summary_split_and_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = make_ixi(tmp_path / "ixi"), tmp_path / "cache"
    args = ["data", "prepare", str(root), "--out", str(out), "--size", "16", "--slices", "central:4"]
    assert main([*args, "--split", "2,1,1", "--seed", "0"]) == 0
    stdout = capsys.readouterr().out
    assert "4 subjects; contrasts pd, t1, t2" in stdout
    assert "subjects: train 2, val 1, test 1" in stdout
    assert "slices:   train 8, val 4, test 4 (total 16)" in stdout
    assert "slice shape 1x16x16" in stdout and "intensity: pd [0, " in stdout

    manifest = json.loads((out / "split.json").read_text())
    assert manifest["seed"] == 0 and sorted(manifest["train"] + manifest["val"] + manifest["test"]) == list(IXI_IDS)

    ds = PairedSlices(out, "train", source="t1", target="T2w")
    assert len(ds) == 8
    src, tgt, mask, subject = ds[0]
    assert src.shape == tgt.shape == mask.shape == (1, 16, 16)
    assert src.dtype == torch.float32 and mask.dtype == torch.bool
    assert ds.subjects[subject] in manifest["train"]
    s, t, m, subj = ds.tensors()
    assert s.shape == (8, 1, 16, 16) and subj.shape == (8,)
    assert {ds.subjects[i] for i in subj.tolist()} == set(manifest["train"])
    # no mask file in IXI: threshold rule = the phantom's ellipsoid; central 4 of 10 = slices 3..6;
    # percentile normalisation on the 3-D volume, then pad (none needed) and resize 24 -> 16
    brain = phantom("t1") > 0
    np.testing.assert_array_equal(m[:4, 0].numpy(), fit_square(to_stack(brain, 2)[3:7], 16, label=True))
    norm = normalize_volume(phantom("t1"), brain, "percentile")
    np.testing.assert_allclose(s[:4, 0].numpy(), fit_square(to_stack(norm, 2)[3:7], 16), atol=1e-6)
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    assert torch.equal(s[:4], s[4:])  # both train subjects have identical phantoms
    test = PairedSlices(out, "test", "t1", "t2")
    assert set(test.subject_index.tolist()).isdisjoint(set(ds.subject_index.tolist()))


@pytest.mark.parametrize("new_names", [False, True], ids=["brats2020", "brats2023"])
def test_prepare_brats_brain_fraction_selection(tmp_path: Path, new_names: bool) -> None:
    root = make_brats(tmp_path / "brats", new_names)
    res = prepare_dataset(
        root, tmp_path / "cache", contrasts=["t1n", "t2w"], size=24, slices="brain:0.2", split=(1, 1, 0)
    )
    brain = phantom("t1") > 0
    per_slice = brain.reshape(-1, SHAPE[2]).mean(axis=0)
    expected = int((per_slice >= 0.2).sum())
    assert 0 < expected < SHAPE[2]
    assert set(res.meta["slices_per_subject"].values()) == {expected}
    assert res.meta["contrasts"] == ["t1", "t2"] and "seg" in res.meta["arrays"]
    seg = np.load(res.entry / "seg.npy", mmap_mode="r")
    assert set(np.unique(seg)) == {0, 4}  # BraTS oedema (2) read as robustmri's oedema (4), nearest; not a brain mask
    assert res.slices_per_split() == {"train": expected, "val": expected, "test": 0, "unused": 0}


def test_mean_normalisation_is_dataset_scaled(tmp_path: Path) -> None:
    root = make_generic(tmp_path / "gen", n=2, scales=(1.0, 2.0))
    res = prepare_dataset(root, tmp_path / "cache", size=24, slices="all", norm="mean", split=(1, 1, 0))
    t1 = np.load(res.entry / "image_t1.npy", mmap_mode="r")
    subj = np.load(res.entry / "subject.npy")
    # v / mean(brain) removes the per-subject gain, then one dataset max brings values to <= 1
    np.testing.assert_allclose(t1[subj == 0], t1[subj == 1], rtol=1e-5)
    assert float(t1.max()) == pytest.approx(1.0) and res.meta["intensity"]["t1"][1] == pytest.approx(1.0)
    assert res.meta["mean_scale"]["t1"] > 1.0


# ----------------------------------------------------------------------------- cache


def test_cache_hit_skips_reading_and_touching_an_input_rebuilds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = make_generic(tmp_path / "gen"), tmp_path / "cache"
    reads: list[Path] = []
    original = readers.load_volume

    def counting(path, reorient=True):  # type: ignore[no-untyped-def]
        reads.append(Path(path))
        return original(path, reorient=reorient)

    monkeypatch.setattr(readers, "load_volume", counting)
    first = prepare_dataset(root, out, size=16, slices="central:4")
    assert not first.cache_hit and len(reads) == 6  # 3 subjects x (t1, t2)
    before = (first.entry / "image_t1.npy").stat().st_mtime_ns

    second = prepare_dataset(root, out, size=16, slices="central:4", seed=3)  # the seed is not in the key
    assert second.cache_hit and second.entry == first.entry and len(reads) == 6
    assert (second.entry / "image_t1.npy").stat().st_mtime_ns == before

    target = root / "sub-001" / "t2.nii.gz"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = prepare_dataset(root, out, size=16, slices="central:4")
    assert not third.cache_hit and third.entry != first.entry and len(reads) == 12

    fourth = prepare_dataset(root, out, size=8, slices="central:4")  # an option changed
    assert not fourth.cache_hit and len(reads) == 18
    assert json.loads((out / "prepared.json").read_text())["entry"] == fourth.entry.name
    assert len(entries(out)[0]) == 3 and entries(out)[1] == []


def test_failed_build_leaves_no_entry_and_a_later_run_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, out = make_generic(tmp_path / "gen"), tmp_path / "cache"
    bad = root / "sub-002" / "t2.nii.gz"
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated after subjects 0 and 1 were prepared
    args = ["data", "prepare", str(root), "--out", str(out), "--size", "16"]
    assert main(args) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0]
    assert entries(out) == ([], [])
    assert not (out / "prepared.json").exists()

    bad.write_bytes(good)
    assert main(args) == 0
    complete, partial = entries(out)
    assert len(complete) == 1 and partial == []
    assert len(PairedSlices(out, "train", "t1", "t2")) > 0


def test_split_file_is_reused_as_source_of_truth(tmp_path: Path) -> None:
    root = make_generic(tmp_path / "gen", n=6)
    first = prepare_dataset(root, tmp_path / "a", size=8, slices="central:2", split=(4, 1, 1), seed=0)
    kept = shutil.copy(first.split_path, tmp_path / "kept.json")
    other = prepare_dataset(root, tmp_path / "b", size=8, slices="central:2", split=(4, 1, 1), seed=1)
    assert other.manifest["train"] != first.manifest["train"]
    reused = prepare_dataset(root, tmp_path / "b", size=8, slices="central:2", seed=1, split_file=kept)
    assert {k: reused.manifest[k] for k in ("train", "val", "test")} == {
        k: first.manifest[k] for k in ("train", "val", "test")
    }


def test_resample_flag_prepares_misregistered_ixi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_ixi(tmp_path / "ixi", IXI_IDS[:2])
    shifted = AFFINE.copy()
    shifted[:3, 3] = [2.0, -2.0, 0.0]
    save(root / f"{IXI_IDS[0]}-T1.nii.gz", phantom("t1"), shifted)
    args = ["data", "prepare", str(root), "--out", str(tmp_path / "c"), "--size", "16", "--split", "1,1,0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{IXI_IDS[0]}-T1.nii.gz" in err and f"{IXI_IDS[0]}-T2.nii.gz" in err
    assert main([*args, "--resample"]) == 0
    assert "resampled onto the t2 grid: 1 subject(s)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- CLI errors


def _corrupt(root: Path) -> str:
    path = root / "sub-001" / "t1.nii.gz"
    path.write_bytes(gzip.compress(b"\x00" * 50)[:30])
    return str(path)


def _missing(root: Path) -> str:
    (root / "sub-001" / "t2.nii.gz").unlink()
    return str(root / "sub-001" / "t2.nii.gz")


def _shape(root: Path) -> str:
    save(root / "sub-000" / "t1.nii.gz", phantom("t1", (24, 24, 8)))
    return str(root / "sub-000" / "t1.nii.gz")


def _nan(root: Path) -> str:
    save(root / "sub-002" / "t2.nii.gz", np.full(SHAPE, np.nan, np.float32))
    return str(root / "sub-002" / "t2.nii.gz")


def _empty_mask(root: Path) -> str:
    save(root / "sub-000" / "mask.nii.gz", np.zeros(SHAPE, np.uint8))
    return str(root / "sub-000" / "mask.nii.gz")


def _no_layout(root: Path) -> str:
    shutil.rmtree(root)
    root.mkdir()
    (root / "readme.txt").write_text("x")
    return str(root)


@pytest.mark.parametrize("spoil", [_corrupt, _missing, _shape, _nan, _empty_mask, _no_layout])
def test_bad_inputs_give_one_line_error_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spoil  # type: ignore[no-untyped-def]
) -> None:
    root, out = make_generic(tmp_path / "gen"), tmp_path / "cache"
    name = spoil(root)
    assert main(["data", "prepare", str(root), "--out", str(out), "--size", "16"]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], lines
    assert "Traceback" not in captured.err and captured.out == ""
    assert entries(out)[1] == [] and entries(out)[0] == []


@pytest.mark.parametrize(
    "option, needle",
    [
        (["--norm", "max"], "unknown normalisation 'max'"),
        (["--slices", "middle"], "invalid slice selection 'middle'"),
        (["--split", "50,5,10"], "at most the 3 subjects"),
        (["--layout", "hcp"], "unknown layout 'hcp'"),
        (["--contrasts", "t1,dwi"], "unknown contrast 'dwi'"),
    ],
)
def test_bad_options_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], needle: str
) -> None:
    root = make_generic(tmp_path / "gen")
    assert main(["data", "prepare", str(root), "--out", str(tmp_path / "c"), *option]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and needle in lines[0], lines


def test_prepared_folder_keeps_its_size_and_contrasts(tmp_path, capsys):
    from robustmri.data.resolve import resolve_data
    from robustmri.errors import ConfigError, DataError

    out = tmp_path / "prep"
    prepare_dataset(make_generic(tmp_path / "raw", n=3), out, size=16, slices="central:4", split=(1, 1, 1))
    spec = resolve_data(str(out), None, ("t1", "t2"), cache=tmp_path / "c")  # None: the folder's own size
    assert spec.prepared == out and "16x16" in spec.description
    assert resolve_data(str(out), 16, ("t2", "t1"), cache=tmp_path / "c").prepared == out
    with pytest.raises(ConfigError, match=r"prepared at 16x16, not 32x32.*image size 16"):
        resolve_data(str(out), 32, ("t1", "t2"), cache=tmp_path / "c")
    with pytest.raises(DataError, match=r"holds contrasts t1, t2 but not flair"):
        resolve_data(str(out), 16, ("t1", "flair"), cache=tmp_path / "c")
    assert not (tmp_path / "c").exists()  # nothing was prepared into the cache
    # the CLI: a wrong --image-size is one line and exit 2, before any training
    rc = main(["train", "--model", "pix2pix", "--data", str(out), "--image-size", "32", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "prepared at 16x16" in err
    assert not (tmp_path / "r").exists()
