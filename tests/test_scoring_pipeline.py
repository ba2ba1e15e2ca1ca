"""One scoring loop and one protocol end to end: bench and `robustmri eval` agree, predictions can
be saved and re-scored with a peer's own formula, and data normalised otherwise than the protocol
says are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustmri.bench import load_suite, run_suite
from robustmri.bench.store import SampleKey
from robustmri.cli import main
from robustmri.errors import ConfigError

SUITE = """
name = "pipeline-test"
directions = ["t1->t2"]
seeds = [0]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]

[protocol]
name = "PROTOCOL"

[train]
steps = 6
batch_size = 2

[[models]]
name = "MODEL"
size = "tiny"

[perturbations]
names = []

[eval]
batch_size = 8
seed = 3
"""


def _bench(root: Path, cache: Path, model: str, protocol: str) -> Path:
    path = root / f"{model}-{protocol}.toml"
    path.write_text(SUITE.replace("MODEL", model).replace("PROTOCOL", protocol))
    return run_suite(load_suite(path), root / f"out-{model}-{protocol}", cache=cache, progress=False)


def test_bench_and_eval_give_the_same_clean_scores_for_a_stochastic_model(tmp_path, cache_dir, capsys):
    out = _bench(tmp_path, cache_dir, "diffusion", "robustmri")
    bench = pd.read_csv(out / "results.csv", dtype={"subject": str})
    run = out / "runs" / "diffusion__t1_to_t2__s0"
    args = ["eval", str(run), "--data", "embedded:4", "--cache", str(cache_dir), "--batch-size", "8", "--seed", "3"]
    # the eval command prepares embedded:4 with the default split; point it at the suite's prepared folder
    prepared = next(p for p in cache_dir.iterdir() if p.name.startswith("prepared-") and "split2-0-2" in p.name)
    args[3] = str(prepared)
    assert main(args) == 0
    evald = pd.read_csv(run / "eval-test-robustmri.csv", dtype={"subject": str})
    pd.testing.assert_frame_equal(
        evald[["subject", "slice", "psnr", "ssim"]].reset_index(drop=True),
        bench[["subject", "slice", "psnr", "ssim"]].reset_index(drop=True), rtol=1e-5,
    )
    # another seed draws other noise: the match above is not a coincidence of a deterministic model
    assert main([*args[:-1], "4"]) == 0
    other = pd.read_csv(run / "eval-test-robustmri.csv", dtype={"subject": str})
    assert not np.allclose(other["psnr"], bench["psnr"])


def test_saved_predictions_rescore_with_the_peers_formula(tmp_path, cache_dir, capsys):
    """A suite naming the Reg-GAN preset scores [0, 1] model outputs mapped to [-1, 1]: the saved
    predictions, re-scored with Reg-GAN's own PSNR code on its representation, give the bench's
    numbers."""
    out = _bench(tmp_path, cache_dir, "pix2pix", "reggan")
    bench = pd.read_csv(out / "results.csv", dtype={"subject": str})
    assert bench["protocol"].iloc[0].startswith("reggan-")
    prepared = next(p for p in cache_dir.iterdir() if "norm-minmax" in p.name)  # the preset's volume normalisation
    run = out / "runs" / "pix2pix__t1_to_t2__s0"
    npz = tmp_path / "pred.npz"
    assert main(["eval", str(run), "--data", str(prepared), "--protocol", "reggan", "--batch-size", "8",
                 "--seed", "3", "--save-predictions", str(npz)]) == 0
    z = np.load(npz)
    assert {"pred", "target", "source", "mask", "subject", "slice"} <= set(z.files)
    assert z["pred"].ndim == 3 and z["pred"].shape == z["target"].shape == z["mask"].shape
    assert 0.0 <= z["pred"].min() and z["pred"].max() <= 1.0
    fake, real = 2.0 * z["pred"].astype(np.float64) - 1, 2.0 * z["target"].astype(np.float64) - 1
    psnr = []
    for f, r in zip(fake, real):  # Kid-Liet/Reg-GAN CycTrainer.PSNR restated
        fg = np.where(r != -1)
        mse = np.mean(((f[fg] + 1) / 2.0 - (r[fg] + 1) / 2.0) ** 2)
        psnr.append(100.0 if mse < 1.0e-10 else 20 * np.log10(1.0 / np.sqrt(mse)))
    np.testing.assert_allclose(psnr, bench["psnr"].to_numpy(), atol=2e-3)
    evald = pd.read_csv(run / "eval-test-reggan.csv", dtype={"subject": str})
    assert list(evald["subject"]) == list(z["subject"]) and list(evald["slice"]) == list(z["slice"])


def test_prepared_folder_with_another_normalisation_is_refused(tmp_path, cache_dir, capsys):
    from robustmri.data.simulator import SynthConfig
    from robustmri.data.embedded import write_dataset

    root = tmp_path / "nifti"
    write_dataset(root, 3, SynthConfig(size=64, n_slices=6, seed=0))
    prepared = tmp_path / "prep"
    assert main(["data", "prepare", str(root), "--out", str(prepared), "--size", "64", "--norm", "percentile",
                 "--split", "1,1,1", "--contrasts", "t1,t2"]) == 0
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.replace("MODEL", "pix2pix").replace("PROTOCOL", "resvit")
                     .replace('source = "embedded:4"', f'source = "{prepared}"').replace("split = [2, 0, 2]\n", ""))
    capsys.readouterr()
    assert main(["bench", "--suite", str(suite), "--out", str(tmp_path / "o"), "--cache", str(cache_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--norm percentile" in err[0] and "--norm mean" in err[0] and str(prepared) in err[0]
    with pytest.raises(ConfigError, match="normalised with mean"):
        run_suite(load_suite(suite), tmp_path / "o2", cache=cache_dir, progress=False)


def test_sample_keys_round_trip():
    for key in (SampleKey("output", "kd_attack:full", "pgd_linf", 4), SampleKey("input", None, "motion", 3),
                SampleKey("input", "pix2pix", "square_linf", 2)):
        assert SampleKey.parse(key.encode()) == key
    assert SampleKey.parse("source") is None and SampleKey.parse("output|m|x|notanint") is None


def test_builtin_suites_ship_inside_the_package():
    from importlib.resources import files

    from robustmri.bench.suite import builtin_suites

    assert "smoke" in builtin_suites()
    assert (files("robustmri.suites") / "smoke.toml").is_file()
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "suites/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["robustmri"]
    assert json.dumps(load_suite("smoke").to_dict())  # loads by name, from the package


def test_cached_data_are_keyed_by_the_data_code(monkeypatch, tmp_path):
    """A change of the code that simulates or prepares data must not reuse data cached by the old
    code (the drift check's evaluation layer would miss it on a machine with a warm cache)."""
    from robustmri.data import cache
    from robustmri.data.resolve import _embedded_root

    before = cache.cache_key([], {"size": 64})
    old_root = _embedded_root(1, 32, 0, tmp_path, False, {"n_slices": 2})
    assert len(cache.data_code_fingerprint()) == 16
    monkeypatch.setattr(cache, "data_code_fingerprint", lambda: "0" * 16)
    assert cache.cache_key([], {"size": 64}) != before
    new_root = _embedded_root(1, 32, 0, tmp_path, False, {"n_slices": 2})
    assert new_root != old_root and (new_root / "dataset.json").is_file()
