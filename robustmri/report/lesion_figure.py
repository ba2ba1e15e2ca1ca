"""The lesion figure: what each model draws of a lesion it never saw, clean and under the strongest
corruption, with the fixed detector's reading (robustmri.clinical.lesions).

It reads the report's samples file (``samples/<direction>.npz``), whose sample slice is the test
slice with the most lesion voxels when the test subjects carry lesions; the file then holds the
slice's tissue ``labels`` and pixel ``spacing``. One row per model; columns: the real target, then
for the clean input and for the strongest corruption of the samples each model's output and
``|output - target|`` within the brain. Cyan outlines the true lesions, red what the detector finds
(its findings: candidate components of at least 8 mm²; run on this slice alone, so its white-matter
reference is this slice's, not the whole subject's). On a real T2w the detector also finds
white-matter voxels that partial volume with CSF makes bright; the scores count only what a
synthesized image finds beyond the real image's candidates as invented.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from robustmri.clinical.lesions import detect
from robustmri.data.tissues import LESION_LABELS
from robustmri.perturb import PERTURBATIONS
from robustmri.report.figures import bare_axes, error_image, error_maps, sample_rows, shown
from robustmri.results import CLEAN, SampleKey

__all__ = ["lesion_figure"]

_RC = {"font.size": 9, "axes.titlesize": 9}


def _strongest_corruption(keys: Sequence[str]) -> tuple[str, int] | None:
    """The first perturbed row of the qualitative grid that is not an attack (a corruption at its
    highest severity), or None."""
    for pert, sev in sample_rows(keys, max_rows=100)[1:]:
        cls = PERTURBATIONS.get(pert)
        if cls is not None and not getattr(cls, "needs_model", False):
            return pert, sev
    return None


def lesion_figure(samples: Path | str | dict[str, np.ndarray], *, models: Sequence[str] | None = None,
                  oracles: Collection[str] = (), title: str = "") -> Figure | None:
    """The lesion figure of a samples file (see the module docstring), or None when its slice has
    no lesion (or the file holds no tissue labels)."""
    import matplotlib.pyplot as plt

    data = dict(np.load(samples)) if not isinstance(samples, dict) else samples
    if "labels" not in data or "target" not in data:
        return None
    labels = np.asarray(data["labels"])
    lesion = np.isin(labels, LESION_LABELS)
    if not lesion.any():
        return None
    target = np.asarray(data["target"], dtype=np.float32)
    mask = np.asarray(data["mask"], dtype=bool) if "mask" in data else np.ones_like(target, dtype=bool)
    spacing = float(data["spacing"]) if "spacing" in data else 1.0
    outs = [k for k in map(SampleKey.parse, data) if k is not None and k.kind == "output"]
    present = list(dict.fromkeys(k.model for k in outs))
    models = [m for m in (models or present) if m in present]
    if not models:
        return None
    conditions: list[tuple[str, int]] = [(CLEAN, 0)]
    strongest = _strongest_corruption(list(data))
    if strongest is not None:
        conditions.append(strongest)
    vmin, vmax = np.percentile(target[mask] if mask.any() else target, [0.5, 99.5])
    errors, emax = error_maps(data, target, mask, models, conditions)

    def findings(image: np.ndarray) -> np.ndarray:
        found = np.zeros(lesion.shape, dtype=bool)
        for _, component in detect(image[None], labels[None], spacing).findings:  # components of at least 8 mm²
            found |= component
        return found

    target_found = findings(target)  # the same in every row

    def outline(ax, image: np.ndarray) -> None:
        ax.contour(lesion, levels=[0.5], colors="cyan", linewidths=0.7)
        found = target_found if image is target else findings(image)
        if found.any():
            ax.contour(found, levels=[0.5], colors="red", linewidths=0.7)

    ncols = 1 + 2 * len(conditions)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(len(models), ncols, figsize=(1.7 * ncols + 0.8, 1.8 * len(models) + 0.7), squeeze=False,
                                 layout="constrained")
        err_im = None
        for r, m in enumerate(models):
            panels: list[tuple[str, np.ndarray | None, str]] = [("real target", target, "image")]
            for pert, sev in conditions:
                name = "clean" if pert == CLEAN else f"{pert} {sev}"
                out = data.get(SampleKey("output", m, pert, sev).encode())
                panels.append((f"output, {name}", None if out is None else np.asarray(out, dtype=np.float32), "image"))
                panels.append((f"|error|, {name}", errors.get((pert, sev, m)), "error"))
            for c, (label, img, kind) in enumerate(panels):
                ax = axes[r, c]
                if bare_axes(ax, img is None):
                    pass
                elif kind == "error":
                    err_im = error_image(ax, img, emax)
                else:
                    ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
                    outline(ax, img)
                if r == 0:
                    ax.set_title(label)
            axes[r, 0].set_ylabel(shown(m, oracles), fontsize=9)
        if err_im is not None:
            cbar = fig.colorbar(err_im, ax=axes[:, -1], shrink=0.8, pad=0.08)
            cbar.set_label("absolute error")
        if title:
            fig.suptitle(title, fontsize=11)
    return fig
