"""Benchmark: size, training speed and inference speed of every registered translation model.

For each model of the registry (``robustmri.models.registry.list_models()``; ``kd_attack`` is built
with ``generator=pix2pix``, ``variant=full``) at each size preset asked for, it prints:

- ``params``: trainable parameters of the whole model (discriminators, registration and attack
  networks included) and ``infer``: those of the networks ``translate`` uses (``inference_modules``);
- ``train it/s``: optimisation steps per second, 1 / median wall time of ``--steps`` timed calls of
  ``model.training_step(batch, ctx)`` after ``--warmup`` untimed ones, exactly as the training engine
  does a step: the model's optimisers and schedulers built from ``model.optimizers()`` by
  ``robustmri.train.context``, an ``EngineStepContext`` with the engine's AMP rule (bf16 autocast on
  CUDA, off on CPU: ``--amp``), ``model.train()``, ``set_total_steps`` called first. The batch is
  random: source (B, C_in, H, W) and target (B, 1, H, W) uniform in [0, 1] and an elliptical brain
  mask. ``kd_attack`` is timed late in its schedule (step >= half of a nominal 10000-step run), where
  the attacker, the generator, the teacher and the student all train;
- ``eval sl/s``: slices per second of ``model.translate(batch, generator=...)`` in eval mode under
  ``torch.no_grad()`` and in float32, as ``robustmri.clean_scoring.predict`` and the benchmark runner call
  it (B / median wall time). The diffusion model samples with DDIM over ``sample_steps`` steps (10
  at ``tiny``, 50 at ``paper``), shown in the ``notes`` column. When a full sampling pass would not
  fit the time budget (the ``paper`` U-Net on a CPU) the eval figure is extrapolated from passes with
  fewer DDIM steps (the cost of DDIM is linear in the steps) and marked ``~``.

Timing: ``torch.cuda.synchronize()`` before and after every timed call on a GPU; a measurement stops
early, after at least one timed call, once its timed calls have used ``--budget`` seconds, so slow
models (``paper`` size on a CPU) are measured with fewer calls; ``(n)`` says how many were timed.
Seeds: model weights from ``torch.manual_seed(seed)`` as the engine, training randomness from
``seed + 1``, inputs from their own generator. Numbers on a shared machine move: compare rows taken
in the same run.

Usage:
    .venv/bin/python benchmarks/bench_models.py                          # all models, tiny + paper
    .venv/bin/python benchmarks/bench_models.py --sizes tiny --steps 20 --warmup 3
    .venv/bin/python benchmarks/bench_models.py --device cuda --json out/bench_models.json
    .venv/bin/python benchmarks/bench_models.py --sizes paper --models pix2pix,diffusion --budget 60

Defaults: ``tiny`` at 64^2 with batch 4, 3 warm-up and 10 timed steps; ``paper`` at 256^2 with
batch 1, 1 warm-up and 3 timed steps; ``--steps``/``--warmup`` set both sizes; 20 s budget per
measurement. The default run (all models, tiny + paper, CPU) should take about 5 minutes on 2
busy cores (estimated from single passes, not timed), most of it the ``paper`` diffusion U-Net
(about 11 s per forward pass at 256^2 there).
"""

from __future__ import annotations

import os

# libgomp's default spin-waiting makes every parallel region of torch wait for a descheduled
# thread when the CPU is shared (load > cores); PASSIVE waiting avoids that (see bench_metrics.py).
# It must be set before torch is imported. Override with OMP_WAIT_POLICY=ACTIVE.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from robustmri.atomic import write_json_atomic  # noqa: E402
from robustmri.models.base import TranslationModel, count_parameters  # noqa: E402
from robustmri.models.registry import build_model, list_models  # noqa: E402
from robustmri.train.context import EngineStepContext, build_optimizer, build_scheduler  # noqa: E402
from robustmri.train.losslog import LossLog  # noqa: E402

MODEL_OPTIONS: dict[str, dict[str, Any]] = {"kd_attack": {"generator": "pix2pix", "variant": "full"}}
"""Builder options per model (the others use their builder's defaults)."""

