"""``robustmri translate``: apply a trained run or your own model to NIfTI volumes."""

from __future__ import annotations

from pathlib import Path

import typer

from robustmri.cli import app


@app.command("translate")
def translate_cmd(
    inp: Path = typer.Option(..., "-i", "--input", help="A NIfTI file (.nii, .nii.gz) or a folder of them."),
    contrast: str = typer.Option(
        None, "--contrast", help="Translate only files whose name states this contrast (t1, T1w, t2, ...; an "
        "nnU-Net channel such as 0000 for case_0000.nii.gz). Default: the run's source contrast; files naming no "
        "contrast are kept then."),
    pattern: str = typer.Option(None, "--pattern", help="Translate only file names matching this glob, e.g. '*_0000.nii.gz'."),
    out: Path = typer.Option(..., "-o", "--output", help="Output file (for one input file) or folder (same file names)."),
    run: Path = typer.Option(None, "--run", help="Run folder written by `robustmri train` (or a bench's runs/<name>)."),
    external: str = typer.Option(None, "--external", help="Your own model instead: 'module:callable', 'file.py:callable' or a TorchScript file."),
    io_range: str = typer.Option("unit", "--io-range", help="With --external: unit ([0, 1]) or symmetric ([-1, 1])."),
    size: int = typer.Option(None, "--size", help="With --external: the slice size (px) the model expects."),
    norm: str = typer.Option(None, "--norm", help="Volume normalisation (default: the run's, from its data.json; else percentile)."),
    axis: str = typer.Option(None, "--axis", help="Slice axis: axial, coronal, sagittal or 0-2 (default: the run's; else axial)."),
    fit: str = typer.Option(None, "--fit", help="Square fit: pad or crop (default: the run's; else pad)."),
    mask: Path = typer.Option(None, "--mask", help="Brain mask of the input (NIfTI, > 0 = brain) for the normalisation; default: threshold rule."),
    like: Path = typer.Option(None, "--like", help="A volume of the target contrast: map the output back to its intensity scale."),
    batch_size: int = typer.Option(32, "--batch-size", help="Slices per batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed of a stochastic model's noise."),
) -> None:
    """Translate NIfTI volumes slice-wise with the preparation the model was trained with; each output
    keeps its input's shape, affine and header (intensities in the model's [0, 1] scale, or the
    --like volume's)."""
    from dataclasses import replace

    from robustmri.data.normalize import check_method
    from robustmri.data.slices import FITS, parse_axis
    from robustmri.errors import ConfigError
    from robustmri.translate import Preparation, list_inputs, load_translator, select_inputs, translate_path

    list_inputs(inp)  # a wrong input is refused before a model is loaded
    if contrast is not None:
        select_inputs(inp, pattern=pattern, contrast=contrast)  # and a selection that leaves nothing
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if io_range not in ("unit", "symmetric"):
        raise ConfigError(f"--io-range must be unit or symmetric, got {io_range!r}")
    predict, grid, run_dir, source = load_translator(run, external, io_range, size, device, seed)
    if run_dir is not None:
        prep, recorded = Preparation.from_run(run_dir, grid, source)
        if not recorded and (norm is None or axis is None or fit is None):
            typer.echo(f"note: {run_dir} has no data.json; using --norm {norm or prep.norm}, --axis {axis or 'axial'}, "
                       f"--fit {fit or prep.fit} (pass them to be sure they match the training)", err=True)
    else:
        prep = Preparation(size=grid)
    if norm is not None:
        prep = replace(prep, norm=check_method(norm))
    if axis is not None:
        prep = replace(prep, axis=parse_axis(axis))
    if fit is not None:
        if fit not in FITS:
            raise ConfigError(f"--fit {fit!r}: use pad or crop")
        prep = replace(prep, fit=fit)
    selection = select_inputs(inp, pattern=pattern, contrast=contrast)
    if contrast is None and source is not None and inp.is_dir():  # the run knows its input contrast
        from robustmri.translate import Selection, name_contrast

        other = [(f, f"its name states {name_contrast(f)}, the run translates {source}") for f in selection.files
                 if name_contrast(f) not in (None, source)]
        kept = [f for f in selection.files if name_contrast(f) in (None, source)]
        if not kept:
            raise ConfigError(f"no file of {inp} states the run's source contrast {source}: pass --contrast or --pattern")
        selection = Selection(kept, [*selection.skipped, *other])
    written = translate_path(inp, out, predict, prep, like=like, batch_size=batch_size, mask=mask,
                             progress=lambda text: typer.echo(text), files=selection.files)
    for f, reason in selection.skipped:
        typer.echo(f"skipped {f.name}: {reason}")
    typer.echo(f"translated {len(written)} volume(s), skipped {len(selection.skipped)} (norm {prep.norm}, axis "
               f"{prep.axis}, fit {prep.fit}, {grid} px)")
