"""Coverage of 95 % confidence intervals at the subject counts the suites use, by seeded simulation:
the measurement that chose robustmri's interval method (robustmri/analysis/intervals.py).

    .venv/bin/python benchmarks/interval_coverage.py              # 1000 samples per design, about 3 min
    .venv/bin/python benchmarks/interval_coverage.py --quick      # 60 samples (the tests run it)

Designs, each at n = 6, 10 and 40 subjects, with a known true value:
- ``normal``: a mean of normal per-subject values;
- ``lognormal``: a mean of skewed values (lognormal, sigma 0.75: skewness about 2.9);
- ``hierarchical``: a paired difference of two models, 3 training seeds each: subject effect
  (SD 1, shared by both models and cancelled by pairing), model-by-subject effect (SD 0.3), seed
  effect per model (SD 0.3, the same on every subject), seed-by-subject noise (SD 0.1);
- ``ratio``: the mCE's statistic, 100 * sum of one model's mean errors / the reference's, over 3
  severities, errors lognormal and correlated across models within a subject.
Methods: ``percentile`` bootstrap (robustmri's earlier method; resamples subjects, and for the
hierarchical design each model's seeds too), ``bca`` (scipy.stats.bootstrap; means only), and
``robustmri`` (:func:`robustmri.analysis.intervals.interval`). Prints the share of samples whose
interval holds the truth (nominal 0.95) and the median width.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import stats

from robustmri.analysis.intervals import interval

LEVEL = 0.95
ALPHA = (1 - LEVEL) / 2


def percentile_mean(v: np.ndarray, gen: np.random.Generator, n_boot: int) -> tuple[float, float]:
    means = v[gen.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [ALPHA, 1 - ALPHA])
    return float(lo), float(hi)


def bca_mean(v: np.ndarray, gen: np.random.Generator, n_boot: int) -> tuple[float, float]:
    res = stats.bootstrap((v,), np.mean, n_resamples=n_boot, method="BCa", confidence_level=LEVEL, random_state=gen)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def robustmri_mean(v: np.ndarray, gen: np.random.Generator, n_boot: int) -> tuple[float, float]:
    iv = interval(v)
    return iv.low, iv.high


def hierarchical_sample(n: int, gen: np.random.Generator, seeds: int = 3) -> tuple[np.ndarray, np.ndarray, float]:
    """(seeds, n) grids of a model and a reference and the true mean difference (0.5)."""
    subject = gen.normal(0, 1.0, n)
    out = []
    for delta in (0.5, 0.0):
        inter = gen.normal(0, 0.3, n)
        seed = gen.normal(0, 0.3, (seeds, 1))
        out.append(delta + subject + inter + seed + gen.normal(0, 0.1, (seeds, n)))
    return out[0], out[1], 0.5


def percentile_hierarchical(xm: np.ndarray, xr: np.ndarray, gen: np.random.Generator, n_boot: int) -> tuple[float, float]:
    n, s = xm.shape[1], xm.shape[0]
    cj = gen.integers(0, n, size=(n_boot, n))
    sm = gen.integers(0, s, size=(n_boot, s))
    sr = gen.integers(0, s, size=(n_boot, s))
    means = np.empty(n_boot)
    for b in range(n_boot):
        d = xm[sm[b]].mean(0) - xr[sr[b]].mean(0)
        means[b] = d[cj[b]].mean()
    lo, hi = np.quantile(means, [ALPHA, 1 - ALPHA])
    return float(lo), float(hi)


def ratio_sample(n: int, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(3 severities, n) errors of a model and of the reference: lognormal, correlated within a subject."""
    sev = np.array([1.0, 2.0, 3.0])[:, None]
    z = gen.normal(0, 0.4, n)  # a subject's difficulty, shared by both models
    mine = 0.8 * sev * np.exp(z + gen.normal(0, 0.2, (3, n)))
    ref = sev * np.exp(z + gen.normal(0, 0.2, (3, n)))
    return mine, ref


