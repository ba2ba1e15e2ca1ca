"""``robustmri report``: tables, figures and report.html from a benchmark's results folder."""

from __future__ import annotations

from pathlib import Path

import typer

from robustmri.cli import app


@app.command("report")
def report_cmd(
    results_dir: Path = typer.Argument(..., help="RESULTS_DIR written by `robustmri bench` (holds results.csv)."),
    out: Path = typer.Option(None, "--out", help="Report folder (default RESULTS_DIR/report); replaced as a whole."),
    error: str = typer.Option("ssim", "--error", help="Error of the mCE score: 'ssim' (1 - SSIM) or 'mae'."),
) -> None:
    """Write RESULTS_DIR/report/: tables (.md/.tex/.csv), figures (.png/.pdf), summary.csv and report.html."""
    from robustmri.report.build import build_report

    page = build_report(results_dir, out_dir=out, error=error)  # type: ignore[arg-type]
    folder = page.parent
    n_tables = len(list((folder / "tables").glob("*.md")))
    n_figures = len(list((folder / "figures").glob("*.png")))
    typer.echo(f"{n_tables} tables, {n_figures} figures in {folder}")
    typer.echo(f"wrote {page}")
