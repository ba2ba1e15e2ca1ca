"""Draw the KD+attack diagram for docs/kd_attack.md (matplotlib only, no data, no model).

Writes ``kd_attack.png`` and ``kd_attack.svg`` next to this script (or into ``--out``)::

    .venv/bin/python docs/figures/make_kd_attack_diagram.py

Everything drawn is read from robustmri/kd/model.py, robustmri/kd/attacker.py and
robustmri/kd/refine.py (defaults of ``KDAttack`` and ``LOSS_WEIGHTS``); update the labels here if
those defaults change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

INFER = "#1b7f3b"  # inference path
TRAIN = "#444444"  # training-only data flow
KD = "#7b3294"  # distillation
FILL_TRAIN = "#fdf3e1"
FILL_INFER = "#e6f4ea"
FILL_IO = "#ffffff"


def box(ax, cx, cy, w, h, text, fill, edge="#222222", lw=1.4, size=11, weight="normal"):
    """A rounded box centred at (cx, cy); returns its edges (left, right, bottom, top)."""
    ax.add_patch(
        FancyBboxPatch(
            (cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.15",
            facecolor=fill, edgecolor=edge, linewidth=lw, zorder=3,
        )
    )
    ax.text(cx, cy, text, ha="center", va="center", fontsize=size, fontweight=weight, zorder=4, linespacing=1.35)
    return cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2


def path(ax, points, color, lw=1.6, ls="-", head=True):
    """A polyline through ``points`` with an arrow head on its last segment."""
    for (x0, y0), (x1, y1) in zip(points[:-2], points[1:-1]):
        ax.add_line(Line2D([x0, x1], [y0, y1], color=color, linewidth=lw, linestyle=ls, zorder=2, solid_capstyle="round"))
    (x0, y0), (x1, y1) = points[-2], points[-1]
    ax.add_patch(
        FancyArrowPatch(
            (x0, y0), (x1, y1), arrowstyle="-|>" if head else "-", mutation_scale=16, color=color,
            linewidth=lw, linestyle=ls, zorder=2, shrinkA=0, shrinkB=0,
        )
    )


def label(ax, x, y, text, color="#222222", size=10, ha="center", va="center", style="normal", bg=True):
    ax.text(
        x, y, text, ha=ha, va=va, fontsize=size, color=color, style=style, zorder=5, linespacing=1.3,
        bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.9) if bg else None,
    )


def draw(out_dir: Path) -> list[Path]:
    plt.rcParams.update({"font.family": "DejaVu Sans", "svg.hashsalt": "kd_attack"})
    fig, ax = plt.subplots(figsize=(16, 11))
    ax.set_xlim(0, 17.6)
    ax.set_ylim(-3.3, 10.4)
    ax.axis("off")

    # ---- training-only region (top band)
    ax.add_patch(
        Rectangle((0.05, 5.35), 17.5, 4.55, fill=False, linestyle=(0, (6, 4)), linewidth=1.6, edgecolor="#b35900", zorder=1)
    )
    label(ax, 17.45, 9.68, "training only", color="#b35900", size=12, ha="right", style="italic")

    # ---- bottom band: the inference path
    xl, xr, xb, xt = box(ax, 1.65, 3.2, 2.3, 1.5, "source $x$\n(B, C_in, H, W)\nin [0, 1]", FILL_IO)
    gl, gr, gb, gt = box(ax, 5.6, 3.2, 2.9, 1.6, "Generator G\n(any registered model,\ne.g. pix2pix)", FILL_INFER, weight="bold")
    ol, orr, ob, ot = box(ax, 9.0, 3.2, 2.1, 1.3, "G(x)\n(B, 1, H, W) in [0, 1]", FILL_IO, size=10)
    sl, sr, sb, st = box(
        ax, 12.6, 3.2, 3.3, 2.0,
        "Student S\nregistration net + correction\ninput [G(x), x]\n"
        r"$\rightarrow\ \varphi_S$ (flow, px), $r_S$",
        FILL_INFER, weight="normal", size=10.5,
    )
    yl, yr, yb, yt = box(ax, 16.2, 3.2, 2.3, 1.3, "output $\\hat{y}$\n(B, 1, H, W) in [0, 1]", FILL_IO, size=10)

    # ---- top band: attacker, adversarial input, teacher, target
    al, ar, ab, at = box(
        ax, 2.05, 7.3, 3.5, 2.2,
        "Attacker A (conv net)\n" r"$\delta = \varepsilon\,\tanh(A(x)) \odot$ mask" "\n"
        r"$\|\delta\|_\infty \leq \varepsilon = 0.03$" "\nblack-box: trained by SPSA\nfrom loss queries only",
        FILL_TRAIN, size=10.5,
    )
    vl, vr, vb, vt = box(ax, 5.75, 7.3, 3.0, 1.3, "adversarial input\n" r"$x_{adv}$ = clamp($x + \delta$, 0, 1)", FILL_TRAIN, size=10.5)
    tl, tr, tb, tt = box(
        ax, 12.6, 7.3, 3.3, 2.0,
        "Teacher T\nregistration net + correction\ninput [G(x), y, x]\n"
        r"$\rightarrow\ \varphi_T$ (flow, px), $r_T$",
        FILL_TRAIN, size=10.5,
    )
    ql, qr, qb, qt = box(ax, 16.15, 7.3, 2.3, 1.3, "target $y$\n(B, 1, H, W)", FILL_TRAIN, size=10.5)

    # ---- inference path (also used in training)
    path(ax, [(xr, 3.2), (gl, 3.2)], INFER, lw=3.2)
    path(ax, [(gr, 3.2), (ol, 3.2)], INFER, lw=3.2)
    path(ax, [(orr, 3.2), (sl, 3.2)], INFER, lw=3.2)
    path(ax, [(sr, 3.2), (yl, 3.2)], INFER, lw=3.2)
    path(ax, [(1.65, xb), (1.65, 0.95), (12.6, 0.95), (12.6, sb)], INFER, lw=3.2)
    label(ax, 7.2, 0.95, "x  (student context)", color=INFER, size=10)

    # ---- training-only data flow
    path(ax, [(1.65, xt), (1.65, ab)], TRAIN)
    label(ax, 1.65, 4.85, "x", color=TRAIN)
    path(ax, [(ar, 7.3), (vl, 7.3)], TRAIN)
    label(ax, (ar + vl) / 2, 7.62, r"$\delta$", color=TRAIN, bg=False)
    path(ax, [(5.6, vb), (5.6, gt)], TRAIN)
    label(ax, 5.6, 5.05, r"$x_{adv}$: G trains on [x ; $x_{adv}$]", color=TRAIN, size=10)
    # x -> teacher, over the top of the training band
    path(ax, [(xl, 3.55), (0.25, 3.55), (0.25, 9.25), (12.6, 9.25), (12.6, tt)], TRAIN)
    label(ax, 7.6, 9.25, "x  (teacher context)", color=TRAIN, size=10)
    # G(x) -> teacher
    path(ax, [(9.0, ot), (9.0, 7.3), (tl, 7.3)], TRAIN)
    label(ax, 9.0, 4.65, "G(x), no gradient\nto G (detached)", color=TRAIN, size=9.5)
    label(ax, 9.0, 2.2, "training: G([x ; $x_{adv}$])", color=TRAIN, size=9.5, bg=False)
    # y -> teacher
    path(ax, [(ql, 7.3), (tr, 7.3)], TRAIN)

    # ---- distillation T -> S
    path(ax, [(12.6, tb), (12.6, st)], KD, lw=3.0)
    label(
        ax, 12.8, 5.3, r"knowledge distillation $L_{KD}$" "\noutput + flow + feature\n(teacher side detached)",
        color=KD, size=10, ha="left",
    )

    # ---- loss tags next to the modules
    label(ax, 2.05, 8.75, r"$L_A$: maximise mean|G($x_{adv}$) $-$ y|", color="#b35900", size=10)
    label(ax, 5.6, 2.05, r"$L_G$: G's own losses", color=INFER, size=10, bg=False)
    label(ax, 14.4, 8.55, r"$L_T$", color="#b35900", size=11, ha="left", bg=False)
    label(ax, 14.4, 4.1, r"$L_S$", color=INFER, size=11, ha="left", bg=False)

    # ---- legend and loss panel
    legend = [
        Line2D([], [], color=INFER, lw=3.2, label=r"inference path: $\hat{y}$ = S(G(x), x); y never used"),
        Line2D([], [], color=TRAIN, lw=1.6, label="training-only data flow"),
        Line2D([], [], color=KD, lw=3.0, label="distillation T $\\rightarrow$ S"),
        Rectangle((0, 0), 1, 1, fill=False, linestyle=(0, (6, 4)), edgecolor="#b35900", label="training-only modules"),
    ]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(0.0, 0.225), fontsize=10, frameon=False, ncol=2)
    losses = (
        r"$L_A$ (attacker, maximised) = mean|G(clamp(x+$\delta$, 0, 1)) $-$ y|; $\partial L_A/\partial\delta$ from G's outputs "
        r"(smoothed diag(J) $\cdot$ v), 1 + spsa_samples (3) G forward passes per step, no backward pass through G" "\n"
        r"$L_G$ = G's own training loss on [x ; $x_{adv}$]  (pix2pix: GAN + 100 $\cdot$ L1)" "\n"
        r"$L_T$ = 20 $\cdot$ L1(T, y) + 10 $\cdot$ smooth($\varphi_T$) + 1 $\cdot$ mean|$r_T$|" "\n"
        r"$L_{KD}$ = 10 $\cdot$ L1(S, T) + 1 $\cdot$ L1($\varphi_S$, $\varphi_T$) + 1 $\cdot$ MSE($f_S$, $f_T$) / mean($f_T^2$)"
        r"      ($f$ = last feature map)" "\n"
        r"$L_S$ = $L_{KD}$ + 10 $\cdot$ L1(S, y) + 10 $\cdot$ smooth($\varphi_S$)" "\n"
        r"T and S output clamp(warp(G(x), $\varphi$) + r, 0, 1) with r = 0.25 $\cdot$ tanh($\cdot$); "
        "in training T, S and the losses see the clean and the attacked batch together" "\n"
        "schedule (fraction of training steps):  [0, 0.1) G alone;  from 0.1 attacker;  from 0.3 teacher;  from 0.5 student"
    )
    ax.text(0.15, -1.25, losses, ha="left", va="top", fontsize=10.5, linespacing=1.55, zorder=5)

    ax.set_title("KD+attack in robustmri (robustmri/kd): defaults of KDAttack", fontsize=14, pad=8)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None})):
        p = out_dir / f"kd_attack.{ext}"
        fig.savefig(p, dpi=130, bbox_inches="tight", metadata=meta)
        written.append(p)
    plt.close(fig)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    for p in draw(parser.parse_args().out):
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