def ratio_stat(mine: np.ndarray, ref: np.ndarray) -> float:
    return float(100.0 * mine.mean(axis=-1).sum() / ref.mean(axis=-1).sum())


def ratio_truth() -> float:
    # E[mine] / E[ref] per severity: 0.8 (same lognormal factors in expectation)
    return 80.0


def percentile_ratio(mine: np.ndarray, ref: np.ndarray, gen: np.random.Generator, n_boot: int) -> tuple[float, float]:
    n = mine.shape[1]
    w = gen.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    boots = 100.0 * (w @ mine.T).sum(1) / (w @ ref.T).sum(1)
    lo, hi = np.quantile(boots, [ALPHA, 1 - ALPHA])
    return float(lo), float(hi)


def robustmri_ratio(mine: np.ndarray, ref: np.ndarray, gen: np.random.Generator, n_boot: int) -> tuple[float, float]:
    iv = interval(mine, ref, statistic=ratio_stat, log_scale=True)
    return iv.low, iv.high


def coverage(draw: Callable[[np.random.Generator], tuple[Any, float]], method: Callable[..., tuple[float, float]],
             samples: int, n_boot: int, seed: int) -> tuple[float, float]:
    gen = np.random.default_rng(seed)
    hits, widths = 0, []
    for _ in range(samples):
        data, truth = draw(gen)
        lo, hi = method(*data, gen, n_boot)
        hits += lo <= truth <= hi
        widths.append(hi - lo)
    return hits / samples, float(np.median(widths))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--subjects", default="6,10,40")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    ap.add_argument("--quick", action="store_true", help="seconds: 60 samples, 200 resamples")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.n_boot = 60, 200
    ns = [int(v) for v in args.subjects.split(",")]
    lognormal_mean = float(np.exp(0.75**2 / 2))
    designs: dict[str, tuple[Callable[[int], Callable], dict[str, Callable]]] = {
        "normal": (lambda n: lambda g: ((g.normal(0.0, 1.0, n),), 0.0),
                   {"percentile": percentile_mean, "bca": bca_mean, "robustmri": robustmri_mean}),
        "lognormal": (lambda n: lambda g: ((g.lognormal(0.0, 0.75, n),), lognormal_mean),
                      {"percentile": percentile_mean, "bca": bca_mean, "robustmri": robustmri_mean}),
        "hierarchical": (lambda n: lambda g: (lambda s: ((s[0], s[1]), s[2]))(hierarchical_sample(n, g)),
                         {"percentile": percentile_hierarchical,
                          "robustmri": lambda xm, xr, g, b: (lambda iv: (iv.low, iv.high))(interval(xm, xr))}),
        "ratio": (lambda n: lambda g: (ratio_sample(n, g), ratio_truth()),
                  {"percentile": percentile_ratio, "robustmri": robustmri_ratio}),
    }
    rows = []
    t0 = time.perf_counter()
    print(f"nominal {LEVEL:.2f}; {args.samples} seeded samples per cell, {args.n_boot} bootstrap resamples")
    print(f"{'design':>13} {'n':>3} " + " ".join(f"{m:>22}" for m in ("percentile", "bca", "robustmri")))
    for design, (make, methods) in designs.items():
        for n in ns:
            cells = []
            line = f"{design:>13} {n:>3} "
            for name in ("percentile", "bca", "robustmri"):
                if name not in methods:
                    line += f"{'-':>22} "
                    continue
                cov, width = coverage(make(n), methods[name], args.samples, args.n_boot, seed=1000 * n + len(design))
                cells.append({"design": design, "n": n, "method": name, "coverage": round(cov, 4), "median_width": round(width, 4)})
                line += f"{cov:>11.3f} (w {width:6.3f}) "
            rows.extend(cells)
            print(line, flush=True)
    print(f"{time.perf_counter() - t0:.0f} s")
    figs = {"level": LEVEL, "samples": args.samples, "n_boot": args.n_boot, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(figs, indent=2))
    return figs


if __name__ == "__main__":
    main()
