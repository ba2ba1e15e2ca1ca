"""Tables (bold, significance marks, formats), figures and the report folder end to end."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis import synthetic_results  # the synthetic results generator (known effects)

from robustmri.analysis import subject_means
from robustmri.cli import main
from robustmri.report import build_report
from robustmri.report import design_tables as D
from robustmri.report import table as Tb
from robustmri.report import tables as T

REF_PSNR = 28.0 + 0.7 * 4.5  # pix2pix clean PSNR averaged over 10 subjects
REF_STD = 0.7 * float(np.std(np.arange(10)))  # population std over subjects


@pytest.fixture(scope="module")
def subjects() -> pd.DataFrame:
    return subject_means(synthetic_results())


def _row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if f" {label} " in line)


# ---------------------------------------------------------------------------- tables


def test_significance_marks_follow_the_thresholds() -> None:
    assert [Tb.significance_mark(p) for p in (0.0099, 0.01, 0.049, 0.05, float("nan"))] == ["**", "*", "*", "", ""]


def test_clean_table_values_bold_and_marks(subjects: pd.DataFrame) -> None:
    table = T.clean_table(subjects, "pix2pix")
    cols = {c.key: c for c in table.columns}
    assert [g for g, _ in table.rows] == ["t1->t2"] * 3 and table.rows[0][1] == "pix2pix"
    ref = table.cell("t1->t2", "pix2pix", cols["psnr"])
    assert ref.mean == pytest.approx(REF_PSNR) and ref.std == pytest.approx(REF_STD) and ref.n == 10
    assert np.isnan(ref.p)  # the reference row is not tested
    best = table.cell("t1->t2", "resvit", cols["psnr"])
    assert best.mean == pytest.approx(REF_PSNR + 1.0) and best.bold
    # 10 distinct positive differences: exact p = 2 / 2**10. Holm runs over the table's family within a
    # direction: 2 models x 3 tested columns = 6 tests; resvit's three equal smallest p's get 6 p -> "*"
    n_tests = sum(np.isfinite(c.p) for (g, _, _), c in table.cells.items() if g == "t1->t2")
    assert n_tests == 6 and best.p == pytest.approx(6 * 2 / 2**10)
    assert not table.cell("t1->t2", "robust", cols["psnr"]).bold
    assert table.cell("t1->t2", "robust", cols["psnr"]).p == 1.0
    # lower MAE is better: resvit (0.045) is bold, not pix2pix (0.050)
    assert table.cell("t1->t2", "resvit", cols["mae"]).bold
    assert not table.cell("t1->t2", "pix2pix", cols["mae"]).bold

    tex = table.to_latex()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\textbf{32.15 $\\pm$ 2.14}$^{*}$" in _row(tex, "resvit")
    assert "\\textbf" not in _row(tex, "pix2pix") and "$^{" not in _row(tex, "pix2pix")
    assert "$^{" not in _row(tex, "robust")
    md = table.to_markdown()
    assert "**32.15 ± 2.14**\\*" in _row(md, "resvit") and "\\*\\*" not in _row(md, "resvit")
    assert "\\*" not in _row(md, "pix2pix")
    html = table.to_html()
    assert "<b>32.15 ± 2.14</b><sup>*</sup>" in html and "Holm-corrected over every test in the table" in table.note


def test_table_csv_is_numeric_and_matches_the_cells(subjects: pd.DataFrame) -> None:
    table = T.clean_table(subjects, "pix2pix")
    back = pd.read_csv(io.StringIO(table.to_csv())).set_index("row")
    assert back.loc["pix2pix", "psnr"] == pytest.approx(REF_PSNR, abs=1e-4)
    assert back.loc["pix2pix", "psnr_std"] == pytest.approx(REF_STD, abs=1e-4)
    assert np.isnan(back.loc["pix2pix", "psnr_p_holm"])
    assert back.loc["resvit", "psnr_p_holm"] == pytest.approx(6 * 2 / 2**10, rel=1e-5)  # Holm over the 6 tests; CSV at 6 digits
    assert (back["psnr_n"] == 10).all()


def test_robustness_table_columns_auc_and_mce(subjects: pd.DataFrame) -> None:
    table = T.robustness_table(subjects, "pix2pix", "psnr")
    keys = [c.key for c in table.columns]
    # families in canonical order (noise before kspace), then the scores
    assert keys == ["clean"] + [f"noise_s{s}" for s in range(1, 6)] + [f"kspace_s{s}" for s in range(1, 6)] + [
        "auc", "mce"]
    cols = {c.key: c for c in table.columns}
    get = lambda model, key: table.cell("t1->t2", model, cols[key])  # noqa: E731
    assert get("pix2pix", "noise_s3").mean == pytest.approx(REF_PSNR - 3.0)
    assert get("robust", "kspace_s5").mean == pytest.approx(REF_PSNR - 5.0) and get("robust", "kspace_s5").bold
    # AUC averaged over perturbations: pix2pix (12.5 + 25) / 2, robust half of it; lower is bold
    assert get("pix2pix", "auc").mean == pytest.approx(18.75)
    assert get("robust", "auc").mean == pytest.approx(9.375) and get("robust", "auc").bold
    assert get("resvit", "auc").mean == pytest.approx(18.75) and not get("resvit", "auc").bold
    assert get("robust", "auc").p < 0.05 and get("resvit", "auc").p > 0.05  # Holm over the whole table
    assert get("pix2pix", "mce").mean == pytest.approx(100.0)
    assert get("robust", "mce").mean == pytest.approx(100 * (0.575 / 0.65 + 0.65 / 0.80) / 2)
    assert get("robust", "mce").bold and np.isnan(get("robust", "mce").p)
    tex = table.to_latex()
    assert "\\multicolumn{5}{c}{noise}" in tex and "\\cmidrule(lr){4-8}" in tex and "\\resizebox" in tex


def test_auc_and_ce_tables(subjects: pd.DataFrame) -> None:
    auc = T.auc_table(subjects, "pix2pix")
    assert [c.key for c in auc.columns] == ["gaussian_noise", "motion", "mean"]
    assert auc.cells[("t1->t2", "robust", "motion")].mean == pytest.approx(12.5)
    ce = T.ce_table(subjects, "pix2pix")
    assert ce.cells[("t1->t2", "resvit", "rel_mce")].mean == pytest.approx(100.0)
    assert ce.cells[("t1->t2", "robust", "rel_mce")].bold


def test_ablation_table_tests_against_g_only() -> None:
    models = {"pix2pix": (0, 0, 1), "kd_attack:g_only": (0, 0, 1), "kd_attack:full": (0.5, 0.005, 0.5)}
    sub = subject_means(synthetic_results(8, models, two_seed_model=None))
    table = D.ablation_table(sub, "pix2pix")
    assert table.baseline == "kd_attack:g_only"
    assert [r for _, r in table.rows] == ["kd_attack:g_only", "kd_attack:full"]
    keys = [c.key for c in table.columns]
    assert keys[:2] == ["clean_psnr", "clean_ssim"] and "motion_s5" in keys and len(keys) == 2 + 10
    full = table.cells[("t1->t2", "kd_attack:full", "motion_s5")]
    assert full.mean - table.cells[("t1->t2", "kd_attack:g_only", "motion_s5")].mean == pytest.approx(5.5)
    # exact p = 2 / 2**8 over 8 subjects; Holm over the table's 12 tests makes it 12 x that: not significant
    n_tests = sum(np.isfinite(c.p) for (g, _, _), c in table.cells.items() if g == "t1->t2")
    assert full.bold and n_tests == 12 and full.p == pytest.approx(12 * 2 / 2**8)
    assert "kd\\_attack:g\\_only" in table.to_latex()
    # without g_only the reference model is the baseline and gets a row
    no_g = sub[sub["model"] != "kd_attack:g_only"]
    table = D.ablation_table(no_g, "pix2pix")
    assert table.baseline == "pix2pix" and [r for _, r in table.rows] == ["pix2pix", "kd_attack:full"]
    assert D.ablation_table(sub[sub["model"] == "pix2pix"], "pix2pix") is None


def test_ties_are_all_bold(subjects: pd.DataFrame) -> None:
    table = T.clean_table(subjects[subjects["model"] != "resvit"], "pix2pix")
    col = table.columns[0]
    assert table.cell("t1->t2", "pix2pix", col).bold and table.cell("t1->t2", "robust", col).bold


# ------------------------------------------------------------------- report folder


def _write_samples(folder: Path, models: list[str]) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    mask = ((yy - 16) ** 2 + (xx - 16) ** 2) < 13**2
    source = (mask * (0.4 + 0.3 * np.sin(xx / 3.0))).astype(np.float32)
    target = (mask * (0.6 + 0.3 * np.cos(yy / 4.0))).astype(np.float32)
    data = {"source": source, "target": target, "mask": mask.astype(np.float32)}
    for pert, sevs in (("clean", [0]), ("gaussian_noise", [1, 5]), ("motion", [3])):
        for sev in sevs:
            data[f"input|{pert}|{sev}"] = source + rng.normal(0, 0.02 * sev, source.shape).astype(np.float32)
            for i, m in enumerate(models):
                data[f"output|{m}|{pert}|{sev}"] = target + (0.01 * (sev + i) * rng.normal(size=target.shape)
                                                             * mask).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "t1_to_t2.npz", **data)
    # the runner's per-direction pair file (no outputs) is not a figure; an incomplete file is skipped
    np.savez(folder / "t1_to_t2.pair.npz", source=source, target=target, mask=mask)
    np.savez(folder / "t2_to_pd.npz", source=source)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench") / "results"
    root.mkdir()
    synthetic_results().to_csv(root / "results.csv", index=False)
    (root / "manifest.json").write_text(json.dumps({"suite": "synthetic-suite", "reference_model": "pix2pix",
                                                     "models": ["pix2pix", "robust", "resvit"]}))
    _write_samples(root / "samples", ["pix2pix", "robust", "resvit"])
    page = build_report(root)
    assert page == root / "report" / "report.html"
    return root / "report"


def test_report_writes_every_table_and_figure(report: Path) -> None:
    tables = {p.name for p in (report / "tables").iterdir()}
    for name in ("clean_quality", "robustness_psnr", "robustness_ssim", "auc_psnr", "corruption_error"):
        assert {f"{name}.md", f"{name}.tex", f"{name}.csv"} <= tables
    assert "ablation.md" not in tables  # the manifest does not ask for an ablation
    assert not any("pair" in name or "t2_to_pd" in name for name in (p.name for p in (report / "figures").iterdir()))
    assert "Could not read t2_to_pd.npz" in (report / "report.html").read_text(encoding="utf-8")
    figures = {p.name for p in (report / "figures").iterdir()}
    for name in ("clean_psnr_box", "degradation_psnr_t1_to_t2", "samples_t1_to_t2"):
        assert {f"{name}.png", f"{name}.pdf"} <= figures
    assert (report / "figures" / "clean_psnr_box.pdf").read_bytes().startswith(b"%PDF")
    leftovers = [p for p in report.parent.rglob(".*")]
    assert not leftovers  # atomic writes leave no temporary files or folders


def test_report_figures_are_real_images(report: Path) -> None:
    import matplotlib.image as mpimg

    for name in ("clean_psnr_box", "degradation_psnr_t1_to_t2", "samples_t1_to_t2"):
        img = mpimg.imread(report / "figures" / f"{name}.png")
        assert img.ndim == 3 and min(img.shape[:2]) > 300
        assert np.ptp(img[..., :3]) > 0.5  # not blank
    grid = mpimg.imread(report / "figures" / "samples_t1_to_t2.png")
    assert grid.shape[1] > grid.shape[0]  # 3 rows x 8 columns: wider than tall


def test_report_html_is_self_contained(report: Path) -> None:
    html = (report / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == len(list((report / "figures").glob("*.png")))
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from elsewhere
    assert "<style>" in html and "synthetic-suite" in html and "robustmri-test01" in html
    assert "How to read" in html and "<table class=\"results\">" in html
    # models listed in the manifest's order, reference first
    assert "pix2pix, robust, resvit" in html
    summary = pd.read_csv(report / "summary.csv")
    row = summary[(summary["model"] == "robust") & (summary["perturbation"] == "motion")
                  & (summary["severity"] == 5) & (summary["metric"] == "psnr")].iloc[0]
    assert row["mean"] == pytest.approx(REF_PSNR - 5.0, abs=1e-4)
    assert row["ci_low"] < row["mean"] < row["ci_high"] and row["p_holm"] < 0.01
    # the paired difference's interval: robust loses 2.5 dB less than pix2pix at motion s5 on every
    # subject (one seed), so the interval is that value; resvit (+1 dB, two seeds at +-0.2 dB) gets
    # an interval around +1 that the seeds widen; the reference has none
    assert row["diff_ci_low"] == pytest.approx(row["mean_diff"], abs=1e-6) == pytest.approx(row["diff_ci_high"], abs=1e-6)
    rv = summary[(summary["model"] == "resvit") & (summary["perturbation"] == "clean") & (summary["metric"] == "psnr")].iloc[0]
    assert rv["diff_ci_low"] < rv["mean_diff"] < rv["diff_ci_high"] and rv["diff_ci_high"] - rv["diff_ci_low"] > 0.2
    ref_rows = summary[(summary["model"] == "pix2pix") & (summary["metric"] == "psnr")]
    assert ref_rows["diff_ci_low"].isna().all()


def test_cli_report_and_few_subjects(tmp_path: Path, capsys) -> None:
    frame = synthetic_results(3, {"pix2pix": (0, 0, 1), "resvit": (1, 0.01, 1)}, two_seed_model=None)
    frame = frame[frame["perturbation"].isin(["clean", "motion"])]
    frame.to_csv(tmp_path / "results.csv", index=False)  # no manifest: defaults apply
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and str(tmp_path / "report" / "report.html") in out
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "cannot reach p &lt; 0.05" in html
    # 3 subjects: the smallest two-sided p is 0.25, so nothing is marked
    clean = (tmp_path / "report" / "tables" / "clean_quality.md").read_text()
    assert "\\*" not in _row(clean, "resvit") and "**" in _row(clean, "resvit")  # bold but unmarked
    assert not (tmp_path / "report" / "figures" / "samples_t1_to_t2.png").exists()  # no samples/ folder


def test_missing_reference_model_falls_back_with_a_warning(tmp_path: Path) -> None:
    frame = synthetic_results(2, {"unet": (0, 0, 1), "resvit": (1, 0.01, 1)}, two_seed_model=None)
    frame[frame["perturbation"] == "clean"].to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"reference_model": "pix2pix"}))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "stale.txt").write_text("from an older build")
    page = build_report(tmp_path)
    assert not (page.parent / "stale.txt").exists()  # the folder is replaced as a whole
    html = page.read_text(encoding="utf-8")
    assert "reference model &#x27;pix2pix&#x27; is not in results.csv" in html
    assert not (page.parent / "tables" / "robustness_psnr.md").exists()  # no perturbed rows


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("nofolder", "does not exist"),
        ("nofile", "results.csv does not exist"),
        ("empty", "is empty"),
        ("header", "has a header but no rows"),
        ("column", "lacks column(s) ['ssim']"),
        ("protocols", "mix protocols"),
        ("noclean", "no clean rows"),
        ("text", "non-numeric value"),
        ("manifest", "manifest.json"),
    ],
)
def test_bad_results_are_one_line_errors(tmp_path: Path, capsys, setup: str, needle: str) -> None:
    frame = synthetic_results(2, {"pix2pix": (0, 0, 1)}, two_seed_model=None)
    root = tmp_path / "res"
    if setup != "nofolder":
        root.mkdir()
    if setup == "empty":
        (root / "results.csv").write_text("")
    elif setup == "header":
        frame.iloc[:0].to_csv(root / "results.csv", index=False)
    elif setup == "column":
        frame.drop(columns=["ssim"]).to_csv(root / "results.csv", index=False)
    elif setup == "protocols":
        frame.loc[frame.index[:5], "protocol"] = "resvit-123"
        frame.to_csv(root / "results.csv", index=False)
    elif setup == "noclean":
        frame[frame["perturbation"] != "clean"].to_csv(root / "results.csv", index=False)
    elif setup == "text":
        frame.assign(severity=frame["severity"].astype(str).replace("3", "three")).to_csv(root / "results.csv",
                                                                                          index=False)
    elif setup == "manifest":
        frame.to_csv(root / "results.csv", index=False)
        (root / "manifest.json").write_text("{not json")
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err
    assert not (root / "report").exists()


def test_sample_rows_show_one_perturbation_per_family_at_its_strongest():
    from robustmri.report.figures import sample_rows

    keys = ["source", "target", "output|m|clean|0"] + [
        f"output|m|{p}|{s}" for p in ("gaussian_noise", "rician_noise", "gamma", "gaussian_blur", "spike", "motion",
                                       "misregistration", "fgsm_linf", "pgd_linf") for s in (2, 4)
    ]
    assert sample_rows(keys) == [("clean", 0), ("rician_noise", 4), ("gaussian_blur", 4), ("motion", 4),
                                 ("misregistration", 4), ("pgd_linf", 4)]


def test_an_oracle_is_labelled_never_bold_and_gets_no_mce(subjects: pd.DataFrame) -> None:
    """'robust' is the best model of the synthetic results (bold AUC and mCE); declared an oracle,
    it keeps its values under '(oracle)', loses its mCE, and the bold goes to the best other row."""
    table = T.robustness_table(subjects, "pix2pix", "psnr")
    cols = {c.key: c for c in table.columns}
    assert table.cell("t1->t2", "robust", cols["auc"]).bold
    auc = table.cell("t1->t2", "robust", cols["auc"]).mean
    table.mark_oracles({"robust", "not-in-this-table"})
    assert ("t1->t2", "robust (oracle)") in table.rows and ("t1->t2", "robust") not in table.rows
    oracle = lambda key: table.cell("t1->t2", "robust (oracle)", cols[key])  # noqa: E731
    assert oracle("auc").mean == auc and not oracle("auc").bold
    assert oracle("mce") is None
    others = [table.cell("t1->t2", m, cols["auc"]) for m in ("pix2pix", "resvit")]
    assert all(c.bold for c in others)  # tied at 18.75, both now best
    mce = {m: table.cell("t1->t2", m, cols["mce"]) for m in ("pix2pix", "resvit")}
    best = min(round(c.mean, 1) for c in mce.values())
    assert all(c.bold == (round(c.mean, 1) == best) for c in mce.values()) and any(c.bold for c in mce.values())
    md = table.to_markdown()
    assert "robust (oracle)" in md and "see the real target at test time" in md
    assert "robust (oracle)" in table.to_csv()


def test_report_finds_oracles_in_model_json_and_refuses_an_oracle_reference(tmp_path: Path) -> None:
    root = tmp_path / "results"
    (root / "cells" / "robust").mkdir(parents=True)
    synthetic_results().to_csv(root / "results.csv", index=False)
    (root / "manifest.json").write_text(json.dumps({"suite": "s", "reference_model": "pix2pix",
                                                     "models": ["pix2pix", "robust", "resvit"]}))
    (root / "cells" / "robust" / "model.json").write_text(json.dumps({"label": "robust", "oracle": True}))
    build_report(root)
    tables = root / "report" / "tables"
    for name in ("robustness_psnr.md", "clean_quality.md", "scores.md", "corruption_error.md", "auc_psnr.md"):
        text = (tables / name).read_text()
        assert "robust (oracle)" in text and "**" not in _row(text, "robust (oracle)"), name
    assert "oracle" in (root / "report" / "report.html").read_text()
    (root / "manifest.json").write_text(json.dumps({"suite": "s", "reference_model": "robust"}))
    from robustmri.errors import DataError

    with pytest.raises(DataError, match="sees the target at test time"):
        build_report(root)


def test_a_lone_model_is_never_ranked_against_itself(tmp_path: Path) -> None:
    """One model in the results: no bold anywhere, no footnote comparing it with itself, and a first
    line saying nothing is compared and how to score a baseline beside it."""
    frame = synthetic_results(6, {"mymodel": (0, 0, 1)}, two_seed_model=None)
    frame.to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"reference_model": "mymodel"}))
    page = build_report(tmp_path)
    for table in (page.parent / "tables").glob("*.md"):
        text = table.read_text()
        assert not any("**" in line for line in text.splitlines() if line.startswith("|")), table.name
        assert "vs mymodel" not in text and "Bold: best" not in text, table.name
    html = page.read_text(encoding="utf-8")
    assert "Only one model (mymodel) in these results: nothing is compared" in html
    assert "floors=True" in html


def test_the_degradation_figure_plots_losses_on_one_shared_axis(subjects: pd.DataFrame) -> None:
    """Known losses of the synthetic results: pix2pix loses 2 dB per motion severity, robust 1 dB;
    every line starts at 0; all panels share the y axis; the legend gives the clean PSNR. The heat
    map holds the losses at the highest severity."""
    import matplotlib.pyplot as plt

    from robustmri.report import figures as F

    fig = F.degradation_curves(subjects, "t1->t2", models=["pix2pix", "robust", "resvit"])
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert all(panels[0].get_shared_y_axes().joined(panels[0], ax) for ax in panels)
    motion = next(ax for ax in panels if ax.get_title().startswith("motion"))
    lines = [ln for ln in motion.get_lines() if len(ln.get_xdata()) == 6]
    assert [round(float(ln.get_ydata()[0]), 6) for ln in lines] == [0.0, 0.0, 0.0]
    assert [round(float(ln.get_ydata()[-1]), 4) for ln in lines] == [10.0, 5.0, 10.0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == f"pix2pix (clean {REF_PSNR:.2f} dB)"
    plt.close(fig)
    fig = F.loss_heatmap(subjects, "t1->t2", models=["pix2pix", "robust", "resvit"])
    grid = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_allclose(grid, [[5.0, 10.0], [2.5, 5.0], [5.0, 10.0]], atol=1e-6)  # noise s5, motion s5
    plt.close(fig)
