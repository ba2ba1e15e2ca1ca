"""Statistics and robustness scores against hand-computed answers on synthetic results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustmri.analysis import (
    compare_to_reference,
    corruption_errors,
    degradation,
    degradation_auc,
    holm,
    mean_corruption_error,
    subject_means,
    wilcoxon_paired,
    with_clean_curves,
)
from robustmri.analysis.intervals import interval
from robustmri.errors import ConfigError, DataError

# Per-severity loss of the reference model: PSNR in dB, SSIM, per perturbation.
PERTURBATIONS = {"gaussian_noise": ("noise", 1.0), "motion": ("kspace", 2.0)}
SSIM_RATE = 0.01  # SSIM loss per severity per unit of rate
# model -> (PSNR offset dB, SSIM offset, scale of the degradation)
MODELS = {"pix2pix": (0.0, 0.0, 1.0), "resvit": (1.0, 0.01, 1.0), "robust": (0.0, 0.0, 0.5)}
SLICE_JITTER = np.array([-0.3, -0.1, 0.1, 0.3])  # sums to zero: subject means are exact


def synthetic_results(
    n_subjects: int = 10,
    models: dict[str, tuple[float, float, float]] | None = None,
    *,
    two_seed_model: str | None = "resvit",
    protocol: str = "robustmri-test01",
    direction: str = "t1->t2",
) -> pd.DataFrame:
    """A results table with known effects.

    Per subject i the reference (pix2pix) has clean PSNR 28 + 0.7 i dB, SSIM 0.90 + small(i),
    MAE 0.05, NMSE 0.02; each perturbation lowers PSNR by ``rate * severity`` dB and SSIM by
    ``0.01 * rate * severity``. ``resvit`` is pix2pix + 1 dB (+0.01 SSIM) everywhere, with per-subject
    deviations that sum to zero; ``robust`` degrades half as fast. ``two_seed_model`` is trained
    with two seeds whose values are +-0.2 dB around the same per-subject value.
    """
    models = MODELS if models is None else models
    rows = []
    centre = (n_subjects - 1) / 2
    for name, (p_off, s_off, scale) in models.items():
        seeds = [(0, -0.2), (1, 0.2)] if name == two_seed_model else [(0, 0.0)]
        for i in range(n_subjects):
            wiggle = 0.2 * (i - centre) / max(centre, 1) if p_off else 0.0  # model-specific, sums to 0
            base_psnr = 28.0 + 0.7 * i + p_off + wiggle
            base_ssim = 0.90 + 0.002 * (i - centre) + s_off
            cases = [("clean", "clean", 0, 0.0)] + [
                (p, fam, s, rate) for p, (fam, rate) in PERTURBATIONS.items() for s in range(1, 6)
            ]
            for pert, fam, sev, rate in cases:
                for seed, seed_off in seeds:
                    for k, jit in enumerate(SLICE_JITTER):
                        rows.append({
                            "model": name, "direction": direction, "seed": seed, "perturbation": pert,
                            "family": fam, "severity": sev, "subject": f"sub-{i:02d}", "slice": k,
                            "psnr": base_psnr + seed_off + jit - scale * rate * sev,
                            "ssim": base_ssim + jit / 100 - scale * SSIM_RATE * rate * sev,
                            "mae": 0.05 - p_off / 200 - jit / 100 + scale * 0.002 * rate * sev,
                            "nmse": 0.02 + scale * 0.001 * rate * sev,
                            "protocol": protocol,
                        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def subjects() -> pd.DataFrame:
    return subject_means(synthetic_results())


# ------------------------------------------------------------------------------- Holm


def test_holm_matches_a_hand_computed_example() -> None:
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # NaN stays NaN and does not count in m (m = 3 here): 0.06, min(1, 1.2), max(0.7, 1); capped at 1
    out = holm([0.02, np.nan, 0.6, 0.7])
    np.testing.assert_allclose(out[[0, 2, 3]], [0.06, 1.0, 1.0])
    assert np.isnan(out[1])
    assert np.isnan(holm([np.nan])).all() and holm([]).shape == (0,)
    # a single test is not corrected
    assert holm([0.03])[0] == pytest.approx(0.03)


def test_holm_is_not_benjamini_hochberg() -> None:
    p = [0.01, 0.02, 0.03]
    assert not np.allclose(holm(p), stats.false_discovery_control(p, method="bh"))
    np.testing.assert_allclose(holm(p), [0.03, 0.04, 0.04])


# ---------------------------------------------------------------------------- Wilcoxon


def test_wilcoxon_matches_scipy_and_drops_nan_pairs() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(30, 1, 12)
    y = x - 0.4 + rng.normal(0, 0.5, 12)
    ref = stats.wilcoxon(x, y)
    res = wilcoxon_paired(x, y)
    assert res.pvalue == pytest.approx(ref.pvalue) and res.statistic == pytest.approx(ref.statistic)
    assert res.n == 12
    x2, y2 = np.append(x, np.nan), np.append(y, 99.0)
    assert wilcoxon_paired(x2, y2).pvalue == pytest.approx(ref.pvalue)
    assert wilcoxon_paired(x2, y2).n == 12


def test_wilcoxon_with_ties_and_zeros_matches_scipy_permutation_test() -> None:
    # ties and zeros with n <= 13: scipy runs a (slow) exact permutation test; ours must agree
    rng = np.random.default_rng(11)
    for n in (5, 9):
        d = np.round(rng.normal(0.4, 1.0, n), 1)
        d[0] = 0.0
        d[1] = d[2]
        ref = stats.wilcoxon(d, np.zeros(n))
        res = wilcoxon_paired(d, np.zeros(n))
        assert res.pvalue == pytest.approx(ref.pvalue, abs=1e-12) and res.statistic == ref.statistic


def test_wilcoxon_small_and_degenerate_samples_do_not_crash() -> None:
    # 3 pairs, all positive differences: exact two-sided p = 2 / 2**3
    assert wilcoxon_paired([2, 3, 4], [1.0, 1.5, 1.7]).pvalue == pytest.approx(0.25)
    # 5 pairs: the smallest reachable p is 2/32 = 0.0625 > 0.05
    assert wilcoxon_paired([2, 3, 4, 5, 6], [1.0, 1.5, 1.7, 1.2, 1.1]).pvalue == pytest.approx(0.0625)
    same = wilcoxon_paired([1, 2, 3], [1, 2, 3])
    assert (same.pvalue, same.n) == (1.0, 3)
    empty = wilcoxon_paired([np.nan], [1.0])
    assert np.isnan(empty.pvalue) and empty.n == 0
    with pytest.raises(DataError):
        wilcoxon_paired([1, 2], [1, 2, 3])


# ---------------------------------------------------------------------------- intervals


def test_interval_of_a_mean_is_scipys_t_interval() -> None:
    from scipy import stats

    x = np.array([17.1, 16.4, 18.0, 16.9, 17.5, 16.2])
    iv = interval(x)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (iv.estimate, iv.low, iv.high, iv.df, iv.n) == pytest.approx((x.mean(), low, high, 5, 6))
    assert interval(x, level=0.9).high < high
    # a paired difference with one seed each is the paired t interval of the differences
    y = x - np.array([0.3, 0.1, 0.5, 0.2, 0.4, 0.0])
    d = x - y
    pl, ph = stats.t.interval(0.95, 5, loc=d.mean(), scale=stats.sem(d))
    assert (interval(x, y).low, interval(x, y).high) == pytest.approx((pl, ph))
    one = interval([2.5])
    assert (one.estimate, one.low, one.high) == (2.5, 2.5, 2.5)
    assert np.isnan(interval([np.nan, np.inf]).low)
    with pytest.raises(ConfigError):
        interval(x, level=1.5)


def test_interval_of_another_statistic_is_the_jackknife_t() -> None:
    from scipy import stats

    x = np.array([1.0, 2.0, 4.0, 3.0, 6.0])
    # the jackknife SE of a mean is sd / sqrt(n): statistic=mean gives the t interval
    iv = interval(x, statistic=lambda v, r: float(v.mean()))
    assert (iv.low, iv.high) == pytest.approx(stats.t.interval(0.95, 4, loc=x.mean(), scale=stats.sem(x)))
    # a ratio of means: the known jackknife SE by hand
    y = np.array([2.0, 2.5, 3.0, 4.0, 5.0])
    ratio = lambda v, r: float(v.mean() / r.mean())  # noqa: E731
    loo = np.array([np.delete(x, j).mean() / np.delete(y, j).mean() for j in range(5)])
    se = np.sqrt(4 / 5 * ((loo - loo.mean()) ** 2).sum())
    r = interval(x, y, statistic=ratio)
    assert r.estimate == pytest.approx(x.mean() / y.mean()) and r.se == pytest.approx(se)
    assert r.high - r.low == pytest.approx(2 * stats.t.ppf(0.975, 4) * se)
    # ragged cells (lists of arrays, subjects last) are subset together
    cells = interval([x[None], np.vstack([x, x])], [y[None], np.vstack([y, y])],
                     statistic=lambda v, rr: float(np.mean([a.mean() / b.mean() for a, b in zip(v, rr)])))
    assert cells.se == pytest.approx(se)
    # on the log scale: the interval of log(ratio), mapped back (asymmetric around the estimate)
    loo_log = np.log(loo)
    se_log = np.sqrt(4 / 5 * ((loo_log - loo_log.mean()) ** 2).sum())
    lg = interval(x, y, statistic=ratio, log_scale=True)
    half = stats.t.ppf(0.975, 4) * se_log
    assert (lg.low, lg.high) == pytest.approx((r.estimate * np.exp(-half), r.estimate * np.exp(half)))


def test_interval_treats_seeds_as_a_level() -> None:
    from scipy import stats

    subj = np.array([0.2, -0.1, 0.4, 0.0, 0.3, 0.1])
    # three seeds that agree exactly on a constant paired difference: a zero-width interval
    same = interval(np.vstack([subj, subj, subj]) + 1.0, np.vstack([subj, subj]))
    assert (same.estimate, same.low, same.high, same.se) == pytest.approx((1.0, 1.0, 1.0, 0.0))
    # agreeing seeds with a subject-varying difference: the paired t interval over subjects
    noisy = interval(np.vstack([2 * subj, 2 * subj]), subj)
    assert (noisy.low, noisy.high) == pytest.approx(stats.t.interval(0.95, 5, loc=subj.mean(), scale=stats.sem(subj)))
    # seeds shifting every subject by +-0.5: the seed component dominates, df -> seeds - 1
    grid = np.vstack([subj + 0.5, subj - 0.5, subj])
    iv = interval(grid, np.vstack([subj]))
    se = np.sqrt(np.var([0.5, -0.5, 0.0], ddof=1) / 3)
    assert iv.se == pytest.approx(se) and iv.df == pytest.approx(2.0)
    assert iv.high == pytest.approx(stats.t.ppf(0.975, 2) * se)


@pytest.mark.parametrize("n", [6, 10, 40])
def test_interval_coverage_at_the_suites_subject_counts(n: int) -> None:
    """Seeded simulation (benchmarks/interval_coverage.py's designs): at nominal 95 % the mean's
    interval on normal data, the paired difference with 3 seeds per model, and the mCE's ratio
    each cover at least 93 % (2000 samples: the binomial SE of a coverage is 0.005)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import interval_coverage as ic

    gen = np.random.default_rng(100 + n)
    samples = 2000
    hits = {"normal": 0, "hierarchical": 0, "ratio": 0}
    for _ in range(samples):
        iv = interval(gen.normal(3.0, 2.0, n))
        hits["normal"] += iv.low <= 3.0 <= iv.high
        xm, xr, truth = ic.hierarchical_sample(n, gen)
        iv = interval(xm, xr)
        hits["hierarchical"] += iv.low <= truth <= iv.high
        mine, ref = ic.ratio_sample(n, gen)
        iv = interval(mine, ref, statistic=ic.ratio_stat, log_scale=True)
        hits["ratio"] += iv.low <= ic.ratio_truth() <= iv.high
    coverage = {k: v / samples for k, v in hits.items()}
    assert min(coverage.values()) >= 0.93, coverage
    assert coverage["normal"] <= 0.97, coverage  # not a trivially wide interval either


# ---------------------------------------------------------------- subject aggregation


def test_subject_means_average_slices_then_seeds(subjects: pd.DataFrame) -> None:
    row = subjects[(subjects["model"] == "resvit") & (subjects["perturbation"] == "clean")
                   & (subjects["subject"] == "sub-00")].iloc[0]
    # 28 + 1 dB offset - 0.2 wiggle; the seeds' +-0.2 and the slice jitter average out
    assert row["psnr"] == pytest.approx(28.8)
    assert row["n_seeds"] == 2 and row["n_slices"] == 8
    assert len(subjects) == 3 * 11 * 10
    p2p = subjects[(subjects["model"] == "pix2pix") & (subjects["perturbation"] == "motion")
                   & (subjects["severity"] == 3) & (subjects["subject"] == "sub-02")].iloc[0]
    assert p2p["psnr"] == pytest.approx(28.0 + 1.4 - 6.0)
    assert p2p["n_seeds"] == 1


def test_subject_means_skip_nan_slices_and_name_missing_columns() -> None:
    frame = synthetic_results(n_subjects=2, models={"pix2pix": (0, 0, 1)}, two_seed_model=None)
    first = (frame["perturbation"] == "clean") & (frame["subject"] == "sub-00")
    frame.loc[first & (frame["slice"] == 0), "psnr"] = np.nan
    out = subject_means(frame)
    got = out[(out["perturbation"] == "clean") & (out["subject"] == "sub-00")]["psnr"].iloc[0]
    assert got == pytest.approx(28.0 + (-0.1 + 0.1 + 0.3) / 3)
    with pytest.raises(DataError, match="lacks column"):
        subject_means(frame.drop(columns=["seed"]))


# ------------------------------------------------------------------- paired comparisons


def test_compare_to_reference_pairs_by_subject_and_holm_corrects(subjects: pd.DataFrame) -> None:
    by = ["direction", "perturbation", "severity"]
    res = compare_to_reference(subjects, "pix2pix", by=by, metrics=["psnr"])
    assert set(res["model"]) == {"resvit", "robust"}
    assert len(res) == 2 * 11
    clean = res[res["perturbation"] == "clean"].set_index("model")
    assert clean.loc["resvit", "mean_diff"] == pytest.approx(1.0)
    assert clean.loc["robust", "mean_diff"] == pytest.approx(0.0)
    # p against scipy on the per-subject values, paired by subject id (shuffled order must not matter)
    s = subjects[subjects["perturbation"] == "clean"].sample(frac=1.0, random_state=0)
    a = s[s["model"] == "resvit"].set_index("subject")["psnr"].sort_index()
    b = s[s["model"] == "pix2pix"].set_index("subject")["psnr"].sort_index()
    assert clean.loc["resvit", "p"] == pytest.approx(stats.wilcoxon(a.to_numpy(), b.to_numpy()).pvalue)
    assert clean.loc["robust", "p"] == 1.0  # identical clean values
    np.testing.assert_allclose(clean[["p_holm"]].to_numpy().ravel(), holm(clean["p"].to_numpy()))
    # under motion at severity 4 robust loses 4 dB less than pix2pix on every subject
    m4 = res[(res["perturbation"] == "motion") & (res["severity"] == 4)].set_index("model")
    assert m4.loc["robust", "mean_diff"] == pytest.approx(4.0)
    assert m4.loc["robust", "p_holm"] < 0.01


def test_compare_to_reference_without_the_reference_is_empty(subjects: pd.DataFrame) -> None:
    res = compare_to_reference(subjects, "absent", by=["perturbation", "severity"], metrics=["psnr"])
    assert res.empty and "p_holm" in res.columns


# --------------------------------------------------------------------- robustness


def test_with_clean_curves_starts_every_curve_at_the_clean_value(subjects: pd.DataFrame) -> None:
    curves = with_clean_curves(subjects)
    assert "clean" not in set(curves["perturbation"])
    zero = curves[(curves["severity"] == 0) & (curves["model"] == "pix2pix")
                  & (curves["perturbation"] == "motion") & (curves["subject"] == "sub-01")]
    assert len(zero) == 1 and zero["psnr"].iloc[0] == pytest.approx(28.7)
    assert zero["family"].iloc[0] == "kspace"
    no_clean = subjects[~((subjects["model"] == "robust") & (subjects["perturbation"] == "clean"))]
    with pytest.raises(DataError, match="no clean rows for model 'robust'"):
        with_clean_curves(no_clean)


def test_degradation_and_auc_have_the_known_values(subjects: pd.DataFrame) -> None:
    deg = degradation(subjects, ["psnr", "ssim", "mae"])
    r = deg[(deg["model"] == "robust") & (deg["perturbation"] == "motion") & (deg["severity"] == 2)]
    np.testing.assert_allclose(r["deg_psnr"], 0.5 * 2.0 * 2)  # positive = worse, dB
    np.testing.assert_allclose(r["deg_mae"], 0.5 * 0.002 * 2.0 * 2)  # lower-is-better metric: also positive
    assert (deg.loc[deg["severity"] == 0, "deg_psnr"] == 0).all()
    auc = degradation_auc(deg, "psnr")
    mean = auc.groupby(["model", "perturbation"])["auc"].mean()
    # trapezoid of rate * s over s = 0..5: rate * 12.5 dB x severity
    assert mean[("pix2pix", "gaussian_noise")] == pytest.approx(12.5)
    assert mean[("pix2pix", "motion")] == pytest.approx(25.0)
    assert mean[("resvit", "motion")] == pytest.approx(25.0)
    assert mean[("robust", "motion")] == pytest.approx(12.5)
    assert (auc["n_severities"] == 6).all()
    ssim_auc = degradation_auc(deg, "ssim").groupby(["model", "perturbation"])["auc"].mean()
    assert ssim_auc[("pix2pix", "gaussian_noise")] == pytest.approx(0.125)


def test_auc_over_missing_severities_uses_the_present_ones() -> None:
    frame = synthetic_results(n_subjects=2, models={"pix2pix": (0, 0, 1)}, two_seed_model=None)
    frame = frame[~frame["severity"].isin([2, 4])]
    auc = degradation_auc(degradation(subject_means(frame), ["psnr"]), "psnr")
    # points at s = 0, 1, 3, 5 on a straight line: still the area of the line, 12.5 for rate 1
    assert auc.groupby("perturbation")["auc"].mean()["gaussian_noise"] == pytest.approx(12.5)
    assert (auc["n_severities"] == 4).all()


def test_corruption_error_and_mce_match_the_hand_computation(subjects: pd.DataFrame) -> None:
    ce = corruption_errors(subjects, "pix2pix", error="ssim").set_index(["model", "perturbation"])
    # pix2pix 1 - SSIM at severity s: 0.1 + 0.01 rate s -> sum over s = 1..5: 0.5 + 0.15 rate
    assert ce.loc[("pix2pix", "motion"), "ce"] == pytest.approx(100.0)
    assert ce.loc[("robust", "gaussian_noise"), "ce"] == pytest.approx(100 * 0.575 / 0.65)
    assert ce.loc[("robust", "motion"), "ce"] == pytest.approx(100 * 0.65 / 0.80)
    assert ce.loc[("resvit", "gaussian_noise"), "ce"] == pytest.approx(100 * 0.60 / 0.65)
    # relative CE subtracts the clean error: resvit degrades exactly as pix2pix, robust half as much
    assert ce.loc[("resvit", "motion"), "rel_ce"] == pytest.approx(100.0)
    assert ce.loc[("robust", "motion"), "rel_ce"] == pytest.approx(50.0)
    mce = mean_corruption_error(ce.reset_index()).set_index("model")
    assert mce.loc["robust", "mce"] == pytest.approx(100 * (0.575 / 0.65 + 0.65 / 0.80) / 2)
    assert mce.loc["pix2pix", "mce"] == pytest.approx(100.0)
    assert mce.loc["robust", "n_perturbations"] == 2
    mae = corruption_errors(subjects, "pix2pix", error="mae").set_index(["model", "perturbation"])
    # MAE: pix2pix 0.05 + 0.002 rate s; robust 0.05 + 0.001 rate s -> noise sums 0.28 vs 0.265
    assert mae.loc[("robust", "gaussian_noise"), "ce"] == pytest.approx(100 * 0.265 / 0.28)


def test_corruption_error_is_nan_when_the_reference_lacks_a_perturbation(subjects: pd.DataFrame) -> None:
    part = subjects[~((subjects["model"] == "pix2pix") & (subjects["perturbation"] == "motion"))]
    ce = corruption_errors(part, "pix2pix").set_index(["model", "perturbation"])
    assert np.isnan(ce.loc[("robust", "motion"), "ce"])
    mce = mean_corruption_error(ce.reset_index()).set_index("model")
    assert mce.loc["robust", "n_perturbations"] == 1


def test_synthetic_results_round_trip_through_csv(tmp_path: Path) -> None:
    frame = synthetic_results(n_subjects=3)
    frame.to_csv(tmp_path / "r.csv", index=False)
    back = pd.read_csv(tmp_path / "r.csv", dtype={"subject": str})
    pd.testing.assert_frame_equal(subject_means(back), subject_means(frame))


def _seed_frame(diffs: dict[int, list[float]], base: float = 30.0) -> pd.DataFrame:
    """A seed frame of one clean cell: the reference at ``base`` dB, 'other' at base + diffs[seed][j]."""
    rows = []
    for seed, per_subject in diffs.items():
        for j, d in enumerate(per_subject):
            for model, value in (("ref", base + 0.1 * j), ("other", base + 0.1 * j + d)):
                rows.append({"model": model, "direction": "t1->t2", "perturbation": "clean", "family": "clean",
                             "severity": 0, "subject": f"s{j}", "seed": seed, "psnr": value})
    return pd.DataFrame(rows)


def test_paired_difference_ci_known_answers_and_seeds_as_a_level() -> None:
    from robustmri.analysis.stats import paired_difference_ci

    by = ["direction", "perturbation", "severity"]
    # a constant paired difference: the interval is that value, however variable the subjects are
    const = paired_difference_ci(_seed_frame({0: [0.5] * 8}), "ref", by, "psnr")
    assert const.loc[0, ["mean_diff", "ci_low", "ci_high"]].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert const.loc[0, "n_subjects"] == 8 and const.loc[0, "n_seeds"] == 1
    # +1 dB with one training seed, -1 dB with the other, on every subject: averaging seeds first
    # would say "0, exactly"; with seeds as a level the interval spans the seeds' disagreement
    # (two seeds: t with 1 df, se = sd of the seed means / sqrt 2 = 1)
    split = paired_difference_ci(_seed_frame({0: [1.0] * 8, 1: [-1.0] * 8}), "ref", by, "psnr")
    row = split.iloc[0]
    assert row["mean_diff"] == pytest.approx(0.0) and row["n_seeds"] == 2
    assert row["ci_low"] == pytest.approx(-stats.t.ppf(0.975, 1)) and row["ci_high"] == pytest.approx(stats.t.ppf(0.975, 1))
    # one seed, subject differences N(0.3, 1): the paired t interval, width 2 x t(0.975, n-1) x sd / sqrt(n)
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 1.0, 200)
    one = paired_difference_ci(_seed_frame({0: list(d)}), "ref", by, "psnr").iloc[0]
    assert (one["ci_low"], one["ci_high"]) == pytest.approx(stats.t.interval(0.95, 199, loc=d.mean(), scale=stats.sem(d)))
    # missing pairs are dropped, not zero-filled
    holes = _seed_frame({0: [2.0] * 4})
    holes = holes[~((holes.model == "other") & (holes.subject == "s0"))]
    h = paired_difference_ci(holes, "ref", by, "psnr").iloc[0]
    assert h["mean_diff"] == pytest.approx(2.0) and h["n_subjects"] == 3
    assert paired_difference_ci(_seed_frame({0: [1.0] * 3}), "absent", by, "psnr").empty
