"""Report figures (matplotlib/seaborn, Agg backend): degradation curves, clean box plots, a
qualitative grid. Each builder returns a :class:`matplotlib.figure.Figure`; :func:`save_figure`
writes it as PNG and PDF atomically.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from robustmri.analysis.robustness import CLEAN, with_clean_curves  # noqa: E402
from robustmri.analysis.stats import interval_summary  # noqa: E402
from robustmri.atomic import write_bytes_atomic  # noqa: E402
from robustmri.results import SampleKey  # noqa: E402
from robustmri.errors import DataError  # noqa: E402
from robustmri.metrics import BETTER  # noqa: E402
from robustmri.report.table import ordered_perturbations  # noqa: E402

__all__ = [
    "clean_boxplot",
    "bare_axes",
    "degradation_curves",
    "error_image",
    "error_maps",
    "figure_png",
    "loss_heatmap",
    "model_colors",
    "qualitative_grid",
    "sample_rows",
    "save_figure",
    "with_losses",
]

_LABEL = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae": "MAE", "nmse": "NMSE"}
_RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 10,
       "xtick.labelsize": 9, "ytick.labelsize": 9}


def _arrow(direction: str) -> str:
    return direction.replace("->", " → ")


def shown(model: str, oracles: Collection[str] = ()) -> str:
    """A model's name as figures show it: ``"<model> (oracle)"`` for a model that sees the target."""
    return f"{model} (oracle)" if model in oracles else model


