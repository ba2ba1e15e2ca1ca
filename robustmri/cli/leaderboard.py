"""``robustmri leaderboard``: rank the models of several bench folders scored alike."""

from __future__ import annotations

from pathlib import Path

import typer

from robustmri.cli import app


@app.command("leaderboard")
def leaderboard_cmd(
    folders: list[Path] = typer.Argument(..., help="Bench result folders (each holds leaderboard/*.json)."),
    out: Path = typer.Option(..., "--out", help="board.md, board.html or board.csv."),
) -> None:
    """Rank every model entry of FOLDERS by mean PSNR under corruptions, per direction. Entries
    must share the protocol, threat model and test data (else a one-line error names the
    difference); oracle models are listed, never ranked."""
    from robustmri.leaderboard import build_board

    path = build_board(list(folders), out)
    typer.echo(f"leaderboard: {path}")
