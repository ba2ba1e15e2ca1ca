"""``robustmri perturb list`` and ``robustmri perturb show`` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robustmri.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from robustmri.data.simulator import SynthConfig
    from robustmri.data.embedded import write_dataset

    root = tmp_path_factory.mktemp("perturb_cli") / "ds"
    write_dataset(root, 1, SynthConfig(size=48, n_slices=4, seed=0))
    return root


def test_list_prints_every_perturbation_with_its_table(capsys) -> None:
    from robustmri.perturb import PERTURBATIONS

    assert main(["perturb", "list"]) == 0
    out = capsys.readouterr().out
    for name, cls in PERTURBATIONS.items():
        assert name in out and cls.family in out
    assert "snr=4.7" in out  # gaussian noise severity 5
    assert main(["perturb", "list", "--family", "kspace"]) == 0
    out = capsys.readouterr().out
    assert "ghosting" in out and "gaussian_noise" not in out


def test_show_writes_a_png_grid(dataset: Path, tmp_path: Path, capsys) -> None:
    import matplotlib.image as mpimg

    out = tmp_path / "grid.png"
    assert main(["perturb", "show", "--data", str(dataset), "--out", str(out), "--contrast", "t2", "--slice", "1"]) == 0
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > img.shape[1] > 300  # 11 rows x 6 columns
    assert np.ptp(img[..., :3]) > 0.5  # not blank
    assert "wrote" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left behind


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--data", "{missing}"], "does not exist"),
        (["--data", "{ds}", "--contrast", "dwi"], "dwi.nii.gz does not exist"),
        (["--data", "{ds}", "--slice", "99"], "--slice 99 is out of range"),
        (["--data", "{ds}", "--out-suffix"], "must end in .png"),
        (["--data", "{corrupt}"], "cannot read"),
    ],
)
def test_show_user_errors_are_one_line(dataset: Path, tmp_path: Path, capsys, args, needle) -> None:
    corrupt = tmp_path / "bad"
    (corrupt / "sub-000").mkdir(parents=True)
    (corrupt / "sub-000" / "t1.nii.gz").write_bytes(b"not a nifti")
    out = str(tmp_path / "g.png")
    if "--out-suffix" in args:
        args = [a for a in args if a != "--out-suffix"]
        out = str(tmp_path / "g.jpg")
    argv = [a.format(missing=tmp_path / "nope", ds=dataset, corrupt=corrupt) for a in args]
    assert main(["perturb", "show", *argv, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1
    assert "Traceback" not in err
