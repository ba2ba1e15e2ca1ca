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
    batch_size: int = typer.Option(32, "--batch-size", help="Slices per batch (the scores do not depend on it: a stochastic model's noise is drawn per slice)."),
    seed: int = typer.Option(0, "--seed", help="Seed of a stochastic model's noise (the bench's eval.seed)."),
    save_predictions: Path = typer.Option(
        None, "--save-predictions", help="Also write pred/target/source/mask (N, H, W), subject and slice to this .npz."
    ),
    cache: Path = typer.Option(None, "--cache", help="Cache folder for prepared data (default ~/.cache/robustmri)."),
) -> None:
    """Score a trained model on clean data; writes RUN_DIR/eval-<split>-<protocol>.csv (one row per slice).

    The same scoring loop as `robustmri bench` (its clean cell): the same seed and batch size give
    the same numbers. The data are prepared with the protocol's volume normalisation, and
    predictions are scored in the protocol's intensity range."""
    from robustmri.atomic import atomic_path
    from robustmri.data.resolve import load_split_tensors, resolve_data
    from robustmri.device import resolve_device
    from robustmri.errors import ConfigError
    from robustmri.evaluate import save_predictions as write_predictions
    from robustmri.evaluate import score_clean
    from robustmri.protocol import get_protocol
    from robustmri.train.engine import load_trained

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if save_predictions is not None and save_predictions.suffix != ".npz":
        raise ConfigError(f"--save-predictions {save_predictions}: give a file name ending in .npz")
    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split {split!r}: use train, val or test")
    if save_predictions is not None:
        parent = save_predictions.expanduser().resolve().parent
        blocking = next((p for p in (parent, *parent.parents) if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise ConfigError(f"--save-predictions {save_predictions}: {blocking} is a file, not a folder; choose another path")
        if save_predictions.is_dir():
            raise ConfigError(f"--save-predictions {save_predictions} is a folder: give a file name ending in .npz")
    proto = get_protocol(protocol)
    dev = resolve_device(device)
    model, config = load_trained(run_dir, device=dev)
    spec = resolve_data(data, config.image_size, (config.source, config.target), cache=cache, progress=True,
                        norm=proto.volume_norm)
    test = load_split_tensors(spec, split, config.source, config.target)
    scores = score_clean(model, test, proto, batch_size=batch_size, device=dev, seed=seed, keep=save_predictions is not None)
    frame = scores.frame
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
    if save_predictions is not None:
        typer.echo(f"wrote {write_predictions(save_predictions, scores, test)}")
