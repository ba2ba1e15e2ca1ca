"""``robustmri train``: train a registered model with the engine (also under ``torchrun``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from robustmri.cli import app


@app.command("train")
def train_cmd(
    model: str = typer.Option(..., "--model", help="Registered model name (see `robustmri models`)."),
    out: Path = typer.Option(..., "--out", help="Run folder (config, checkpoints, log)."),
    size: str = typer.Option("tiny", "--size", help="Model size preset: tiny, small or paper."),
    data: str = typer.Option("embedded", "--data", help="'embedded[:N]', a prepared folder or a NIfTI dataset root."),
    source: str = typer.Option("t1", "--source", help="Source contrast."),
    target: str = typer.Option("t2", "--target", help="Target contrast."),
    image_size: Optional[int] = typer.Option(  # noqa: UP007 (typer reads the annotation)
        None, "--image-size", help="Square slice size (pixels) to prepare the data at; default: a prepared folder's own size, else 64."
    ),
    steps: int = typer.Option(500, "--steps", help="Optimisation steps."),
    batch_size: int = typer.Option(4, "--batch-size", help="Slices per step and process."),
    seed: int = typer.Option(0, "--seed", help="Seed for weights, batch order and training randomness."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on CUDA), bf16 or off."),
    compile: bool = typer.Option(False, "--compile", help="Compile the networks (torch.compile): faster on a GPU, the same losses to float precision."),
    channels_last: str = typer.Option("auto", "--channels-last", help="auto (on for CUDA), on or off: the convolutions' memory layout."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", help="Steps between checkpoints."),
    cache: Path = typer.Option(None, "--cache", help="Cache folder for prepared data (default ~/.cache/robustmri)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    extend: bool = typer.Option(
        False, "--extend", help="With --resume and a larger --steps: continue past the planned total on schedules recomputed for the new one."
    ),
    generator: str = typer.Option("pix2pix", "--generator", help="kd_attack only: the wrapped generator."),
    variant: str = typer.Option("full", "--variant", help="kd_attack only: g_only, g_attack, g_refine, g_attack_refine, g_kd, full or teacher_oracle."),
) -> None:
    """Train a translation model; `--resume` continues exactly where the last checkpoint left off."""
    from robustmri.data.resolve import load_split_tensors, resolve_data
    from robustmri.errors import ConfigError
    from robustmri.train.engine import TrainConfig, train

    if extend and not resume:
        raise ConfigError("--extend continues an existing run: add --resume")

    config = TrainConfig(
        model=model, size=size, source=source, target=target, steps=steps, batch_size=batch_size, seed=seed,
        checkpoint_every=checkpoint_every, amp=amp, device=device, compile=compile, channels_last=channels_last,
        model_options={"generator": generator, "variant": variant} if model == "kd_attack" else {},
    )
    from robustmri.models.registry import SIZES, resolve_builder

    # every choice that can be checked without data is checked before any data work
    resolve_builder(config.model)
    if size not in SIZES:
        raise ConfigError(f"unknown size {size!r}: use one of {', '.join(SIZES)}")
    if model == "kd_attack":
        from robustmri.kd.model import VARIANTS

        if generator == "kd_attack":
            raise ConfigError("kd_attack cannot wrap itself: choose a generator such as pix2pix")
        resolve_builder(generator)
        if variant not in VARIANTS:
            raise ConfigError(f"unknown kd_attack variant {variant!r}: use one of {', '.join(VARIANTS)}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: pass a folder for the run")
    from robustmri.train.distributed import barrier, init_distributed
    from robustmri.device import resolve_device

    dist = init_distributed(resolve_device(device).type)
    main_process = dist.is_main
    contrasts = (config.source, config.target)
    if not main_process:
        barrier(dist)  # rank 0 prepares the data first; the others then find it in the cache
    spec = resolve_data(data, image_size, contrasts, cache=cache, progress=main_process)
    if main_process:
        barrier(dist)
    train_data = load_split_tensors(spec, "train", config.source, config.target)
    result = train(config, train_data, out, resume=resume, extend=extend)
    if main_process:
        from robustmri.translate import record_preparation

        record_preparation(out, spec.prepared, spec.description, source=data)  # what `translate` and `eval` repeat
        typer.echo(
            f"trained {config.model} ({config.size}) {config.source}->{config.target} on {spec.description}: "
            f"step {result.step}/{config.steps}, {result.seconds:.1f} s this run; run folder {out}"
        )


@app.command("models")
def models_cmd() -> None:
    """List the registered translation models and their size presets."""
    from robustmri.models.registry import SIZES, list_models

    for name in list_models():
        typer.echo(f"{name:<12} sizes: {', '.join(SIZES)}")