SIZE_DEFAULTS: dict[str, dict[str, int]] = {
    "tiny": {"image_size": 64, "batch": 4, "warmup": 3, "steps": 10},
    "small": {"image_size": 128, "batch": 2, "warmup": 2, "steps": 5},
    "paper": {"image_size": 256, "batch": 1, "warmup": 1, "steps": 3},
}

NOMINAL_TOTAL_STEPS = 10_000
"""``set_total_steps`` value; timed steps start at half of it (every KD+attack module trains there)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def make_batch(batch: int, in_channels: int, size: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """A random training batch with the engine's layout: source, target in [0, 1] and a bool mask."""
    gen = torch.Generator().manual_seed(seed)
    source = torch.rand(batch, in_channels, size, size, generator=gen)
    target = torch.rand(batch, 1, size, size, generator=gen)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    mask = ((yy / 0.85) ** 2 + (xx / 0.7) ** 2 <= 1).expand(batch, 1, size, size).clone()
    return {"source": source.to(device), "target": target.to(device), "mask": mask.to(device)}


def timed_calls(
    fn: Callable[[int], object], warmup: int, steps: int, budget: float, sync: Callable[[], None]
) -> list[float]:
    """Wall times of ``fn(i)`` for up to ``steps`` calls after ``warmup`` untimed ones.

    Stops early (after at least one timed call) once the timed calls have used ``budget`` seconds.
    """
    for i in range(warmup):
        fn(i)
    sync()
    times: list[float] = []
    for i in range(warmup, warmup + max(steps, 1)):
        sync()
        start = time.perf_counter()
        fn(i)
        sync()
        times.append(time.perf_counter() - start)
        if sum(times) >= budget:
            break
    return times


def diffusion_module(model: torch.nn.Module) -> torch.nn.Module | None:
    """The DDIM sampler inside ``model`` (the diffusion model itself, or wrapped by kd_attack)."""
    for m in model.modules():
        if hasattr(m, "sample_steps") and callable(getattr(m, "sampling_timesteps", None)):
            return m
    return None


def bench_train(
    model: TranslationModel, batch: dict[str, torch.Tensor], device: torch.device, amp: str,
    warmup: int, steps: int, budget: float, seed: int, sync: Callable[[], None],
) -> list[float]:
    """Per-step wall times of ``model.training_step`` driven as the training engine drives it."""
    specs = model.optimizers()
    optimizers = {n: build_optimizer(s) for n, s in specs.items()}
    schedulers = {n: build_scheduler(specs[n], o, NOMINAL_TOTAL_STEPS) for n, o in optimizers.items()}
    use_amp = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    ctx = EngineStepContext(
        optimizers=optimizers, schedulers=schedulers, device=device, amp_dtype=torch.bfloat16 if use_amp else None
    )
    torch.manual_seed(seed + 1)
    model.train()
    first = NOMINAL_TOTAL_STEPS // 2

    log = LossLog(device)

    def step(i: int) -> None:  # as the engine: losses stay on the device, read once at the end
        ctx.step = first + i
        log.add(model.training_step(batch, ctx))

    try:
        timed = timed_calls(step, warmup, steps, budget, sync)
        losses, nonfinite = log.read()
        if nonfinite:
            raise FloatingPointError(f"non-finite loss during the benchmark steps (last: {losses})")
        return timed
    finally:
        model.zero_grad(set_to_none=True)
        del optimizers, schedulers