def model_colors(models: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per model (tab10, then tab20), in the given order, shared by all figures."""
    palette = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("tab20").colors[1::2])
    return {m: tuple(palette[i % len(palette)][:3]) for i, m in enumerate(models)}


_UNIT = {"psnr": " dB"}


def with_losses(subjects: pd.DataFrame, metric: str = "psnr") -> pd.DataFrame:
    """:func:`with_clean_curves` plus a column ``lost``: how much worse ``metric`` is than the same
    model's clean value on the same subject (clean minus perturbed for PSNR/SSIM, perturbed minus
    clean for MAE/NMSE; 0 at severity 0; positive = worse)."""
    curves = with_clean_curves(subjects)
    if curves.empty:
        return curves.assign(lost=pd.Series(dtype=float))
    keys = ["model", "direction", "subject"]
    clean = curves[curves["severity"] == 0].drop_duplicates(keys)[[*keys, metric]].rename(columns={metric: "_clean"})
    out = curves.merge(clean, on=keys, how="left")
    sign = 1.0 if BETTER.get(metric, "higher") == "higher" else -1.0
    return out.assign(lost=sign * (out["_clean"] - out[metric])).drop(columns="_clean")


def degradation_curves(
    subjects: pd.DataFrame,
    direction: str,
    *,
    metric: str = "psnr",
    models: Sequence[str] | None = None,
    ncols: int = 4,
    oracles: Collection[str] = (),
) -> Figure:
    """``metric`` lost from clean vs severity (0 = clean, where every line starts at 0), one panel
    per perturbation, one line per model (``oracles`` are labelled as such); the legend gives each
    model's clean value.

    Lines: mean over subjects of the per-subject loss; bands: the 95% t interval of that mean over
    subjects (:func:`robustmri.analysis.intervals.interval`). All panels share one y axis, so a
    0.1 dB wiggle looks as small as it is and panels compare by eye.
    """
    sub = subjects[subjects["direction"] == direction]
    curves = with_losses(sub, metric)
    if curves.empty:
        raise DataError(f"no perturbed rows for direction {direction!r}; nothing to plot")
    models = list(models) if models is not None else list(dict.fromkeys(curves["model"]))
    colors = model_colors(models)
    summary = interval_summary(curves, ["perturbation", "model", "severity"], "lost")
    clean = curves[curves["severity"] == 0].groupby("model")[metric].mean()
    perts = ordered_perturbations(curves)
    family = dict(zip(curves["perturbation"], curves["family"]))
    ncols = max(1, min(ncols, len(perts)))
    nrows = math.ceil(len(perts) / ncols)
    name = _LABEL.get(metric, metric).split(" (")[0]
    unit = _UNIT.get(metric, "")
    decimals = 2 if metric == "psnr" else 3
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows + 0.9), squeeze=False,
                                 sharex=True, sharey=True, layout="constrained")
        for ax, pert in zip(axes.flat, perts):
            block = summary[summary["perturbation"] == pert]
            for model in models:
                line = block[block["model"] == model].sort_values("severity")
                if line.empty:
                    continue
                ax.plot(line["severity"], line["mean"], marker="o", ms=3.5, lw=1.6, color=colors[model])
                ax.fill_between(line["severity"], line["ci_low"], line["ci_high"], color=colors[model], alpha=0.14,
                                lw=0)
            ax.axhline(0.0, color="0.4", lw=0.8, zorder=0)
            ax.set_title(f"{pert} ({family[pert]})")
            ax.grid(True, alpha=0.3)
            ax.set_xticks(range(0, 6))
        for ax in axes[:, 0]:
            ax.set_ylabel(f"{name} lost{f' ({unit.strip()})' if unit else ''}")
        for ax in axes[-1, :]:
            ax.set_xlabel("severity (0 = clean)")
        for ax in list(axes.flat)[len(perts):]:
            ax.set_visible(False)
        handles = [plt.Line2D([], [], color=colors[m], marker="o", lw=1.6,
                              label=f"{shown(m, oracles)} (clean {clean[m]:.{decimals}f}{unit})" if m in clean.index
                              else shown(m, oracles)) for m in models]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(models), 4), frameon=False)
        fig.suptitle(f"{name} lost from clean vs severity, {_arrow(direction)} "
                     "(mean over subjects, 95% CI; higher = worse)", fontsize=12)
    return fig


def loss_heatmap(
    subjects: pd.DataFrame,
    direction: str,
    *,
    metric: str = "psnr",
    models: Sequence[str] | None = None,
    oracles: Collection[str] = (),
) -> Figure:
    """Model x perturbation: ``metric`` lost from clean (mean over subjects) at each perturbation's
    highest severity, one colour scale for the whole map and the value written in each cell; a
    cell a model was not scored on (a white-box attack on a model without gradients) is blank."""
    sub = subjects[subjects["direction"] == direction]
    curves = with_losses(sub, metric)
    curves = curves[curves["severity"] > 0]
    if curves.empty:
        raise DataError(f"no perturbed rows for direction {direction!r}; nothing to plot")
    top = curves.groupby("perturbation")["severity"].transform("max")
    cells = curves[curves["severity"] == top].groupby(["model", "perturbation"])["lost"].mean()
    perts = ordered_perturbations(curves)
    severity = curves.groupby("perturbation")["severity"].max()
    models = [m for m in (models if models is not None else dict.fromkeys(curves["model"]))
              if m in set(curves["model"])]
    grid = np.full((len(models), len(perts)), np.nan)
    for i, m in enumerate(models):
        for j, p in enumerate(perts):
            if (m, p) in cells.index:
                grid[i, j] = float(cells[(m, p)])
    finite = grid[np.isfinite(grid)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    name = _LABEL.get(metric, metric).split(" (")[0]
    unit = _UNIT.get(metric, "").strip()
    decimals = 2 if metric == "psnr" else 3
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(1.0 * len(perts) + 3.2, 0.45 * len(models) + 1.9), layout="constrained")
        im = ax.imshow(grid, cmap=plt.get_cmap("RdBu_r").with_extremes(bad="white"), vmin=-vmax, vmax=vmax,
                       aspect="auto")
        for i in range(len(models)):
            for j in range(len(perts)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.{decimals}f}", ha="center", va="center", fontsize=8,
                            color="white" if abs(grid[i, j]) > 0.6 * vmax else "black")
        ax.set_xticks(range(len(perts)), [f"{p} (s{int(severity[p])})" for p in perts], rotation=45, ha="right",
                      rotation_mode="anchor")
        ax.set_yticks(range(len(models)), [shown(m, oracles) for m in models])
        cbar = fig.colorbar(im, ax=ax, pad=0.02)
        cbar.set_label(f"{name} lost{f' ({unit})' if unit else ''}")
        ax.set_title(f"{name} lost at the highest severity, {_arrow(direction)} (mean over subjects)", fontsize=11)
    return fig


def clean_boxplot(
    subjects: pd.DataFrame, *, metric: str = "psnr", models: Sequence[str] | None = None, oracles: Collection[str] = (),
) -> Figure:
    """Per-subject clean ``metric`` per model (box plot + one dot per subject), one panel per
    direction (``oracles`` are labelled as such)."""
    import seaborn as sns

    clean = subjects[subjects["perturbation"] == CLEAN]
    if clean.empty:
        raise DataError("results have no clean rows (perturbation 'clean'); nothing to plot")
    models = list(models) if models is not None else list(dict.fromkeys(clean["model"]))
    colors = model_colors(models)
    directions = list(dict.fromkeys(clean["direction"]))
    width = max(4.0, 0.9 * len(models) + 1.5)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(directions), figsize=(width * len(directions), 4.2), squeeze=False,
                                 layout="constrained")
        for ax, direction in zip(axes[0], directions):
            data = clean[clean["direction"] == direction]
            order = [m for m in models if m in set(data["model"])]
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert`
                warnings.simplefilter("ignore", DeprecationWarning)
                sns.boxplot(data=data, x="model", y=metric, order=order, hue="model", hue_order=order,
                            palette=colors, ax=ax, width=0.6, fliersize=0, boxprops={"alpha": 0.55}, legend=False)
            sns.stripplot(data=data, x="model", y=metric, order=order, color="0.15", size=3.5, jitter=0.15, ax=ax)
            ax.set_xticks(range(len(order)), [shown(m, oracles) for m in order])
            n = data.groupby("model")["subject"].nunique()
            ax.set_title(f"clean {_arrow(direction)} (n = {int(n.max())} subject{'s' if n.max() != 1 else ''})")
            ax.set_xlabel("")
            ax.set_ylabel(f"per-subject {_LABEL.get(metric, metric)}")
            ax.grid(True, axis="y", alpha=0.3)
            if len(order) > 3:
                ax.tick_params(axis="x", labelrotation=30)
                for label in ax.get_xticklabels():
                    label.set_horizontalalignment("right")
    return fig


#: Perturbations the qualitative grid shows first: one per family (noise, image, k-space, geometric,
#: adversarial), the most telling of each, then second choices.
SAMPLE_PREFERENCE = ("rician_noise", "gaussian_blur", "motion", "misregistration", "pgd_linf",
                     "undersampling", "gaussian_noise", "square_linf")


def sample_rows(keys: Sequence[str], max_rows: int = 6) -> list[tuple[str, int]]:
    """Rows of the qualitative grid from the keys of a samples file: ``("clean", 0)`` first, then the
    highest severity of each perturbation, those of :data:`SAMPLE_PREFERENCE` first, then the others
    in file order, up to ``max_rows`` rows in all. Keys: :class:`robustmri.bench.store.SampleKey`."""
    best: dict[str, int] = {}
    for text in keys:
        key = SampleKey.parse(text)
        if key is None or key.kind != "output":
            continue
        pert, sev = key.perturbation, key.severity
        if pert != CLEAN:
            best[pert] = max(best.get(pert, 0), sev)
    order = [p for p in SAMPLE_PREFERENCE if p in best] + [p for p in best if p not in SAMPLE_PREFERENCE]
    rows = [(CLEAN, 0)] + [(p, best[p]) for p in order]
    return rows[:max_rows]


def error_maps(data: dict[str, np.ndarray], target: np.ndarray, mask: np.ndarray, models: Sequence[str],
               rows: Sequence[tuple[str, int]]) -> tuple[dict[tuple[str, int, str], np.ndarray], float]:
    """``|output - target|`` within ``mask`` (NaN outside) of each model's sample output for each
    (perturbation, severity) of ``rows``, keyed (perturbation, severity, model), and the colour
    scale they share: the 99.5th percentile of every error shown (1 when there is none)."""
    errors = {}
    for pert, sev in rows:
        for m in models:
            out = data.get(SampleKey("output", m, pert, sev).encode())
            if out is not None:
                errors[(pert, sev, m)] = np.where(mask, np.abs(np.asarray(out, dtype=np.float32) - target), np.nan)
    finite = np.concatenate([e[np.isfinite(e)] for e in errors.values()]) if errors else np.zeros(1)
    emax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    return errors, (emax if emax > 0 else 1.0)


def bare_axes(ax: plt.Axes, missing: bool) -> bool:
    """An image panel without ticks or frame; ``missing``: it says "n/a" instead. Returns ``missing``."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if missing:
        ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, color="0.5")
    return missing


