"""`robustmri translate`: volumes in, volumes out with the input's shape, affine and header, and the
preparation the model was trained with (the same slices as `data prepare` makes)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from robustmri.cli import main

IDENTITY = textwrap.dedent('''
    import torch


    class Identity(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x


    def build() -> torch.nn.Module:
        return Identity()
''')


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    """Two embedded subjects written as NIfTI (64 x 64 in-plane)."""
    from robustmri.data.simulator import SynthConfig
    from robustmri.data.embedded import write_dataset

    root = tmp_path_factory.mktemp("translate") / "raw"
    return write_dataset(root, 2, SynthConfig(size=64, n_slices=12, seed=0))


@pytest.fixture(scope="module")
def identity(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("identity_model")
    (d / "identity.py").write_text(IDENTITY)
    return f"{d}/identity.py:build"


def _normalised(path: Path) -> np.ndarray:
    """The volume as `data prepare` normalises it (percentile, threshold brain mask), in the file's voxel order."""
    from robustmri.data.brainmask import threshold_mask
    from robustmri.data.normalize import normalize_volume

    data = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    return normalize_volume(data, threshold_mask([data]), "percentile")


def test_identity_round_trip_on_embedded_nifti(embedded, identity, tmp_path) -> None:
    src = embedded / "sub-000" / "t1.nii.gz"
    out = tmp_path / "t2_synth.nii.gz"
    code = main(["translate", "-i", str(src), "-o", str(out), "--external", identity, "--size", "64", "--device", "cpu"])
    assert code == 0
    a, b = nib.load(str(src)), nib.load(str(out))
    assert b.shape == a.shape and np.array_equal(b.affine, a.affine)
    assert b.header.get_data_dtype() == np.float32
    # 64 px slices on a 64 px grid: no resizing, so the identity returns the normalised input exactly
    np.testing.assert_array_equal(np.asarray(b.dataobj), _normalised(src))


def test_an_oblique_reordered_volume_keeps_its_grid(embedded, identity, tmp_path) -> None:
    """A volume in LPI order with a 20 degree oblique affine and non-square 1.2 x 0.9 x 3 mm voxels."""
    src = nib.load(str(embedded / "sub-001" / "t2.nii.gz"))
    data = np.asarray(src.get_fdata(dtype=np.float32))[::-1, ::-1, ::-1].copy()  # voxel order L->R, P->A, I->S reversed
    t = np.deg2rad(20.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-1.2, -0.9, -3.0])
    affine[:3, 3] = [40.0, -12.0, 7.0]
    path = tmp_path / "oblique.nii"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    out = tmp_path / "out"
    assert main(["translate", "-i", str(tmp_path), "-o", str(out), "--external", identity, "--size", "48",
                 "--device", "cpu"]) == 0
    b = nib.load(str(out / "oblique.nii"))
    assert b.shape == data.shape and np.allclose(b.affine, affine)
    # resized 64 -> 48 -> 64 in-plane: close to the normalised input, voxel for voxel, in the file's own order
    err = np.abs(np.asarray(b.dataobj) - _normalised(path))
    assert float(err.mean()) < 0.02 and float(np.corrcoef(np.asarray(b.dataobj).ravel(), _normalised(path).ravel())[0, 1]) > 0.98