@torch.no_grad()
def bench_eval(
    model: TranslationModel, source: torch.Tensor, target: torch.Tensor, device: torch.device,
    warmup: int, steps: int, budget: float, seed: int, sync: Callable[[], None],
) -> tuple[list[float], float, str]:
    """Per-call wall times of ``model.translate`` as ``evaluate.predict`` calls it.

    Returns (times, scale, note): the time of a full call is ``time * scale`` (``scale`` > 1 when a
    diffusion model was timed with fewer DDIM steps than it uses), and a note for the table.
    """
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    kwargs: dict[str, Any] = {"generator": gen}
    if model.needs_target:
        kwargs["target"] = target

    def call(_: int) -> None:
        model.translate(source, **kwargs)

    diff = diffusion_module(model)
    if diff is None:
        return timed_calls(call, warmup, steps, budget, sync), 1.0, ""
    full = diff.sample_steps
    n_full = len(diff.sampling_timesteps())
    note = f"DDIM {n_full} steps"
    try:
        # probe: one pass with a single DDIM step (also the warm-up), to predict a full pass
        diff.sample_steps = 1
        probe = timed_calls(call, 0, 1, budget, sync)[0]
        k = max(1, min(n_full, int(budget / max(steps, 1) / max(probe, 1e-9))))
        if k >= n_full:
            diff.sample_steps = full
            return timed_calls(call, warmup, steps, budget, sync), 1.0, note
        diff.sample_steps = k
        n_k = len(diff.sampling_timesteps())
        times = timed_calls(call, 0, steps, budget, sync)
        return times, n_full / n_k, f"{note} (~: timed {n_k})"
    finally:
        diff.sample_steps = full


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_one(name: str, size: str, args: argparse.Namespace, device: torch.device, sync: Callable[[], None]) -> dict[str, Any]:
    cfg = SIZE_DEFAULTS[size]
    image_size = getattr(args, f"image_size_{size}", None) or cfg["image_size"]
    batch_size = getattr(args, f"batch_{size}", None) or cfg["batch"]
    eval_batch = args.eval_batch or batch_size
    warmup = cfg["warmup"] if args.warmup is None else args.warmup
    steps = cfg["steps"] if args.steps is None else args.steps
    options = MODEL_OPTIONS.get(name, {})
    row: dict[str, Any] = {
        "model": name, "size": size, "image_size": image_size, "batch": batch_size, "eval_batch": eval_batch,
        "in_channels": args.in_channels, "options": options, "warmup": warmup, "steps": steps,
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seed_everything(args.seed)
    t0 = time.perf_counter()
    model = build_model(name, size=size, in_channels=args.in_channels, image_size=image_size, **options)
    model.set_total_steps(NOMINAL_TOTAL_STEPS)
    model = model.to(device)
    row["build_s"] = round(time.perf_counter() - t0, 3)
    row["params"] = count_parameters(model)
    row["infer_params"] = sum(count_parameters(m) for m in model.inference_modules())
    try:
        batch = make_batch(batch_size, args.in_channels, image_size, device, args.seed + 2)
        t_train = bench_train(model, batch, device, args.amp, warmup, steps, args.budget, args.seed, sync)
        del batch
        row["train_step_s"] = statistics.median(t_train)
        row["train_steps_timed"] = len(t_train)
        row["train_it_s"] = 1.0 / row["train_step_s"]
        row["train_slices_s"] = batch_size / row["train_step_s"]
        free(device)
        ev = make_batch(eval_batch, args.in_channels, image_size, device, args.seed + 3)
        t_eval, scale, note = bench_eval(model, ev["source"], ev["target"], device, warmup, steps, args.budget, args.seed, sync)
        row["eval_call_s"] = statistics.median(t_eval) * scale
        row["eval_calls_timed"] = len(t_eval)
        row["eval_extrapolated"] = scale != 1.0
        row["eval_slices_s"] = eval_batch / row["eval_call_s"]
        diff = diffusion_module(model)
        if diff is not None:
            row["sample_steps"] = len(diff.sampling_timesteps())
        row["notes"] = "; ".join(x for x in (" ".join(f"{k}={v}" for k, v in options.items()), note) if x)
        if device.type == "cuda":
            row["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    finally:
        del model
        free(device)
    return row


def _fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def format_row(row: dict[str, Any], cuda: bool) -> str:
    if "error" in row:
        return f"{row['model']:<10} {row['size']:<6} {row.get('image_size', ''):>4}  ERROR: {row['error']}"
    train = f"{_fmt_rate(row['train_it_s'])} ({row['train_steps_timed']})"
    eval_ = f"{'~' if row['eval_extrapolated'] else ''}{_fmt_rate(row['eval_slices_s'])} ({row['eval_calls_timed']})"
    line = (
        f"{row['model']:<10} {row['size']:<6} {row['image_size']:>4} {row['batch']:>3} "
        f"{row['params'] / 1e6:>10.2f} {row['infer_params'] / 1e6:>9.2f} "
        f"{train:>14} {_fmt_rate(row['train_slices_s']):>9} {row['eval_batch']:>3} {eval_:>14} "
        f"{row['eval_call_s'] * 1e3 / row['eval_batch']:>10.1f}"
    )
    if cuda:
        line += f" {row.get('peak_mem_mib', 0):>9.0f}"
    return line + (f"  {row['notes']}" if row.get("notes") else "")


def header(cuda: bool) -> str:
    line = (
        f"{'model':<10} {'size':<6} {'px':>4} {'B':>3} {'params(M)':>10} {'infer(M)':>9} "
        f"{'train it/s (n)':>14} {'train sl/s':>9} {'eB':>3} {'eval sl/s (n)':>14} {'ms/slice':>10}"
    )
    if cuda:
        line += f" {'peak MiB':>9}"
    return line + "  notes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,paper", help="comma list of size presets (tiny, small, paper)")
    parser.add_argument("--models", default="all", help=f"comma list of models or 'all' ({', '.join(list_models())})")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda[:N]")
    parser.add_argument("--steps", type=int, default=None, help="timed steps/calls per measurement (default: tiny 10, paper 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps/calls (default: tiny 3, paper 1)")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds of timed calls per measurement; stops early after >= 1 call (default 20)")
    parser.add_argument("--image-size-tiny", type=int, default=64)
    parser.add_argument("--image-size-small", type=int, default=128)
    parser.add_argument("--image-size-paper", type=int, default=256)
    parser.add_argument("--batch-tiny", type=int, default=4, help="training batch at tiny size")
    parser.add_argument("--batch-small", type=int, default=2, help="training batch at small size")
    parser.add_argument("--batch-paper", type=int, default=1, help="training batch at paper size")
    parser.add_argument("--eval-batch", type=int, default=None, help="slices per translate call (default: the training batch)")
    parser.add_argument("--in-channels", type=int, default=1, help="source contrasts stacked as channels")
    parser.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                        help="training autocast as the engine: auto = bf16 on CUDA, off on CPU")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the machine info and rows as JSON (atomically)")
    parser.add_argument("--quick", action="store_true", help="seconds: tiny pix2pix and KD+attack, one warm-up and one timed step (the tests run it)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.models, args.steps, args.warmup, args.budget = "tiny", "pix2pix,kd_attack", 1, 1, 5.0

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZE_DEFAULTS:
            parser.error(f"unknown size {s!r}: use tiny, small or paper")
    available = list_models()
    models = available if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in available:
            parser.error(f"unknown model {m!r}: use one of {', '.join(available)}")

    info = machine_info(device)
    print(f"machine: {info['cpu']} ({info['machine']}, {info['cpus']} CPUs, load average {info['load_average']}), "
          f"python {info['python']}, torch {info['torch']}, {info['threads']} threads, "
          f"OMP_WAIT_POLICY={info['omp_wait_policy']}")
    gpu = f" ({info['gpu']}, CUDA {info['cuda']})" if device.type == "cuda" else ""
    amp_on = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")
    print(f"device: {device}{gpu}; training autocast {'bf16' if amp_on else 'off'}, eval float32 under no_grad; "
          f"in_channels {args.in_channels}, seed {args.seed}, budget {args.budget:g} s per measurement")
    print("train it/s = 1 / median step time, eval sl/s = slices / median translate time; (n) = timed calls; "
          "~ = extrapolated from fewer DDIM steps")
    print()
    cuda = device.type == "cuda"
    print(header(cuda), flush=True)
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for size in sizes:
        for name in models:
            try:
                row = bench_one(name, size, args, device, sync)
            except Exception as exc:  # report and go on with the other models
                traceback.print_exc(file=sys.stderr)
                image_size = getattr(args, f"image_size_{size}")
                row = {"model": name, "size": size, "image_size": image_size, "error": f"{type(exc).__name__}: {exc}"}
                free(device)
            rows.append(row)
            print(format_row(row, cuda), flush=True)
    total = time.perf_counter() - t_all
    print(f"\ntotal {total:.1f} s")
    if args.json:
        write_json_atomic(args.json, {"machine": info, "args": vars(args), "total_s": round(total, 3), "rows": rows})
        print(f"wrote {args.json}")
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