def error_image(ax: plt.Axes, error: np.ndarray, emax: float):  # type: ignore[no-untyped-def]
    """Draw an absolute-error map on the shared scale 0..``emax`` (NaN, outside the mask: black)."""
    return ax.imshow(error, cmap=plt.get_cmap("inferno").with_extremes(bad="black"), vmin=0.0, vmax=emax)


def qualitative_grid(
    samples: Path | str | dict[str, np.ndarray],
    *,
    models: Sequence[str] | None = None,
    rows: Sequence[tuple[str, int]] | None = None,
    title: str = "",
    oracles: Collection[str] = (),
) -> Figure:
    """Inputs, target, outputs and absolute error maps for one test slice.

    Rows: clean and a few perturbed inputs (:func:`sample_rows`). Columns: the (perturbed) input,
    the target, then per model its output and ``|output - target|`` within the mask. Inputs share
    a grey scale set by the clean source's 0.5/99.5 percentiles, targets and outputs one set by
    the target's; all error maps share one colour scale
    (0 to the 99.5th percentile of every error shown), drawn as a colour bar.
    """
    data = dict(np.load(samples)) if not isinstance(samples, dict) else samples
    missing = [k for k in ("source", "target") if k not in data]
    if not missing and not any((k := SampleKey.parse(t)) is not None and k.kind == "output" for t in data):
        missing = ["output|<model>|<perturbation>|<severity>"]
    if missing:
        raise DataError(f"samples file {samples} lacks key(s) {missing}; re-run the benchmark to rewrite it")
    target = np.asarray(data["target"], dtype=np.float32)
    mask = np.asarray(data["mask"], dtype=bool) if "mask" in data else np.ones_like(target, dtype=bool)
    outs = [k for k in map(SampleKey.parse, data) if k is not None and k.kind == "output"]
    present = list(dict.fromkeys(k.model for k in outs))
    models = [m for m in (models or present) if m in present]
    rows = list(rows) if rows is not None else sample_rows(list(data))
    vals = target[mask] if mask.any() else target.ravel()
    vmin, vmax = np.percentile(vals, [0.5, 99.5])
    source = np.asarray(data["source"], dtype=np.float32)
    svals = source[mask] if mask.any() and source.shape == mask.shape else source.ravel()
    in_min, in_max = np.percentile(svals, [0.5, 99.5])  # the input column has its own contrast
    errors, emax = error_maps(data, target, mask, models, rows)
    ncols = 2 + 2 * len(models)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(len(rows), ncols, figsize=(1.55 * ncols + 0.8, 1.65 * len(rows) + 0.7),
                                 squeeze=False, layout="constrained")
        err_im = None
        for r, (pert, sev) in enumerate(rows):
            inp = data.get(SampleKey("input", None, pert, sev).encode(), data["source"] if pert == CLEAN else None)
            row_label = "clean" if pert == CLEAN else f"{pert}\nseverity {sev}"
            if inp is None and models:  # an attack: each model has its own input; show the first's
                inp = data.get(SampleKey("input", models[0], pert, sev).encode())
                row_label += f"\n(input vs {models[0]})" if len(models) > 1 else ""
            panels: list[tuple[str, np.ndarray | None, bool]] = [("input", inp, False), ("target", target, False)]
            for m in models:
                panels.append((shown(m, oracles), data.get(SampleKey("output", m, pert, sev).encode()), False))
                panels.append(("|error|", errors.get((pert, sev, m)), True))
            for c, (label, img, is_err) in enumerate(panels):
                ax = axes[r, c]
                if bare_axes(ax, img is None):
                    pass
                elif is_err:
                    err_im = error_image(ax, img, emax)
                elif c == 0:
                    ax.imshow(np.asarray(img, dtype=np.float32), cmap="gray", vmin=in_min, vmax=in_max)
                else:
                    ax.imshow(np.asarray(img, dtype=np.float32), cmap="gray", vmin=vmin, vmax=vmax)
                if r == 0:
                    ax.set_title(label, fontsize=9)
            axes[r, 0].set_ylabel(row_label, fontsize=9)
        if err_im is not None:
            cbar = fig.colorbar(err_im, ax=axes[:, -1], shrink=0.8, pad=0.08)  # clear of the last column
            cbar.set_label("absolute error (intensity units)")
        if title:
            fig.suptitle(title, fontsize=12)
    return fig


def figure_png(fig: Figure, dpi: int = 130) -> bytes:
    """The figure rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Figure, stem: Path, *, dpi: int = 130) -> bytes:
    """Write ``stem``.png and ``stem``.pdf atomically, close the figure and return the PNG bytes."""
    try:
        png = figure_png(fig, dpi=dpi)
        write_bytes_atomic(stem.with_suffix(".png"), png)
        buf = io.BytesIO()
        fig.savefig(buf, format="pdf")
        write_bytes_atomic(stem.with_suffix(".pdf"), buf.getvalue())
    finally:
        plt.close(fig)
    return png