def test_a_trained_run_translates_with_the_slices_it_was_trained_on(embedded, tmp_path, cache_dir) -> None:
    """The run records its data preparation; translate cuts a volume into the very slices `data
    prepare` made from it (compared through an identity predictor), and writes the model's output."""
    from robustmri.data.prepare import prepare_dataset, read_pointer
    from robustmri.translate import Preparation, translate_volume

    prepared = tmp_path / "prepared"
    prepare_dataset(embedded, prepared, size=128, contrasts=["t1", "t2"], split=[1, 0, 1], slices="all")
    run = tmp_path / "run"
    assert main(["train", "--model", "pix2pix", "--size", "tiny", "--source", "t1", "--target", "t2", "--steps", "3",
                 "--data", str(prepared), "--out", str(run), "--device", "cpu"]) == 0
    recorded = json.loads((run / "data.json").read_text())
    assert recorded["options"]["norm"] == "percentile" and recorded["options"]["size"] == 128
    prep, found = Preparation.from_run(run, 128, "t1")
    assert found and prep.fit == "pad" and prep.axis == 2

    entry, _ = read_pointer(prepared)
    subject = np.load(entry / "subject.npy")
    slices = np.load(entry / "image_t1.npy")[subject == 0]  # sub-000, every slice
    seen = []

    def record(x: torch.Tensor, first: int) -> torch.Tensor:
        seen.append(x[:, 0].numpy().copy())
        return x

    from robustmri.data.readers import load_volume

    brain = load_volume(embedded / "sub-000" / "seg.nii.gz").data > 0  # the mask `data prepare` used (generic layout)
    translate_volume(record, load_volume(embedded / "sub-000" / "t1.nii.gz").data, prep, batch_size=5, mask=brain)
    np.testing.assert_allclose(np.concatenate(seen), slices, atol=1e-6)

    out = tmp_path / "synth"
    assert main(["translate", "-i", str(embedded / "sub-000" / "t1.nii.gz"), "-o", str(out), "--run", str(run),
                 "--device", "cpu", "--like", str(embedded / "sub-000" / "t2.nii.gz"),
                 "--mask", str(embedded / "sub-000" / "seg.nii.gz")]) == 0
    a, b = nib.load(str(embedded / "sub-000" / "t1.nii.gz")), nib.load(str(out / "t1.nii.gz"))
    assert b.shape == a.shape and np.array_equal(b.affine, a.affine)
    y = np.asarray(b.dataobj)
    t2 = np.asarray(nib.load(str(embedded / "sub-000" / "t2.nii.gz")).dataobj)
    assert np.isfinite(y).all() and 0.2 < float(y.max()) / float(t2.max()) < 2.0  # on the T2 volume's scale


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["-i", "{missing}", "-o", "{tmp}/o"], "does not exist"),
        (["-i", "{tmp}", "-o", "{tmp}/o"], "no .nii"),
        (["-i", "{t1}", "-o", "{tmp}/o"], "either --run"),
        (["-i", "{t1}", "-o", "{tmp}/o", "--run", "{tmp}"], "not a run folder"),
        (["-i", "{t1}", "-o", "{tmp}/o", "--external", "{identity}"], "--size"),
    ],
)
def test_bad_translate_calls_are_one_line_errors(args, match, embedded, identity, tmp_path, capsys) -> None:
    fill = {"missing": str(tmp_path / "nope.nii.gz"), "tmp": str(tmp_path), "identity": identity,
            "t1": str(embedded / "sub-000" / "t1.nii.gz")}
    code = main(["translate", *[a.format(**fill) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and match in err[0], err


def test_translate_picks_its_inputs_by_contrast_pattern_and_content(embedded, identity, tmp_path, capsys) -> None:
    """A subject folder holds t1, t2, pd, flair and a label map: `--contrast t1` translates the T1 alone
    and lists what it skipped; a label map under a neutral name is recognised by its values; nnU-Net
    channels (`case_0000`) and globs select as well."""
    import shutil

    from robustmri.translate import name_contrast, select_inputs

    assert [name_contrast(Path(n)) for n in ("IXI002-Guys-0828-T1.nii.gz", "sub-01_T2w.nii.gz",
                                            "BraTS-GLI-00000-000-t2f.nii.gz", "BraTS-GLI-00000-000-seg.nii.gz",
                                            "case_0001.nii.gz", "oblique.nii")] == ["t1", "t2", "flair", "seg", "0001", None]
    folder = tmp_path / "in"
    shutil.copytree(embedded / "sub-000", folder)
    seg = nib.load(str(folder / "seg.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(seg.dataobj).astype(np.float32), seg.affine), str(folder / "labels.nii.gz"))
    out = tmp_path / "out"
    assert main(["translate", "-i", str(folder), "-o", str(out), "--contrast", "T1w", "--external", identity,
                 "--size", "64", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["t1.nii.gz"]
    assert "skipped seg.nii.gz: a label map" in text and "skipped labels.nii.gz: a label map" in text
    assert "skipped t2.nii.gz: its name states t2, not t1" in text and "skipped 5" in text
    nnunet = tmp_path / "nnunet"
    nnunet.mkdir()
    shutil.copy(folder / "t1.nii.gz", nnunet / "case_0000.nii.gz")
    shutil.copy(folder / "t2.nii.gz", nnunet / "case_0001.nii.gz")
    assert [p.name for p in select_inputs(nnunet, contrast="0000").files] == ["case_0000.nii.gz"]
    assert [p.name for p in select_inputs(nnunet, pattern="*_0001.nii.gz").files] == ["case_0001.nii.gz"]
    assert main(["translate", "-i", str(nnunet), "-o", str(out), "--contrast", "flair", "--external", identity,
                 "--size", "64"]) == 2
    assert "nothing to translate" in capsys.readouterr().err
