"""Leaderboard: one entry per model and direction from every bench, ranked across bench folders
that share protocol, threat model and data, and refused (one line) when they do not."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustmri.errors import ConfigError

SUITE = """
name = "board-test"
directions = ["t1->t2"]
seeds = [0]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64

[[models]]
name = "pix2pix"
steps = 5

[perturbations]
names = ["gaussian_noise", "gaussian_blur"]
severities = [{severity}]

[attacks]
names = ["fgsm_linf"]
severities = [1]

[eval]
batch_size = 8
"""


class Blend(nn.Module):
    """(B, 1, H, W) in [0, 1]: a fixed blend of the input and its blur (more blur: smoother, more robust)."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smooth = nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
        return (1 - self.weight) * x + self.weight * smooth


@pytest.fixture(scope="module")
def boards(tmp_path_factory, cache_dir) -> dict[str, Path]:
    import robustmri

    root = tmp_path_factory.mktemp("board")
    (root / "s3.toml").write_text(SUITE.format(severity=3))
    (root / "s4.toml").write_text(SUITE.format(severity=4))
    out = {}
    for name, weight, suite in (("sharp", 0.0, "s3"), ("smooth", 0.8, "s3"), ("other", 0.5, "s4")):
        robustmri.benchmark(Blend(weight), out=root / name, suite=root / f"{suite}.toml", label=name, cache=cache_dir,
                            report=False)
        out[name] = root / name
    return out


def test_every_bench_writes_one_entry_per_model_and_direction(boards) -> None:
    entry = json.loads((boards["sharp"] / "leaderboard" / "sharp__t1_to_t2.json").read_text())
    assert entry["format"] == "robustmri-leaderboard-entry/1" and entry["label"] == "sharp"
    assert entry["architecture"] == "external Blend (object:sharp)" and entry["parameters"] == 1
    assert entry["protocol"] and entry["threat_model"] and entry["data"].startswith("embedded (4 subjects")
    results = pd.read_csv(boards["sharp"] / "results.csv", dtype={"subject": str})
    results = results[results["model"] == "sharp"]  # the lookup floor (benchmark's floors=True) has its own entry
    clean = results[results["perturbation"] == "clean"].groupby("subject")["psnr"].mean().mean()
    assert entry["scores"]["clean_psnr"] == pytest.approx(clean, abs=1e-3)
    noise = results[results["family"] != "adversarial"]
    corrupted = noise[noise["severity"] > 0].groupby(["perturbation", "subject"])["psnr"].mean().groupby("perturbation").mean().mean()
    assert entry["scores"]["corrupted_psnr"] == pytest.approx(corrupted, abs=1e-3)


def test_the_board_ranks_entries_of_several_folders_by_corrupted_psnr(boards, tmp_path) -> None:
    from robustmri.cli import main

    for suffix in (".md", ".html", ".csv"):
        assert main(["leaderboard", str(boards["sharp"]), str(boards["smooth"]), "--out", str(tmp_path / f"b{suffix}")]) == 0
    frame = pd.read_csv(tmp_path / "b.csv")
    scores = {m: json.loads((boards[m] / "leaderboard" / f"{m}__t1_to_t2.json").read_text())["scores"] for m in ("sharp", "smooth")}
    winner = max(scores, key=lambda m: scores[m]["corrupted_psnr"])
    models = [m for m in frame["model"] if m != "lookup"]
    assert models == [winner, "sharp" if winner == "smooth" else "smooth"]
    # each folder scored the no-learning floor alike (benchmark's floors=True): it is listed once, and ranked
    assert list(frame["model"]).count("lookup") == 1 and sorted(frame["rank"]) == [1, 2, 3]
    md = (tmp_path / "b.md").read_text()
    rank = int(frame.loc[frame["model"] == winner, "rank"].iloc[0])
    assert f"| {rank} | {winner}" in md and "threat model" in md
    assert "<table>" in (tmp_path / "b.html").read_text()


def test_entries_of_another_threat_model_are_refused_in_one_line(boards, tmp_path, capsys) -> None:
    from robustmri.cli import main

    code = main(["leaderboard", str(boards["sharp"]), str(boards["other"]), "--out", str(tmp_path / "b.md")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "threat_model" in err[0] and "other" in err[0]
    assert not (tmp_path / "b.md").exists()


def test_oracles_are_listed_but_not_ranked(boards) -> None:
    from robustmri.leaderboard import Entry, board_frame, read_entries

    entries = read_entries([boards["sharp"], boards["smooth"]])
    oracle = dict(entries[0].data, label="peek", oracle=True)
    oracle["scores"] = {**oracle["scores"], "corrupted_psnr": 99.0}
    frame = board_frame([*entries, Entry(Path("x/leaderboard/peek.json"), oracle)])
    peek = frame[frame["model"] == "peek"].iloc[0]
    assert pd.isna(peek["rank"]) and sorted(frame["rank"].dropna().tolist()) == [1, 2, 3]  # sharp, smooth, lookup
    with pytest.raises(ConfigError, match="protocol"):
        board_frame([entries[0], Entry(Path("y.json"), dict(entries[1].data, protocol="syndiff-v1"))])
