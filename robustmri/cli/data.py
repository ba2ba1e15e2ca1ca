"""``robustmri data ...``: the embedded dataset and NIfTI data preparation."""

from __future__ import annotations

import typer

from robustmri.cli import app

data_app = typer.Typer(help="Generate, inspect and prepare MRI data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
