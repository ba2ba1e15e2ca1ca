"""Choosing options on validation subjects: the declared criterion, the choice per method, the
report's Tuning table, against values computed by hand from a synthetic table with known effects."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_analysis import synthetic_results

from robustmri.analysis import subject_means
from robustmri.analysis.tuning import choose, method_of, selection_scores
from robustmri.report import build_report
from robustmri.report import design_tables as D

CLEAN = 28.0 + 0.7 * 4.5  # the synthetic reference's clean PSNR over 10 subjects (dB)
# method@trial -> (clean PSNR offset dB, SSIM offset, degradation scale); corruptions cost scale * 4.5 dB
# on average (gaussian_noise at rate 1 and motion at rate 2, severities 1..5)
MODELS = {"pix2pix": (0.0, 0.0, 1.0), "kd@a": (0.0, 0.0, 1.0), "kd@b": (1.0, 0.0, 1.0), "kd@c": (0.0, 0.0, 0.5),
          "ctl@x": (0.0, 0.0, 1.0), "ctl@y": (0.0, 0.0, 1.0)}
ATTACK_LOSS = {"pix2pix": 2.0, "kd@a": 1.0, "kd@b": 6.0, "kd@c": 1.0, "ctl@x": 2.0, "ctl@y": 2.0}


def tuning_results() -> pd.DataFrame:
    """Synthetic results plus a PGD cell (each model loses ATTACK_LOSS dB) and a random_linf control
    that *gains* 100 dB: were the control counted, it would decide every choice."""
    frame = synthetic_results(10, MODELS, two_seed_model=None)
    clean = frame[frame["perturbation"] == "clean"]
    pgd = clean.assign(perturbation="pgd_linf", family="adversarial", severity=4,
                       psnr=clean["psnr"] - clean["model"].map(ATTACK_LOSS))
    control = clean.assign(perturbation="random_linf", family="adversarial", severity=4, psnr=clean["psnr"] + 100.0)
    return pd.concat([frame, pgd, control], ignore_index=True)


def expected(model: str) -> float:
    off, _, scale = MODELS[model]
    clean = CLEAN + off
    return (clean + (clean - 4.5 * scale) + (clean - ATTACK_LOSS[model])) / 3


def test_method_of_splits_the_last_at() -> None:
    assert method_of("kd_attack:full@eps0.06-kd3") == ("kd_attack:full", "eps0.06-kd3")
    assert method_of("lookup") == ("lookup", "")
    assert method_of("@odd") == ("@odd", "")


def test_the_criterion_weighs_clean_corruptions_and_attacks_equally_and_skips_the_control() -> None:
    scores = selection_scores(subject_means(tuning_results()), order=list(MODELS)).set_index("model")
    for model in MODELS:
        assert scores.loc[model, "criterion"] == pytest.approx(expected(model)), model
    assert scores.loc["kd@b", "clean"] == pytest.approx(CLEAN + 1.0)
    assert scores.loc["kd@c", "corruptions"] == pytest.approx(CLEAN - 2.25)
    assert scores.loc["kd@b", "attacks"] == pytest.approx(CLEAN + 1.0 - 6.0)  # the +100 dB control is not counted
    assert (scores["n_subjects"] == 10).all()
    assert list(scores.index) == list(MODELS)  # the suite's order


def test_each_method_chooses_its_best_trial_and_ties_go_to_the_first() -> None:
    chosen = choose(selection_scores(subject_means(tuning_results()), order=list(MODELS))).set_index("method")
    assert set(chosen.index) == {"kd", "ctl"}  # pix2pix has one configuration: nothing to choose
    # kd@b is 1 dB better clean but loses 6 dB to the attack; kd@c degrades half as fast
    assert chosen.loc["kd", "model"] == "kd@c"
    assert chosen.loc["kd", "margin"] == pytest.approx(expected("kd@c") - expected("kd@a"))
    assert chosen.loc["ctl", "model"] == "ctl@x" and chosen.loc["ctl", "margin"] == pytest.approx(0.0)


def test_the_tuning_table_bolds_only_the_chosen_criterion() -> None:
    table = D.tuning_table(selection_scores(subject_means(tuning_results()), order=list(MODELS)))
    assert table is not None and [r for _, r in table.rows] == ["a", "b", "c", "x", "y"]
    bold = {(g, r) for (g, r, k), c in table.cells.items() if c.bold}
    assert bold == {("kd", "c"), ("ctl", "x")}
    assert all(k == "criterion" for (g, r, k), c in table.cells.items() if c.bold)
    assert D.tuning_table(selection_scores(subject_means(synthetic_results(3, two_seed_model=None)))) is None


def test_the_report_of_a_tuning_run_shows_the_choice(tmp_path: Path) -> None:
    tuning_results().to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"reference_model": "pix2pix", "suite": "tune",
                                                        "suite_definition": {"eval_split": "val"}}))
    page = build_report(tmp_path).read_text(encoding="utf-8")
    assert ">Tuning</h2>" in page and "VALIDATION subjects" in page
    rows = pd.read_csv(tmp_path / "report" / "tuning.csv").set_index("model")
    assert rows["chosen"].to_dict() == {"pix2pix": False, "kd@a": False, "kd@b": False, "kd@c": True,
                                        "ctl@x": True, "ctl@y": False}
    assert (tmp_path / "report" / "tables" / "tuning.md").read_text().count("**") == 6  # the title and two bold values
