"""``robustmri bench``, ``robustmri merge`` and ``robustmri check``."""

from __future__ import annotations

from pathlib import Path

import typer

from robustmri.bench.suite import builtin_suites
from robustmri.cli import app


@app.command("bench")
def bench_cmd(
    suite: str = typer.Option("smoke", "--suite", help=f"A built-in suite ({', '.join(builtin_suites())}) or a .toml path."),
    out: Path = typer.Option(None, "--out", help="Results folder (default reports/<suite>)."),
    device: str = typer.Option(None, "--device", help="Override the suite's device: auto, cpu, cuda, cuda:N."),
    shard: str = typer.Option(None, "--shard", help="Run only part i/n of the (model, direction, seed) jobs."),
    cache: Path = typer.Option(None, "--cache", help="Cache folder for prepared data (default ~/.cache/robustmri)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the report at the end."),
    executor: str = typer.Option("local", "--executor", help="local (this process; --jobs N: N pinned worker processes), submitit-local (a subprocess per task) or slurm (submitit: a job per training, a job array per model's scoring)."),
    jobs: int = typer.Option(1, "--jobs", help="local, submitit-local: tasks run side by side, each pinned to its share of the CPUs."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (jobs, resources, cells still to compute) and stop."),
    compile: bool = typer.Option(False, "--compile", help="Train with compiled networks (torch.compile): faster on a GPU, the same results to float precision."),
    partition: str = typer.Option(None, "--partition", help="slurm: partition (default: the suite's [slurm], else the cluster's)."),
    gpus: int = typer.Option(None, "--gpus", help="slurm: GPUs per job (default: the suite's [slurm], else 0)."),
    cpus: int = typer.Option(None, "--cpus", help="slurm: CPUs per task, torch uses exactly these (default 2)."),
    mem_gb: float = typer.Option(None, "--mem-gb", help="slurm: memory per task in GB (default 8)."),
    time_min: int = typer.Option(None, "--time-min", help="slurm: time limit per job in minutes (default 240)."),
    eval_tasks: int = typer.Option(None, "--eval-tasks", help="slurm: array tasks per model's evaluation (default 4)."),
    train_processes: int = typer.Option(None, "--train-processes", help="slurm: DDP processes per training job (default: one per GPU, else 1)."),
) -> None:
    """Train (or reuse) every model of a suite and score it under every perturbation and severity."""
    import time

    from robustmri.bench import load_suite, run_suite
    from robustmri.bench.executors import ExecutorSettings, make_executor
    from robustmri.bench.plan import parse_shard, shard_jobs
    from robustmri.bench.resources import SlurmOptions
    from robustmri.bench.tasks import format_plan, plan_tasks
    from robustmri.errors import ConfigError, DataError
    from robustmri.publish import publish

    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    s = load_suite(suite)
    part = parse_shard(shard)
    target = out or Path("reports") / s.name
    given = dict(partition=partition, gpus=gpus, cpus=cpus, mem_gb=mem_gb, time_min=time_min, eval_tasks=eval_tasks,
                 train_processes=train_processes)
    opts = SlurmOptions(**{**s.slurm, **{k: v for k, v in given.items() if v is not None}})  # command line wins
    opts.check()
    runner = make_executor(executor, ExecutorSettings(jobs=jobs, slurm=opts, echo=typer.echo))
    if executor == "slurm" and shard is not None:
        raise ConfigError("--shard splits a suite by hand; with --executor slurm the scheduler does it: drop --shard")
    if dry_run:
        tasks = plan_tasks(s, target, shard_jobs(s, part), processes=runner.processes, chunks=runner.chunks)
        typer.echo(format_plan(s, tasks, runner.describe()))
        return
    start = time.perf_counter()
    path = run_suite(s, target, device=device, shard=part, cache=cache, compile=compile, executor=runner)
    publish(path, report=not no_report)
    typer.echo(f"suite {s.name}: results in {path / 'results.csv'} ({time.perf_counter() - start:.1f} s)")
    from robustmri.report.summary import bench_summary

    page = path / "report" / "report.html"
    try:
        typer.echo(bench_summary(path, report=page if page.is_file() else None))
    except DataError as exc:  # a shard without clean rows, say: the files are there, the summary is not
        typer.echo(f"no summary ({exc})")


@app.command("merge")
def merge_cmd(
    out: Path = typer.Argument(..., help="Folder to merge into."),
    shards: list[Path] = typer.Argument(..., help="Shard result folders written by `robustmri bench --shard i/n`."),
) -> None:
    """Join the results of `bench --shard` runs into one results folder (and rebuild its report)."""
    from robustmri.bench import merge_results
    from robustmri.publish import publish

    path = merge_results(out, [str(s) for s in shards])
    publish(path)
    typer.echo(f"merged {len(shards)} shards into {path / 'results.csv'}")


@app.command("check")
def check_cmd(
    results: Path = typer.Argument(..., help="Results folder written by `robustmri bench`."),
    reference: Path = typer.Option(..., "--reference", help="Reference JSON, e.g. reports/reference/smoke.json."),
    tolerance: str = typer.Option(None, "--tolerance", help="Replace the training layer's tolerances, e.g. psnr=0.5,ssim=0.01."),
    update: bool = typer.Option(False, "--update", help="Rewrite the reference (both layers, weights included) on purpose."),
    variants: str = typer.Option(
        None, "--variants", help="With --update: float-order variants to retrain under (default: all), e.g. threads1."
    ),
    layer: str = typer.Option("both", "--layer", help="Check only one layer: evaluation, training or both."),
    cache: Path = typer.Option(None, "--cache", help="Cache folder for prepared data (default ~/.cache/robustmri)."),
    device: str = typer.Option(None, "--device", help="Score the evaluation layer here (default: the suite's), e.g. cuda against a CPU reference."),
) -> None:
    """Check metric drift in two layers: evaluation (scoring code, on committed reference weights) and
    training (freshly trained models, at tolerances measured from training's own spread). Exit 1
    naming every drifted cell and its layer."""
    from robustmri.bench.drift import FLOAT_ORDER_VARIANTS, check_drift, update_reference
    from robustmri.errors import ConfigError

    tol: dict[str, float] = {}
    if tolerance:
        try:
            for part in tolerance.split(","):
                k, v = part.split("=")
                tol[k.strip()] = float(v)
        except ValueError:
            raise ConfigError(f"bad --tolerance {tolerance!r}: use metric=value pairs such as psnr=0.5,ssim=0.01") from None
    if layer not in ("evaluation", "training", "both"):
        raise ConfigError(f"bad --layer {layer!r}: use evaluation, training or both")
    show = True
    if update:
        names = tuple(v.strip() for v in variants.split(",")) if variants else tuple(FLOAT_ORDER_VARIANTS)
        moved = update_reference(results, reference, variants=names, cache=cache, progress=show, log=typer.echo)
        typer.echo(f"wrote reference {reference} (weights in {reference.with_name(reference.stem + '-weights')})")
        if moved.get("previous"):
            for name in ("evaluation", "training"):
                cells = moved.get(name, [])
                typer.echo(f"{name} layer: {len(cells)} cell(s) moved beyond the previous reference's tolerances")
                for d in sorted(cells, key=lambda d: -abs((d.new or 0) - (d.old or 0)) / max(d.tolerance, 1e-12))[:10]:
                    typer.echo(f"  {d.describe()}")
        return
    layers = ("evaluation", "training") if layer == "both" else (layer,)
    report = check_drift(results, reference, tol or None, cache=cache, progress=show, layers=layers, device=device)
    if report.ok:
        counts = ", ".join(f"{n} {report.compared[n]} cells" for n in layers)
        typer.echo(f"no drift: {results} matches {reference} ({counts})")
        return
    if report.evaluation:
        typer.echo(
            f"evaluation drift: {len(report.evaluation)} cell(s) of the reference weights scored differently "
            "(scoring code changed: data, perturbations, attacks, metrics, protocol or aggregation):", err=True,
        )
        for d in report.evaluation:
            typer.echo(f"  {d.describe()}", err=True)
    if report.training:
        typer.echo(
            f"training drift: {len(report.training)} cell(s) of the freshly trained models moved beyond training's "
            "measured spread (training code or a model's defaults changed"
            + (", or follows from the evaluation drift above" if report.evaluation else "") + "):", err=True,
        )
        for d in report.training:
            typer.echo(f"  {d.describe()}", err=True)
    if report.environment:
        typer.echo(
            f"note: this environment differs from the reference's ({'; '.join(report.environment)}); the tolerances "
            "hold within the reference's (the pinned CPU install), so part or all of this drift may come from the "
            "environment rather than the code (docs/drift.md)", err=True,
        )
    raise typer.Exit(1)
