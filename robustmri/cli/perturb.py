"""``robustmri perturb ...``: list the perturbations and render one slice under all of them.

``show`` covers the non-adversarial corruptions only: an attack is defined against a model, and
attacking an identity or blur stand-in model would show a meaningless picture.
"""

from __future__ import annotations

from pathlib import Path

import typer

from robustmri.cli import app
from robustmri.errors import ConfigError, DataError

perturb_app = typer.Typer(help="List perturbations and preview them on a slice.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(perturb_app, name="perturb")


@perturb_app.command("list")
def list_cmd(
    family: str = typer.Option(None, "--family", help="Only this family (noise, image, kspace, geometric, adversarial)."),
) -> None:
    """Print every perturbation: name, family and its parameters at severities 1..5."""
    from robustmri.perturb import PERTURBATIONS, list_perturbations
    from robustmri.perturb.calibration import format_params

    names = list_perturbations(family)
    w_name = max(len("name"), *(len(n) for n in names))
    w_fam = max(len("family"), *(len(PERTURBATIONS[n].family) for n in names))
    typer.echo(f"{'name':<{w_name}}  {'family':<{w_fam}}  sev  parameters")
    for n in names:
        cls = PERTURBATIONS[n]
        for sev in range(1, 6):
            left = f"{n:<{w_name}}  {cls.family:<{w_fam}}" if sev == 1 else " " * (w_name + 2 + w_fam)
            typer.echo(f"{left}  {sev:>3}  {format_params(dict(cls.severities[sev]))}")
    typer.echo("severity 0 is the clean input; adversarial attacks need a model (robustmri.perturb.attack).")


def _load_slice(data: Path, contrast: str, subject: str | None, index: int | None):
    import nibabel as nib
    import numpy as np
    import torch

    if not data.is_dir():
        raise DataError(f"data folder {data} does not exist; create it with `robustmri data` or pass the right --data")
    subjects = sorted(p for p in data.iterdir() if p.is_dir() and p.name.startswith("sub-"))
    if subject is not None:
        subjects = [p for p in subjects if p.name == subject]
    if not subjects:
        what = f"subject {subject}" if subject else "sub-* folders"
        raise DataError(f"no {what} in {data}; point --data at a folder in the embedded layout (DIR/sub-000/t1.nii.gz)")
    path = subjects[0] / f"{contrast}.nii.gz"
    if not path.is_file():
        raise DataError(f"{path} does not exist; pick a contrast present in {subjects[0]} with --contrast")
    try:
        nii = nib.load(str(path))
        vol = np.asarray(nii.get_fdata(dtype=np.float32))
        spacing = float(np.mean(np.asarray(nii.header.get_zooms()[:2], dtype=np.float64)))
    except Exception as exc:  # nibabel raises many kinds of errors on corrupt files
        raise DataError(f"cannot read {path} ({type(exc).__name__}); re-create the file, it is not a valid NIfTI") from None
    if vol.ndim != 3:
        raise DataError(f"{path} has shape {vol.shape}; expected a 3-D volume (H, W, S)")
    n = vol.shape[2]
    k = n // 2 if index is None else index
    if not 0 <= k < n:
        raise ConfigError(f"--slice {k} is out of range for {path} with {n} slices; use 0..{n - 1}")
    img = vol[:, :, k]
    positive = vol[vol > 0]
    scale = float(np.percentile(positive, 99.5)) if positive.size else 1.0
    img = np.clip(img / (scale if scale > 0 else 1.0), 0.0, 1.0)
    if not spacing > 0:
        raise DataError(f"{path} has a voxel size of {spacing} mm in-plane; fix its header (pixdim)")
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None], path, k, spacing


@perturb_app.command("show")
def show_cmd(
    data: Path = typer.Option(..., "--data", help="Folder in the embedded layout (DIR/sub-000/t1.nii.gz)."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    contrast: str = typer.Option("t1", "--contrast", help="Contrast file to read (t1, t2, pd, flair)."),
    slice_: int = typer.Option(None, "--slice", help="Axial slice index (default: the middle slice)."),
    subject: str = typer.Option(None, "--subject", help="Subject folder (default: the first sub-*)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random perturbations."),
) -> None:
    """Render one slice under every non-adversarial perturbation x severity as a PNG grid.

    Intensities are divided by the volume's 99.5th percentile of positive voxels and clipped to
    [0, 1]. Adversarial attacks are not shown: they are only meaningful against a real model.
    """
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out} must end in .png")
    x, path, k, spacing = _load_slice(data, contrast, subject, slice_)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from robustmri.atomic import atomic_path
    from robustmri.data.montage import display_axial
    from robustmri.perturb import corruption_grid, list_perturbations
    from robustmri.perturb.calibration import masked_psnr

    names = list_perturbations(include_adversarial=False)
    full = torch.ones_like(x, dtype=torch.bool)
    ncol = 6
    fig, axes = plt.subplots(len(names), ncol, figsize=(1.55 * ncol + 0.9, 1.55 * len(names) + 0.6), squeeze=False)
    for cell in corruption_grid(x, names=names, severities=range(0, 6), seed=seed, spacing_mm=spacing):
        ax = axes[names.index(cell.name)][cell.severity]
        ax.imshow(display_axial(cell.images[0, 0].numpy()), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if cell.severity > 0:
            psnr = float(masked_psnr(x, cell.images, full)[0])
            ax.text(0.97, 0.03, f"{psnr:.1f} dB", transform=ax.transAxes, ha="right", va="bottom",
                    fontsize=7, color="yellow")
        if cell.severity == 0:
            ax.set_ylabel(cell.name.replace("_", " "), fontsize=9, rotation=90)
    for col in range(ncol):
        axes[0][col].set_title("clean" if col == 0 else f"severity {col}", fontsize=9)
    fig.suptitle(f"{path.parent.name}/{path.name}, slice {k}: PSNR vs clean (whole slice, seed {seed})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    typer.echo(f"wrote {out} ({len(names)} perturbations x severities 0-5)")
