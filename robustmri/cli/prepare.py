"""``robustmri data prepare``: NIfTI folder -> cached normalised slices + subject split."""

from __future__ import annotations

from pathlib import Path

import typer

from robustmri.cli.data import data_app


@data_app.command("prepare")
def prepare_command(
    root: Path = typer.Argument(..., help="Dataset folder (IXI, BraTS or ROOT/<subject>/<contrast>.nii.gz)."),
    out: Path = typer.Option(..., "--out", help="Cache folder for prepared slices, split.json, prepared.json."),
    layout: str = typer.Option("auto", "--layout", help="auto, ixi, brats or generic."),
    contrasts: str = typer.Option(
        "", "--contrasts", help="Comma-separated contrasts to prepare (default: all found), e.g. t1,t2."
    ),
    size: int = typer.Option(128, "--size", help="Side of the square slices, pixels."),
    slices: str = typer.Option(
        "brain:0.1", "--slices", help="central:N, brain:F (fraction of brain voxels >= F) or all."
    ),
    norm: str = typer.Option("percentile", "--norm", help="none, minmax, percentile, mean or zscore."),
    split: str = typer.Option(
        "", "--split", help="train,val,test counts (25,5,10) or fractions (0.7,0.1,0.2); default 25/5/10-proportional."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the subject shuffle."),
    split_file: Path | None = typer.Option(
        None, "--split-file", help="Reuse an existing split.json instead of --split/--seed."
    ),
    resample: bool = typer.Option(
        False, "--resample", help="Resample volumes on another grid onto the reference grid."
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="Contrast whose grid the others must match (default t2 if present)."
    ),
    register: str | None = typer.Option(
        None, "--register", help="rigid or affine: register each subject's other contrasts to the reference one "
        "(mutual information, SimpleITK); transforms and QC montages go to <entry>/registration/."
    ),
    axis: str = typer.Option("axial", "--axis", help="axial, coronal, sagittal or a voxel axis 0-2."),
    fit: str = typer.Option("pad", "--fit", help="pad (zero-pad to square) or crop (centre crop), then resize."),
    reorient: bool = typer.Option(True, "--reorient/--no-reorient", help="Reorient volumes to RAS first."),
) -> None:
    """Prepare a NIfTI dataset: normalised square slices in a reusable cache + a subject split."""
    from robustmri.data.prepare import prepare_dataset

    names = [c.strip() for c in contrasts.split(",") if c.strip()] or None
    result = prepare_dataset(
        root,
        out,
        layout=layout,
        contrasts=names,
        size=size,
        slices=slices,
        norm=norm,
        split=split or None,
        seed=seed,
        split_file=split_file,
        resample=resample,
        reference=reference,
        axis=axis,
        fit=fit,
        reorient=reorient,
        progress=True,
        register=register,
    )
    typer.echo(result.summary())
