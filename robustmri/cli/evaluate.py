"""``robustmri eval``: clean metrics of a trained run under a declared protocol."""

from __future__ import annotations

from pathlib import Path

import typer

from robustmri.cli import app


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder written by `robustmri train`."),
    data: str = typer.Option(
        None, "--data", help="'embedded[:N]', a prepared folder or a NIfTI dataset root (default: the data the run was trained on, "
        "as recorded in its data.json, with its own split)."
    ),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    protocol: str = typer.Option("robustmri", "--protocol", help="Scoring protocol (robustmri, resvit, syndiff, reggan, selfrdb)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(32, "--batch-size", help="Slices per batch (the scores do not depend on it: a stochastic model's noise is drawn per slice)."),
    seed: int = typer.Option(0, "--seed", help="Seed of a stochastic model's noise (the bench's eval.seed)."),
    save_predictions: Path = typer.Option(
        None, "--save-predictions", help="Also write pred/target/source/mask (N, H, W), subject and slice to this .npz."
    ),
    cache: Path = typer.Option(None, "--cache", help="Cache folder for prepared data (default ~/.cache/robustmri)."),
    allow_train_subjects: bool = typer.Option(
        False, "--allow-train-subjects", help="Score subjects the run was trained on (refused otherwise); the output says so."
    ),
) -> None:
    """Score a trained model on clean data; writes RUN_DIR/eval-<split>-<protocol>.csv (one row per slice).

    The same scoring loop as `robustmri bench` (its clean cell): with no options, a bench run gives
    the bench's clean numbers. By default the data are the run's own (its data.json: the source,
    split and subjects it was trained with); subjects it trained on are refused unless
    --allow-train-subjects. The data are prepared with the protocol's volume normalisation, and
    predictions are scored in the protocol's intensity range."""
    from robustmri.atomic import atomic_path
    from robustmri.data.resolve import load_split_tensors, resolve_data
    from robustmri.device import resolve_device
    from robustmri.errors import ConfigError
    from robustmri.clean_scoring import save_predictions as write_predictions
    from robustmri.clean_scoring import score_clean
    from robustmri.protocol import get_protocol
    from robustmri.results import aggregate_protocol
    from robustmri.train.engine import load_trained
    from robustmri.translate import run_data_identity

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
    identity = run_data_identity(run_dir)
    contrasts = (config.source, config.target)
    if data is None and identity is not None and identity.get("source"):
        spec = resolve_data(str(identity["source"]), config.image_size, contrasts, cache=cache, progress=True,
                            norm=proto.volume_norm, embedded_options=identity.get("embedded_options") or None,
                            split=tuple(identity["split"]) if identity.get("split") is not None else None)
        origin = "the run's own data"
    else:
        if data is None:
            typer.echo(f"{run_dir} records no data it was trained on (an older run): scoring 'embedded'; pass --data to choose")
        spec = resolve_data(data or "embedded", config.image_size, contrasts, cache=cache, progress=True, norm=proto.volume_norm)
        origin = "--data" if data is not None else "the default data"
    test = load_split_tensors(spec, split, config.source, config.target)
    trained_on = sorted(set(test.subject_labels(slice(None))) & set(((identity or {}).get("subjects") or {}).get("train", [])))
    if trained_on and not allow_train_subjects:
        shown = ", ".join(trained_on[:4]) + (", ..." if len(trained_on) > 4 else "")
        raise ConfigError(
            f"{run_dir} was trained on {len(trained_on)} of the subjects of the {split} split of {spec.description} "
            f"({shown}): their scores measure memory, not translation; score the test split of the run's own data (no "
            "--data), other data, or pass --allow-train-subjects to score them anyway"
        )
    scores = score_clean(model, test, proto, batch_size=batch_size, device=dev, seed=seed, keep=save_predictions is not None)
    frame = scores.frame
    out = run_dir / f"eval-{split}-{proto.name}.csv"
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    summary = aggregate_protocol(frame, proto)
    typer.echo(
        f"{config.model} ({config.size}) {config.source}->{config.target} on {spec.description} ({origin}), {split} split: "
        f"{frame['subject'].nunique()} subjects, {len(frame)} slices; protocol {proto.id}"
    )
    if trained_on:
        typer.echo(f"  note: {len(trained_on)} of these subjects were in the run's training split (--allow-train-subjects)")
    for _, row in summary.iterrows():
        typer.echo(f"  {row['metric']:>5}: {row['mean']:.4f} +- {row['std']:.4f} (median {row['median']:.4f}, n={int(row['n'])})")
    typer.echo(f"wrote {out}")
    if save_predictions is not None:
        typer.echo(f"wrote {write_predictions(save_predictions, scores, test)}")
