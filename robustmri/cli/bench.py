"""``robustmri bench``, ``robustmri merge`` and ``robustmri check``."""

from __future__ import annotations

from pathlib import Path

import typer

from robustmri.cli import app


@app.command("bench")
def bench_cmd(
    suite: str = typer.Option("smoke", "--suite", help="Suite name (smoke, quick, full, paper, ablation) or a .toml path."),
    out: Path = typer.Option(None, "--out", help="Results folder (default reports/<suite>)."),
    device: str = typer.Option(None, "--device", help="Override the suite's device: auto, cpu, cuda, cuda:N."),
    shard: str = typer.Option(None, "--shard", help="Run only part i/n of the (model, direction, seed) jobs."),
    cache: Path = typer.Option(None, "--cache", help="Cache folder for prepared data (default ~/.cache/robustmri)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the report at the end."),
) -> None:
    """Train (or reuse) every model of a suite and score it under every perturbation and severity."""
    import time

    from robustmri.bench import load_suite, run_suite
    from robustmri.bench.runner import parse_shard

    s = load_suite(suite)
    part = parse_shard(shard)
    target = out or Path("reports") / s.name
    start = time.perf_counter()
    path = run_suite(s, target, device=device, shard=part, cache=cache, report=not no_report)
    typer.echo(f"suite {s.name}: results in {path / 'results.csv'} ({time.perf_counter() - start:.1f} s)")
    if (path / "report" / "report.html").is_file():
        typer.echo(f"report: {path / 'report' / 'report.html'}")


@app.command("merge")
def merge_cmd(
    out: Path = typer.Argument(..., help="Folder to merge into."),
    shards: list[Path] = typer.Argument(..., help="Shard result folders written by `robustmri bench --shard i/n`."),
) -> None:
    """Join the results of `bench --shard` runs into one results folder (and rebuild its report)."""
    from robustmri.bench import merge_results

    path = merge_results(out, [str(s) for s in shards])
    typer.echo(f"merged {len(shards)} shards into {path / 'results.csv'}")


@app.command("check")
def check_cmd(
    results: Path = typer.Argument(..., help="Results folder written by `robustmri bench`."),
    reference: Path = typer.Option(..., "--reference", help="Reference JSON, e.g. reports/reference/smoke.json."),
    tolerance: str = typer.Option(None, "--tolerance", help="Override tolerances, e.g. psnr=0.5,ssim=0.01."),
    update: bool = typer.Option(False, "--update", help="Rewrite the reference from these results (on purpose)."),
) -> None:
    """Compare aggregated metrics with a committed reference; exit 1 naming every drifted cell."""
    from robustmri.bench import check_drift, write_reference
    from robustmri.errors import ConfigError

    tol: dict[str, float] = {}
    if tolerance:
        try:
            for part in tolerance.split(","):
                k, v = part.split("=")
                tol[k.strip()] = float(v)
        except ValueError:
            raise ConfigError(f"bad --tolerance {tolerance!r}: use metric=value pairs such as psnr=0.5,ssim=0.01") from None
    if update:
        path = write_reference(results, reference, tol or None)
        typer.echo(f"wrote reference {path}")
        return
    drifts = check_drift(results, reference, tol or None)
    if not drifts:
        typer.echo(f"no drift: {results} matches {reference}")
        return
    typer.echo(f"{len(drifts)} cell(s) drifted beyond tolerance:", err=True)
    for d in drifts:
        typer.echo(f"  {d.describe()}", err=True)
    raise typer.Exit(1)
