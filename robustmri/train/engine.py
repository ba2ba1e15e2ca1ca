"""The training engine: config -> model, data order, optimisers; AMP; atomic checkpoints; exact resume; DDP.

One engine trains every registered model. A run folder holds::

    RUN_DIR/config.json          the TrainConfig (and a description of the data)
    RUN_DIR/checkpoints/last.pt  model, optimisers, schedulers, RNG states and step (atomic)
    RUN_DIR/log.jsonl            one JSON line per logged step: losses, lr, it/s, elapsed seconds
    RUN_DIR/summary.json         written at the end: steps, wall time, final losses

Determinism: the model's initial weights come from ``torch.manual_seed(seed)``; training randomness
(dropout, diffusion time steps) from the global RNG re-seeded with ``seed + 1 + rank``; the batch
order from :class:`robustmri.train.data.BatchOrder`. A checkpoint holds the RNG states and the step,
so ``resume=True`` continues exactly: a resumed run equals an uninterrupted one, bit for bit, on the
same machine.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from robustmri.atomic import write_json_atomic, write_text_atomic
from robustmri.device import resolve_device
from robustmri.errors import ConfigError, DataError
from robustmri.models.base import TranslationModel
from robustmri.models.registry import build_model
from robustmri.threads import rebalance
from robustmri.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from robustmri.train.context import EngineStepContext, build_optimizer, build_scheduler
from robustmri.train.data import BatchOrder, PairedTensors
from robustmri.train.accel import compile_networks, resident_data, use_channels_last
from robustmri.train.losslog import LossLog
from robustmri.train.distributed import (
    DistInfo,
    barrier,
    broadcast_buffers,
    broadcast_module,
    init_distributed,
    replicas_identical,
    shutdown,
)

CHECKPOINT_NAME = "last.pt"


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-serialisable).

    model, size: registry name and preset (tiny | small | paper); model_options: extra builder kwargs.
    source, target: contrast names (recorded; the data passed to :func:`train` must match).
    steps: optimisation steps; batch_size: slices per step and process; seed: see module docstring.
    checkpoint_every, log_every: in steps (a checkpoint is also written at the end).
    amp: "auto" (bf16 autocast on CUDA, off on CPU), "bf16" or "off".
    device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    grad_clip: max gradient L2 norm per optimiser step, 0 = off.
    compile: compile every network (torch.compile, see :mod:`robustmri.train.accel`).
    channels_last: "auto" (on for CUDA), "on" or "off".
    compile and channels_last change how a step runs, not what it computes: like device and the
    checkpoint and log intervals they are not part of the run's identity.
    """

    model: str
    size: str = "tiny"
    source: str = "t1"
    target: str = "t2"
    steps: int = 500
    batch_size: int = 4
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    amp: str = "auto"
    device: str = "auto"
    grad_clip: float = 0.0
    compile: bool = False
    channels_last: str = "auto"
    model_options: dict[str, Any] = field(default_factory=dict)
    image_size: int = 0  # filled from the data
    in_channels: int = 0  # filled from the data

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"--amp must be auto, bf16 or off, got {self.amp!r}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("checkpoint_every and log_every must be >= 1")
        from robustmri.train.accel import CHANNELS_LAST

        if self.channels_last not in CHANNELS_LAST:
            raise ConfigError(f"--channels-last must be one of {', '.join(CHANNELS_LAST)}, got {self.channels_last!r}")
        from robustmri.data.contrasts import canonical_contrast

        self.source, self.target = canonical_contrast(self.source), canonical_contrast(self.target)
        if self.source == self.target:
            raise ConfigError(f"source and target are the same contrast ({self.source}): choose two different contrasts")

    def to_dict(self) -> dict[str, Any]:
        """The config as saved in ``config.json``, with ``model_version`` (the version of the model's
        defaults, :func:`robustmri.models.registry.model_version`) where the model declares one."""
        out = asdict(self)
        from robustmri.models.registry import model_version

        try:
            version = model_version(self.model)
        except ConfigError:  # an unknown model fails where it is built, with its own message
            version = None
        if version is not None:
            out["model_version"] = version
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.amp == "off" or (config.amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def build_from_config(config: TrainConfig) -> TranslationModel:
    """The model of ``config`` with its seeded initial weights."""
    torch.manual_seed(config.seed)
    model = build_model(
        config.model, size=config.size, in_channels=config.in_channels, image_size=config.image_size, **config.model_options
    )
    model.set_total_steps(config.steps)
    return model


@dataclass
class TrainResult:
    run_dir: Path
    model: TranslationModel
    step: int
    losses: dict[str, float]
    seconds: float


def train(
    config: TrainConfig,
    data: PairedTensors,
    run_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
    extend: bool = False,
) -> TrainResult:
    """Train ``config.model`` on ``data`` into ``run_dir``; continue from its checkpoint with ``resume``.

    ``stop_at`` ends the run after that step as a preemption would (a checkpoint is written), for
    tests and time-sliced jobs; ``resume=True`` later continues to ``config.steps``.

    A run is planned for ``config.steps``: learning-rate schedules (and KD+attack's phases) are
    functions of that total, so resuming with another ``steps`` is refused. ``extend=True`` (with
    ``resume``) continues to the new total on schedules recomputed for it; the result differs from
    a run planned for that total from the start, and ``summary.json`` records ``extended_from``.
    """
    run_dir = Path(run_dir)
    config.image_size, config.in_channels = data.image_size, data.in_channels
    dist = init_distributed("cuda" if config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        result = _train(config, data, run_dir, resume, progress, stop_at, dist, extend)
    except BaseException:
        shutdown(dist, failed=True)
        raise
    shutdown(dist)
    return result


#: Settings that may change between a run and its continuation (they do not change the result).
RESUMABLE_KEYS: tuple[str, ...] = ("checkpoint_every", "log_every", "device", "compile", "channels_last")


def config_differences(saved: dict[str, Any], mine: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Keys of ``mine`` whose value differs from the saved run config, besides :data:`RESUMABLE_KEYS`
    and ``ignore``."""
    skip = set(RESUMABLE_KEYS) | set(ignore)
    return [k for k in mine if k not in skip and saved.get(k) != mine[k]]


def _prepare_run_dir(run_dir: Path, config: TrainConfig, resume: bool) -> tuple[dict[str, Any] | None, int]:
    """Check ``run_dir`` for this run -> (checkpoint to resume from or None, the total of steps the
    saved run is planned for; ``config.steps`` for a new run)."""
    ckpt_path = run_dir / "checkpoints" / CHECKPOINT_NAME
    if resume:
        if not ckpt_path.exists():
            if run_dir.exists() and any(run_dir.iterdir()) and not (run_dir / "config.json").exists():
                raise ConfigError(f"{run_dir} is not a robustmri run folder: choose another --out")
            return None, config.steps  # nothing to resume: start fresh
        saved = json.loads((run_dir / "config.json").read_text())
        mine = config.to_dict()
        diff = config_differences(saved, mine, ignore=("steps",))
        if diff:
            raise ConfigError(
                f"cannot resume {run_dir}: its config differs in {', '.join(diff)} "
                f"(saved {', '.join(f'{k}={saved.get(k)!r}' for k in diff)}); use the same options or another --out"
            )
        return load_checkpoint(ckpt_path), int(saved.get("steps", config.steps))
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} already holds a run: pass --resume to continue it or choose another --out")
    return None, config.steps


EXTENDED_NAME = "extended.json"


def depends_on_total_steps(model: TranslationModel, specs: dict[str, Any]) -> bool:
    """Whether training ``model`` depends on the planned total of steps: a learning-rate schedule
    other than constant, or a model that reads the total (``set_total_steps``, e.g. KD+attack's
    phases). Otherwise a run continued to a new total equals one planned for it from the start."""
    overrides = type(model).set_total_steps is not TranslationModel.set_total_steps
    return overrides or any(spec.schedule != "constant" for spec in specs.values())


def _extension(
    run_dir: Path, config: TrainConfig, checkpoint: dict[str, Any] | None, planned: int, depends: bool, extend: bool
) -> list[int]:
    """Planned totals the run was extended from, oldest first, after checking that continuing the
    checkpoint of a run planned for ``planned`` steps to ``config.steps`` is allowed."""
    history = _extension_history(run_dir) if checkpoint is not None else []
    if checkpoint is None or planned == config.steps:
        return history
    if config.steps < int(checkpoint["step"]):
        raise ConfigError(f"cannot resume {run_dir} to {config.steps} steps: it is already at step {checkpoint['step']}")
    if not depends:
        return history  # constant schedules: continuing equals a run planned for the new total
    if not extend:
        raise ConfigError(
            f"cannot resume {run_dir} with --steps {config.steps}: it is planned for {planned} steps and its "
            f"schedules depend on that total; pass --steps {planned} to finish it, or add --extend to continue "
            f"to {config.steps} (the result then differs from a run planned for {config.steps} steps)"
        )
    # a kill between writing extended.json and config.json leaves ``planned`` recorded already
    return history if history and history[-1] == planned else [*history, planned]


def _extension_history(run_dir: Path) -> list[int]:
    """Planned totals ``run_dir`` was extended from (``extended.json``), oldest first."""
    try:
        return [int(v) for v in json.loads((run_dir / EXTENDED_NAME).read_text())]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError):
        raise DataError(f"{run_dir / EXTENDED_NAME} is unreadable: restore it or train into another --out") from None


def _train(
    config: TrainConfig,
    data: PairedTensors,
    run_dir: Path,
    resume: bool,
    progress: bool,
    stop_at: int | None,
    dist: DistInfo,
    extend: bool = False,
) -> TrainResult:
    device = resolve_device(config.device, dist)
    checkpoint, planned = _prepare_run_dir(run_dir, config, resume)
    model = build_from_config(config).to(device)
    channels_last = use_channels_last(config.channels_last, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    specs = model.optimizers()
    extended_from = _extension(run_dir, config, checkpoint, planned, depends_on_total_steps(model, specs), extend)
    barrier(dist)  # every process has checked the run folder before rank 0 writes to it
    if dist.enabled:
        broadcast_module(model)
    optimizers = {n: build_optimizer(s) for n, s in specs.items()}
    schedulers = {n: build_scheduler(specs[n], o, config.steps) for n, o in optimizers.items()}
    start_step = 0
    torch.manual_seed(config.seed + 1 + dist.rank)
    if checkpoint is not None:
        load_model_state(model, checkpoint["model"], run_dir)
        for n, o in optimizers.items():
            o.load_state_dict(checkpoint["optimizers"][n])
            schedulers[n].load_state_dict(checkpoint["schedulers"][n])
        start_step = int(checkpoint["step"])
        set_rng_state(checkpoint["rng"][dist.rank] if dist.rank < len(checkpoint["rng"]) else checkpoint["rng"][0])
    if dist.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if checkpoint is not None and planned != config.steps:
            (run_dir / "summary.json").unlink(missing_ok=True)  # unfinished again until the new total
            if extended_from:
                write_json_atomic(run_dir / EXTENDED_NAME, extended_from)
        write_json_atomic(run_dir / "config.json", config.to_dict())
        _truncate_log(run_dir / "log.jsonl", start_step)

    ctx = EngineStepContext(
        optimizers=optimizers,
        schedulers=schedulers,
        device=device,
        amp_dtype=_amp_dtype(config, device),
        grad_clip=config.grad_clip,
        world_size=dist.world_size,
    )
    order = BatchOrder(len(data), config.batch_size, config.seed, dist.rank, dist.world_size)
    end_step = config.steps if stop_at is None else min(stop_at, config.steps)
    data = resident_data(data, device)
    if model.fits_data:  # a no-learning floor: one pass over the training slices (deterministic, also on resume)
        model.fit(data)  # type: ignore[attr-defined]
    indices = order.stream(start_step, end_step, data.source.device)
    if config.compile:
        compile_networks(model)
    bar = None
    if progress and dist.is_main:
        from robustmri.progress import progress_bar

        bar = progress_bar(total=config.steps, initial=start_step, desc=f"train {config.model}", unit="step")
    losses: dict[str, float] = {}
    log = LossLog(device)
    t_start = time.perf_counter()
    t_log, steps_since_log = t_start, 0
    model.train()
    for step, index in zip(range(start_step, end_step), indices, strict=False):
        ctx.step = step
        batch = data.batch(index, device)
        if channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in batch.items()}
        log.add(model.training_step(batch, ctx))
        if dist.enabled:
            broadcast_buffers(model)
        steps_since_log += 1
        done = step + 1
        log_now = done % config.log_every == 0 or done == end_step
        save_now = done % config.checkpoint_every == 0 or done == end_step
        if bar is not None:
            bar.update(1)
        rebalance()  # this process's share of the CPUs, if another robustmri process started or ended
        if log_now or save_now:  # the only device-to-host read of the losses
            span = log.steps_since_read
            losses, nonfinite = log.read()
            if nonfinite:
                raise FloatingPointError(
                    f"non-finite loss in steps {done - span + 1}..{done} (last: {losses}); lower the learning rate or enable --grad-clip"
                )
            if bar is not None:
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
        if dist.is_main and log_now:
            now = time.perf_counter()
            record = {
                "step": done,
                "elapsed_s": round(now - t_start, 4),
                "it_per_s": round(steps_since_log / max(now - t_log, 1e-9), 3),
                "lr": {n: o.param_groups[0]["lr"] for n, o in optimizers.items()},
                **{k: round(v, 6) for k, v in losses.items()},
            }
            with open(run_dir / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            t_log, steps_since_log = now, 0
        if save_now:
            _save(run_dir, model, optimizers, schedulers, done, config, dist)
    if bar is not None:
        bar.close()
    if dist.enabled and not replicas_identical(model):
        raise RuntimeError("DDP replicas diverged: parameters differ between processes (please report this)")
    seconds = time.perf_counter() - t_start
    if dist.is_main and end_step == config.steps:
        write_json_atomic(
            run_dir / "summary.json",
            {
                "steps": config.steps, "resumed_from": start_step, "seconds_this_run": round(seconds, 3), "final_losses": losses,
                "processes": dist.world_size,
                **({"extended_from": extended_from} if extended_from else {}),
            },
        )
    model.eval()
    return TrainResult(run_dir, model, end_step, losses, seconds)


def _gather_rng(dist: DistInfo) -> list[dict[str, Any]]:
    state = rng_state()
    if not dist.enabled:
        return [state]
    import torch.distributed as dist_mod

    gathered: list[Any] = [None] * dist.world_size
    dist_mod.all_gather_object(gathered, state)
    return gathered


def _save(run_dir: Path, model: torch.nn.Module, optimizers: dict, schedulers: dict, step: int, config: TrainConfig, dist: DistInfo) -> None:
    rngs = _gather_rng(dist)
    if not dist.is_main:
        return
    save_checkpoint(
        run_dir / "checkpoints" / CHECKPOINT_NAME,
        {
            "step": step,
            "model": model.state_dict(),
            "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in schedulers.items()},
            "rng": rngs,
            "config": config.to_dict(),
        },
    )


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines after ``step`` (they belong to work lost after the last checkpoint).

    A torn last line (an append cut short by a full disk, a kill or a power cut) is dropped too; an
    unreadable line before the last is a one-line error naming the file."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    kept = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError
        except ValueError:
            if i == len(lines) - 1:
                break  # torn tail: the append that was cut short
            raise DataError(
                f"{path} line {i + 1} is not a log record: restore the file, or delete it (the checkpoint is intact)"
            ) from None
        if record.get("step", 0) <= step:
            kept.append(line)
    write_text_atomic(path, "".join(ln + "\n" for ln in kept))


@dataclass(frozen=True)
class RunHandle:
    """A run folder as its users see it: the saved config, the summary of a finished run (None
    while unfinished) and its model. Obtained from :func:`open_run`; nothing else reads the
    engine's files."""

    run_dir: Path
    config: dict[str, Any]
    summary: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def trained_steps(self) -> int | None:
        return None if self.summary is None else int(self.summary.get("steps", 0))

    @property
    def extended_from(self) -> list[int]:
        return list((self.summary or {}).get("extended_from") or [])

    def identity(self) -> dict[str, Any]:
        """What the run's results depend on: its config without the settings that do not change
        the result (:data:`RESUMABLE_KEYS`)."""
        return {k: v for k, v in self.config.items() if k not in RESUMABLE_KEYS}

    def load(self, device: str | torch.device = "cpu") -> tuple[TranslationModel, TrainConfig]:
        return load_trained(self.run_dir, device=device)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"{path} is unreadable or not JSON: delete the run folder {path.parent} and train again") from None


def open_run(run_dir: str | os.PathLike[str]) -> RunHandle:
    """The :class:`RunHandle` of ``run_dir`` (a folder written by :func:`train`)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} has no config.json: pass a run folder written by `robustmri train`")
    config = _read_json(cfg_path)
    summary_path = run_dir / "summary.json"
    summary = _read_json(summary_path) if summary_path.is_file() else None
    if not isinstance(config, dict) or (summary is not None and not isinstance(summary, dict)):
        raise DataError(f"{run_dir}: config.json or summary.json is not a JSON object; delete the run folder and train again")
    return RunHandle(run_dir, config, summary)


def load_trained(run_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[TranslationModel, TrainConfig]:
    """The trained model of ``run_dir`` (eval mode, on ``device``) and its config."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} has no config.json: pass a run folder written by `robustmri train`")
    raw = _read_json(cfg_path)
    if not isinstance(raw, dict):
        raise DataError(f"{cfg_path} is not a JSON object: delete the run folder {run_dir} and train again")
    try:
        config = TrainConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{cfg_path} does not hold a valid training configuration ({exc}): train again") from None
    payload = load_checkpoint(run_dir / "checkpoints" / CHECKPOINT_NAME, map_location=device)
    model = build_from_config(config)
    load_model_state(model, payload["model"], run_dir)
    return model.to(device).eval(), config


def load_model_state(model: torch.nn.Module, state: dict[str, Any], run_dir: Path) -> None:
    """``model.load_state_dict(state)``, or a one-line error naming the run when the checkpoint was
    written by another definition of the model (e.g. before a network gained or lost a head)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0][:200]
        raise DataError(
            f"{run_dir}: its checkpoint does not fit the current definition of {type(model).__name__} "
            f"({detail}); it was written by another robustmri version: train again into another folder"
        ) from None
