"""External models: a user's own module, from a file outside the repository or as TorchScript,
scored on a suite next to a trained baseline without being trained; wrong shapes, ranges and
files are one-line errors."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from robustmri.bench import load_suite, run_suite
from robustmri.errors import ConfigError, DataError
from robustmri.models.external import ExternalModel, load_external_module

MODEL_FILE = textwrap.dedent('''
    import torch
    from torch import nn


    class SmallNet(nn.Module):
        """(B, 1, H, W) in [-1, 1] -> (B, 1, H, W) in [-1, 1]: a residual conv net, seeded."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x + 0.1 * self.b(torch.relu(self.a(x))))


    class Frozen(nn.Module):
        """The same network run without gradients (what an export without autograd looks like)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = build()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self.net(x)


    def build() -> nn.Module:
        torch.manual_seed(0)
        return SmallNet()


    def frozen() -> nn.Module:
        return Frozen()


    def wrong_shape() -> nn.Module:
        return nn.Conv2d(1, 2, 3, padding=1)


    class Bytes(nn.Module):
        """Returns 0..255 intensities, as an 8-bit export would."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 255.0


    def bytes_out() -> nn.Module:
        return Bytes()
''')

SUITE = """
name = "external-test"
directions = ["t1->t2"]
seeds = [0]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64

[train]
steps = 10
batch_size = 2

[[models]]
name = "pix2pix"

[[models]]
external = "{model_dir}/mynet.py:build"
label = "mynet"
io_range = "symmetric"

[[models]]
external = "mynet.pt"
label = "mynet_ts"
io_range = "symmetric"

[[models]]
external = "{model_dir}/mynet.py:frozen"
label = "frozen"
io_range = "symmetric"

[perturbations]
names = ["gaussian_noise"]
severities = [3]

[attacks]
names = ["fgsm_linf", "square_linf"]
severities = [3]
budget = {{ square_linf = {{ queries = 20 }} }}

[eval]
batch_size = 8
"""

METRICS = ["psnr", "ssim", "mae", "nmse", "stability_psnr", "stability_ssim"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A folder outside the repository holding the model's code and its TorchScript export."""
    d = tmp_path_factory.mktemp("user_models")
    (d / "mynet.py").write_text(MODEL_FILE)
    module = load_external_module(f"{d}/mynet.py:build")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13 but still what users export
        torch.jit.script(module).save(str(d / "mynet.pt"))
    return d


@pytest.fixture(scope="module")
def bench(tmp_path_factory, model_dir, cache_dir) -> Path:
    root = tmp_path_factory.mktemp("external_bench")
    (root / "suite.toml").write_text(SUITE.format(model_dir=model_dir))
    (root / "mynet.pt").write_bytes((model_dir / "mynet.pt").read_bytes())  # relative to the suite file
    return run_suite(load_suite(root / "suite.toml"), root / "out", cache=cache_dir, progress=False)


def _rows(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    keep = ["direction", "perturbation", "severity", "subject", "slice"]
    return frame[frame["model"] == label][keep + METRICS].reset_index(drop=True)


def test_a_file_model_and_its_torchscript_export_score_equal_next_to_pix2pix(bench) -> None:
    frame = pd.read_csv(bench / "results.csv", dtype={"subject": str})
    assert set(frame["model"]) == {"pix2pix", "mynet", "mynet_ts", "frozen"}
    mine, scripted = _rows(frame, "mynet"), _rows(frame, "mynet_ts")
    assert len(mine) > 0 and set(mine["perturbation"]) == {"clean", "gaussian_noise", "fgsm_linf", "square_linf"}
    pd.testing.assert_frame_equal(mine, scripted, check_exact=False, rtol=1e-6, atol=1e-6)
    # the attack does damage through the external model's gradients (more than the noise-free input)
    clean = mine[mine["perturbation"] == "clean"]["psnr"].mean()
    assert mine[mine["perturbation"] == "fgsm_linf"]["psnr"].mean() < clean - 0.1
    # never trained: no run folder, no checkpoint
    assert not any((bench / "runs").glob("mynet*"))


def test_a_module_without_gradients_gets_black_box_attacks_only_and_the_report_says_so(bench) -> None:
    from robustmri.report.build import external_notes

    frame = pd.read_csv(bench / "results.csv", dtype={"subject": str})
    frozen = frame[frame["model"] == "frozen"]
    assert set(frozen["perturbation"]) == {"clean", "gaussian_noise", "square_linf"}
    # without gradients it is the same network: equal numbers wherever it was scored
    mine = _rows(frame, "mynet")
    pd.testing.assert_frame_equal(_rows(frame, "frozen"), mine[mine["perturbation"] != "fgsm_linf"].reset_index(drop=True))
    info = json.loads((bench / "external.json").read_text())
    assert info["frozen"]["gradients"] is False and info["frozen"]["skipped_attacks"] == ["fgsm_linf"]
    assert info["mynet"]["gradients"] is True and info["mynet"]["parameters"] == 8 * 9 + 8 + 8 * 9 + 1
    notes = external_notes(bench / "external.json")
    assert any("frozen" in n and "fgsm_linf were not run" in n for n in notes)


def test_a_finished_run_plans_nothing_more_not_even_the_white_box_cells_of_a_model_without_gradients(bench) -> None:
    """The white-box attacks a gradient-free external model skips are never written: a re-run (or
    its dry run) reads the recorded gradients and plans no task for them."""
    from robustmri.bench.tasks import plan_tasks

    suite = load_suite(bench.parent / "suite.toml")
    assert plan_tasks(suite, bench) == []


def test_the_python_api_scores_a_module_object_like_the_suite_does(bench, model_dir, cache_dir, tmp_path) -> None:
    import robustmri

    module = load_external_module(f"{model_dir}/mynet.py:build")
    frame = robustmri.benchmark(module, out=tmp_path / "api", suite=bench.parent / "suite.toml", label="mynet",
                                io_range="symmetric", cache=cache_dir, report=False)
    assert set(frame["model"]) == {"mynet", "lookup"}  # floors=True: the no-learning floor beside it
    suite_frame = pd.read_csv(bench / "results.csv", dtype={"subject": str})
    pd.testing.assert_frame_equal(_rows(frame, "mynet"), _rows(suite_frame, "mynet"))


def test_changed_weights_are_not_mixed_with_cached_cells(bench, model_dir, cache_dir, tmp_path) -> None:
    import shutil

    import robustmri

    work = tmp_path / "out"
    shutil.copytree(bench, work)
    module = load_external_module(f"{model_dir}/mynet.py:build")
    with torch.no_grad():
        module.a.bias.add_(0.01)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="a different train"):
        robustmri.benchmark(module, out=work, suite=bench.parent / "suite.toml", label="mynet", io_range="symmetric",
                            baselines=False, cache=cache_dir, report=False)


@pytest.mark.parametrize(
    ("entry", "io_range", "error", "match"),
    [
        ("mynet.py:wrong_shape", "unit", ConfigError, r"returned shape \(2, 2, 16, 16\).*expected \(2, 1, 16, 16\)"),
        ("mynet.py:bytes_out", "unit", ConfigError, r"in \[255, 255\] on clean test slices, outside its io_range 'unit'"),
        ("mynet.py:bytes_out", "symmetric", ConfigError, r"outside its io_range 'symmetric'"),
        ("mynet.py:nothing", "unit", ConfigError, "has no callable 'nothing'"),
        ("missing.py:build", "unit", DataError, "does not exist"),
        ("not_a_module_anywhere:build", "unit", ConfigError, "importing 'not_a_module_anywhere' failed"),
        ("pickled.pt", "unit", DataError, "does not unpickle"),
        ("absent.pt", "unit", DataError, "does not exist"),
    ],
)
def test_bad_external_models_are_one_line_errors(model_dir, entry, io_range, error, match) -> None:
    torch.save(torch.nn.Conv2d(1, 1, 1), model_dir / "pickled.pt")  # a pickle, not TorchScript
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(error, match=match) as info:
        module = load_external_module(entry, base_dir=model_dir, label="bad")
        model = ExternalModel(module, "bad", io_range)
        model.check_range(x * 0.0 + 1.0)  # a bright slice
        model.translate(x)
    assert "\n" not in str(info.value)


def test_the_cli_refuses_a_bad_external_model_in_one_line(model_dir, tmp_path, cache_dir, capsys) -> None:
    from robustmri.cli import main

    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE.format(model_dir=model_dir).replace(":frozen", ":wrong_shape"))
    (tmp_path / "mynet.pt").write_bytes((model_dir / "mynet.pt").read_bytes())
    code = main(["bench", "--suite", str(suite), "--out", str(tmp_path / "o"), "--cache", str(cache_dir), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()  # progress lines of the data preparation, then the error
    assert code == 2 and err[-1].startswith("error: model frozen returned shape") and not any("Traceback" in e for e in err)
    assert not (tmp_path / "o" / "runs").exists()  # refused before pix2pix was trained


def test_suite_entries_for_external_models_are_validated() -> None:
    from robustmri.bench.suite import parse_suite

    base = {"name": "x", "models": [{"name": "pix2pix"}]}
    cases = [
        ({"external": "m.py:b"}, "needs a `label`"),
        ({"external": "m.py:b", "label": "m", "steps": 3}, "do not apply"),
        ({"external": "m.py:b", "label": "m", "io_range": "bytes"}, "io_range"),
        ({"external": "m.py:b", "label": "m", "direction": "t2->pd"}, "not one of the suite's directions"),
    ]
    for entry, match in cases:
        with pytest.raises(ConfigError, match=match):
            parse_suite({**base, "models": [{"name": "pix2pix"}, entry]}, "s.toml")
    with pytest.raises(ConfigError, match="say which one"):
        parse_suite({**base, "directions": ["t1->t2", "t2->t1"], "models": [{"external": "m.py:b", "label": "m"}]})
    # adding the external fields did not change the hash of suites without external models
    reference = json.loads((Path(__file__).parents[1] / "reports" / "reference" / "smoke.json").read_text())
    assert load_suite("smoke").hash == reference["suite_hash"]
