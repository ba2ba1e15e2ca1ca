"""``robustmri data ...``: generate the embedded dataset, draw montages, prepare NIfTI data."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from robustmri.cli import app

data_app = typer.Typer(help="Generate, inspect and prepare MRI data.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to create (ROOT/sub-XXX/{t1,t2,pd,flair,seg}.nii.gz)."),
    subjects: int = typer.Option(20, "--subjects", help="Number of subjects."),
    size: int = typer.Option(128, "--size", help="In-plane matrix size (e.g. 64, 128, 256)."),
    slices: int = typer.Option(32, "--slices", help="Axial slices in the slab."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed: same seed, byte-identical files."),
    lesions: float = typer.Option(0.0, "--lesions", help="Fraction of subjects with a tumour (core + oedema)."),
    misregistration: float = typer.Option(
        0.0, "--misregistration", help="Max rigid shift (mm) and in-plane rotation (deg) of t2/pd/flair against t1."
    ),
    variety: str = typer.Option(
        "varied", "--variety", help="varied (SynthSeg-like anatomy, site profiles) or classic (format 1: one template, one protocol)."
    ),
    acquisition: str = typer.Option(
        None, "--acquisition", help="varied (a site profile per subject) or fixed (--field, --snr); default: the variety's."
    ),
    snr: float = typer.Option(
        None, "--snr", help="Mean brain signal / noise sigma (Rician), fixed acquisition: default 30; 0 = noiseless in both."
    ),
    bias: float = typer.Option(0.3, "--bias", help="Bias-field strength (0 = none)."),
    head: bool = typer.Option(False, "--head", help="Add skull, scalp and CSF rim around the brain (not skull-stripped)."),
    field: str = typer.Option(None, "--field", help="Field strength for tissue values, fixed acquisition: 1.5T (default) or 3T."),
    contrasts: str = typer.Option("t1,t2,pd,flair", "--contrasts", help="Comma-separated contrasts to simulate."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
) -> None:
    """Simulate a multi-contrast brain dataset on the MNI152 anatomy and write it as NIfTI."""
    from robustmri.progress import progress_bar

    from robustmri.data.simulator import SynthConfig

    from robustmri.data.embedded import write_dataset

    from robustmri.errors import ConfigError

    if variety not in ("varied", "classic"):
        raise ConfigError(f"bad --variety {variety!r}: use varied or classic")
    fields = dict(size=size, n_slices=slices, seed=seed, lesion_rate=lesions, misregistration_mm=misregistration, bias_strength=bias, head=head,
                  contrasts=tuple(c for c in contrasts.split(",") if c.strip()))
    if acquisition is not None:
        fields["acquisition"] = acquisition
    if snr is not None:
        fields["snr"] = snr
    if field is not None:
        fields["field_strength"] = field
    config = SynthConfig.classic(**fields) if variety == "classic" else SynthConfig(**fields)
    if config.acquisition == "varied" and field is not None:
        raise ConfigError("--field applies to a fixed acquisition (site profiles draw the field per subject): "
                          "add --acquisition fixed")
    if config.acquisition == "varied" and snr not in (None, 0.0):
        raise ConfigError("--snr applies to a fixed acquisition (site profiles draw the SNR in 15-40 per contrast): "
                          "add --acquisition fixed, or --snr 0 for noiseless data")
    start = time.perf_counter()

    def progress(it):  # type: ignore[no-untyped-def]
        return progress_bar(it, total=subjects, desc="synth", unit="subject")

    path = write_dataset(out, subjects, config, overwrite=overwrite, progress=progress)
    typer.echo(
        f"wrote {subjects} subjects ({size}x{size}x{slices}, {', '.join(config.contrasts)}) to {path} "
        f"in {time.perf_counter() - start:.1f} s"
    )


@data_app.command("show")
def show(
    root: Path = typer.Argument(..., help="Dataset folder (ROOT/<subject>/<contrast>.nii.gz)."),
    out: Path = typer.Option(..., "--out", help="Image to write (.png or .pdf)."),
    subjects: int = typer.Option(4, "--subjects", help="Number of subjects (rows)."),
) -> None:
    """Draw the middle axial slice of every contrast for the first subjects."""
    from robustmri.data.montage import draw_montage
    from robustmri.errors import ConfigError

    if subjects < 1:
        raise ConfigError(f"--subjects {subjects}: draw at least one subject")
    path = draw_montage(root, out, max_subjects=subjects)
    typer.echo(f"wrote {path}")
