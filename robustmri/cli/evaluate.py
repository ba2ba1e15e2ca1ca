"""``robustmri eval``: clean metrics of a trained run under a declared protocol."""

from __future__ import annotations

from pathlib import Path

import typer

from robustmri.cli import app


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder written by `robustmri train`."),
    data: str = typer.Option("embedded", "--data", help="'embedded[:N]', a prepared folder or a NIfTI dataset root."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    protocol: str = typer.Option("robustmri", "--protocol", help="Scoring protocol (robustmri, resvit, syndiff, reggan, selfrdb)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(16, "--batch-size", help="Slices per inference batch."),
    cache: Path = typer.Option(None, "--cache", help="Cache folder for prepared data (default ~/.cache/robustmri)."),
) -> None:
    """Score a trained model on clean data; writes RUN_DIR/eval-<split>-<protocol>.csv (one row per slice)."""
    from robustmri.atomic import atomic_path
    from robustmri.data.resolve import load_split_tensors, resolve_data
    from robustmri.evaluate import evaluate
    from robustmri.protocol import get_protocol
    from robustmri.train.engine import load_trained, resolve_device

    proto = get_protocol(protocol)
    dev = resolve_device(device)
    model, config = load_trained(run_dir, device=dev)
    spec = resolve_data(data, config.image_size, (config.source, config.target), cache=cache, progress=True)
    test = load_split_tensors(spec, split, config.source, config.target)
    frame = evaluate(model, test, proto, batch_size=batch_size, device=dev, seed=config.seed)
    out = run_dir / f"eval-{split}-{proto.name}.csv"
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    summary = proto.aggregate(frame)
    typer.echo(
        f"{config.model} ({config.size}) {config.source}->{config.target} on {spec.description}, {split} split: "
        f"{frame['subject'].nunique()} subjects, {len(frame)} slices; protocol {proto.id}"
    )
    for _, row in summary.iterrows():
        typer.echo(f"  {row['metric']:>5}: {row['mean']:.4f} +- {row['std']:.4f} (median {row['median']:.4f}, n={int(row['n'])})")
    typer.echo(f"wrote {out}")
