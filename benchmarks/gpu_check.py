"""GPU check: how much of the chip training and scoring use, and the `quick` suite end to end.

One command, meant for a session that has a GPU (at most 8 minutes with the defaults):

    .venv/bin/python benchmarks/gpu_check.py                      # writes reports/measured/<date>-<gpu>.json and .md
    .venv/bin/python benchmarks/gpu_check.py --quick --device cpu --out-dir /tmp/gc   # seconds, what the tests run

Stages, each printed as it finishes:

1. **peak**: the chip's bf16 matmul rate (TFLOP/s), the best of a few 8192^3 products (``--quick``:
   512^3 in float32 on the CPU). Every training figure is given as a share of it.
2. **train**: per model and size (``small`` 128^2, ``paper`` 256^2, batch ``--batch``), the engine's
   own loop (``robustmri.train.engine.train``: bf16 autocast, fused Adam, channels-last, resident
   slices) for ``--warmup`` + ``--steps`` steps; steps/s between the warm-up's last log line and the
   end, images/s = steps/s x batch, and achieved TFLOP/s = steps/s x the FLOPs of one training
   step counted by ``torch.utils.flop_counter.FlopCounterMode`` (forward and backward, every
   network the step runs). ``--compile`` adds a compiled row for each.
3. **eval**: the bench's scoring loop (``score_cell``) on ``--eval-slices`` slices at 128^2 with the
   batch sized from free memory (``"auto"``), one perturbation per family at severity 3 (PGD and
   Square at the quick suite's budgets); slices/s per family, and the GPU's busy share sampled by
   ``nvidia-smi`` every 100 ms over the whole stage.
4. **drift**: the evaluation layer of the drift check scored on the GPU (``robustmri check
   --layer evaluation --device cuda``) against the committed CPU reference
   (``reports/reference/smoke.json``): does CUDA scoring of the same weights agree with the CPU
   within the drift tolerances? (Skipped with ``--quick``.)
5. **quick**: ``robustmri bench --suite quick`` end to end (training, scoring, report) in a
   subprocess, given what is left of ``--budget-s``; its wall time, or how far it got when the
   budget ran out (trained runs, cells written).

Random slices: speed does not depend on content. Nothing is asserted: the figures are written for
the README to quote, with the card's name beside each. The files are rewritten after every stage,
and a stage that fails is recorded with its error while the others go on: a device lent for a few
minutes is never spent for nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGES = {"tiny": 64, "small": 128, "paper": 256}
FAMILY_CELLS = (("clean", "clean", 0), ("gaussian_noise", "noise", 3), ("gaussian_blur", "image", 3),
                ("motion", "kspace", 3), ("misregistration", "geometric", 3), ("pgd_linf", "adversarial", 3),
                ("square_linf", "adversarial", 3))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def sample_gpu(stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    """Append (busy %, memory MiB) every 100 ms until ``stop`` is set (nothing without nvidia-smi)."""
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
            if out:
                u, m = (float(v) for v in out[0].split(","))
                samples.append((u, m))
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return
        stop.wait(0.1)


def paired(n: int, size: int, seed: int = 0):  # type: ignore[no-untyped-def]
    from robustmri.data.paired import PairedTensors

    g = torch.Generator().manual_seed(seed)
    src = torch.rand(n, 1, size, size, generator=g)
    tgt = torch.rand(n, 1, size, size, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask = ((((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.33 * size)) ** 2) < 1)[None, None].expand(n, 1, size, size)
    return PairedTensors(src, tgt, mask.clone(), torch.arange(n) // 8, torch.arange(n) % 8,
                         spacing=torch.full((n,), 210.0 / size, dtype=torch.float64))


def matmul_peak(device: str, quick: bool) -> float:
    """Best TFLOP/s of an n^3 matmul: bf16 on a GPU, float32 on the CPU."""
    n = 512 if quick else 8192
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(3 if quick else 10):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(1 if quick else 10):
            a @ b
        sync(device)
        reps = 1 if quick else 10
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0) / 1e12)
    return best


def step_flops(model_name: str, size: str, image: int, batch: int, device: str, options: dict) -> float:
    """FLOPs of one training step (forward and backward, every network), counted on ``device``."""
    from torch.utils.flop_counter import FlopCounterMode

    from robustmri.models.registry import build_model
    from robustmri.train.context import SimpleStepContext

    torch.manual_seed(0)
    model = build_model(model_name, size=size, image_size=image, **options).to(device)
    model.set_total_steps(1000)
    ctx = SimpleStepContext.for_model(model, 1000)
    ctx.step = 600  # late in KD+attack's schedule: every module on
    data = paired(batch, image)
    batch_d = data.batch(torch.arange(batch), device)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        model.training_step(batch_d, ctx)
    return float(counter.get_total_flops())


def train_rate(model: str, size: str, image: int, steps: int, warmup: int, batch: int, device: str, options: dict,
               compile: bool) -> float:
    """Steady training steps/s of the engine's loop (between the warm-up's last log line and the end)."""
    from robustmri.train.engine import TrainConfig, train

    data = paired(max(64, 2 * batch), image)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model=model, size=size, source="t1", target="t2", steps=warmup + steps, batch_size=batch, seed=0,
                          checkpoint_every=10**9, log_every=1, device=device, model_options=options, compile=compile)
        train(cfg, data, Path(tmp) / "run", progress=False)
        log = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    t0 = next(r["elapsed_s"] for r in log if r["step"] == warmup)
    return steps / max(log[-1]["elapsed_s"] - t0, 1e-9)


def eval_rates(device: str, n: int, image: int, model_name: str, quick: bool) -> tuple[dict[str, dict[str, float]], list]:
    """Slices/s per family (one perturbation each, severity 3) with the batch sized from free memory."""
    from robustmri.bench.batching import eval_batch_size
    from robustmri.bench.scoring import EvalSettings, score_cell
    from robustmri.bench.plan import Cell
    from robustmri.models.registry import build_model
    from robustmri.protocol import get_protocol

    torch.manual_seed(0)
    model = build_model(model_name, size="tiny" if quick else "small", image_size=image).to(device).eval()
    data = paired(n, image)
    budget = {"pgd_linf": {"steps": 2 if quick else 50, "restarts": 1}, "square_linf": {"queries": 5 if quick else 1000}}
    settings = EvalSettings(protocol=get_protocol("robustmri"), seed=0, batch_size="auto", attack_budget=budget)
    batch = eval_batch_size("auto", model, data.source, torch.device(device))
    out: dict[str, dict[str, float]] = {}
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=sample_gpu, args=(stop, samples), daemon=True)
    watcher.start()
    for name, family, sev in FAMILY_CELLS:
        cell = Cell(name, family, sev)
        score_cell(model, data.subset(torch.arange(n) < min(n, batch)), cell, settings, torch.device(device))  # warm-up
        sync(device)
        t0 = time.perf_counter()
        score_cell(model, data, cell, settings, torch.device(device))
        sync(device)
        out[f"{family}:{name}"] = {"slices_per_s": round(n / (time.perf_counter() - t0), 1), "batch": batch}
        print(f"eval {model_name} {family:11s} {name:16s} {image}^2 batch {batch}: {out[f'{family}:{name}']['slices_per_s']:9.1f} slices/s",
              flush=True)
    stop.set()
    watcher.join(timeout=2)
    return out, samples


def quick_suite(seconds: float, quick: bool) -> dict[str, object]:
    """``robustmri bench --suite quick`` end to end within ``seconds``: wall time or how far it got."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "quick"
        cmd = [sys.executable, "-m", "robustmri", "bench", "--suite", "quick", "--out", str(out)]
        if quick:  # the tests: the plan only, to keep the stage from rotting
            cmd.append("--dry-run")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(seconds, 1.0), cwd=ROOT)
            status = "complete" if proc.returncode == 0 else f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
        except subprocess.TimeoutExpired:
            status = "budget ran out"
        wall = time.perf_counter() - t0
        runs = len(list((out / "runs").glob("*/summary.json"))) if (out / "runs").is_dir() else 0
        cells = len(list(out.rglob("cells/**/*.csv"))) if out.is_dir() else 0
        report = (out / "report" / "report.html").is_file()
    return {"status": status, "wall_s": round(wall, 1), "trained_runs": runs, "cells_written": cells, "report_built": report,
            "dry_run": quick}


def smoke_drift(device: str, seconds: float) -> dict[str, object]:
    """The smoke suite on ``device`` and its drift check against the committed (CPU) reference."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "smoke"
        t0 = time.perf_counter()
        try:
            bench = subprocess.run([sys.executable, "-m", "robustmri", "bench", "--suite", "smoke", "--device", device,
                                    "--out", str(out), "--no-report"], capture_output=True, text=True, timeout=max(seconds, 1.0), cwd=ROOT)
            if bench.returncode != 0:
                return {"status": f"bench failed (exit {bench.returncode})", "wall_s": round(time.perf_counter() - t0, 1)}
            left = max(seconds - (time.perf_counter() - t0), 1.0)
            check = subprocess.run([sys.executable, "-m", "robustmri", "check", str(out), "--reference",
                                    str(ROOT / "reports" / "reference" / "smoke.json"), "--layer", "evaluation", "--device", device],
                                   capture_output=True, text=True, timeout=left, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"status": "budget ran out", "wall_s": round(time.perf_counter() - t0, 1)}
        lines = (check.stdout + check.stderr).strip().splitlines()
        return {"status": "agrees within the drift tolerances" if check.returncode == 0 else f"drift (exit {check.returncode})",
                "wall_s": round(time.perf_counter() - t0, 1), "check_tail": lines[-6:]}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def markdown(fig: dict) -> str:
    lines = [f"# GPU check, {fig['date']}: {fig['device']}", "",
             f"torch {fig['torch']}, `{fig['command']}`. Peak: {fig['peak_tflops']:.1f} TFLOP/s "
             f"({'bf16' if fig['device'] != 'cpu' else 'float32'} matmul, measured).", "",
             "| model | size | compiled | batch | steps/s | images/s | GFLOP/step | TFLOP/s | share of peak |",
             "|:--|:--|:--|--:|--:|--:|--:|--:|--:|"]
    for r in fig["train"]:
        lines.append(f"| {r['model']} | {r['size']} | {'yes' if r['compile'] else 'no'} | {r['batch']} | {r['steps_per_s']:.2f} | "
                     f"{r['images_per_s']:.1f} | {r['gflop_per_step']:.1f} | {r['tflops']:.2f} | {100 * r['share_of_peak']:.1f} % |")
    lines += ["", "| scoring (family: perturbation, severity 3) | slices/s | batch |", "|:--|--:|--:|"]
    for k, v in fig["eval"].items():
        lines.append(f"| {k} | {v['slices_per_s']:.1f} | {v['batch']} |")
    for stage, error in fig.get("errors", {}).items():
        lines += ["", f"Stage `{stage}` failed: {error}"]
    busy = fig.get("gpu_busy") or {}
    lines += ["", f"GPU busy during the scoring stage: {busy.get('mean_pct', 'not measured')} % on average "
              f"(max {busy.get('max_pct', '-')} %, {busy.get('samples', 0)} samples).", "",
              f"CPU reference against a {fig['device']} run of the smoke suite (evaluation layer): {fig['drift']}", "",
              f"`robustmri bench --suite quick`: {fig['quick']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="pix2pix,resvit,reggan,diffusion,kd_attack")
    ap.add_argument("--sizes", default="small,paper")
    ap.add_argument("--batch", type=int, default=32, help="training batch (slices per step)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time compiled training (pix2pix and kd_attack)")
    ap.add_argument("--eval-slices", type=int, default=512)
    ap.add_argument("--eval-model", default="pix2pix")
    ap.add_argument("--budget-s", type=float, default=470.0, help="the whole check; the quick suite gets what is left")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "reports" / "measured")
    ap.add_argument("--quick", action="store_true", help="seconds on a CPU: tiny sizes, 2 steps, 16 slices, the quick suite planned only")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu (add --quick for a smoke test)", file=sys.stderr)
        return 2
    if args.quick:
        args.sizes, args.models, args.steps, args.warmup, args.batch, args.eval_slices = "tiny", "pix2pix,kd_attack", 2, 1, 2, 16
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu ({platform.processor() or platform.machine()})"
    print(f"device {name}, torch {torch.__version__}", flush=True)
    date = dt.date.today().isoformat()
    fig: dict = {"date": date, "device": name, "torch": torch.__version__,
                 "command": " ".join(["benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
                 "peak_tflops": float("nan"), "train": [], "eval": {}, "eval_model": args.eval_model, "gpu_busy": {},
                 "drift": {"status": "not reached"}, "quick": {"status": "not reached"}, "errors": {},
                 "cuda_nondeterministic": os.environ.get("ROBUSTMRI_CUDA_NONDETERMINISTIC", "") == "1"}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"{date}-{slug(name)}"

    def save() -> None:  # after every stage: a run cut short still leaves what it measured
        from robustmri.atomic import write_json_atomic, write_text_atomic

        write_json_atomic(stem.with_suffix(".json"), fig)
        write_text_atomic(stem.with_suffix(".md"), markdown(fig))

    def failed(stage: str, exc: BaseException) -> None:
        fig["errors"][stage] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        print(f"{stage}: failed ({fig['errors'][stage]}); the other stages go on", flush=True)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    try:
        peak = matmul_peak(args.device, args.quick)
        print(f"peak: {peak:.1f} TFLOP/s matmul", flush=True)
    except Exception as exc:  # noqa: BLE001 - recorded, the other stages go on
        failed("peak", exc)
        peak = float("nan")
    fig["peak_tflops"] = round(peak, 2)
    save()
    train_rows = fig["train"]
    for model in filter(None, args.models.split(",")):
        options = {"generator": "pix2pix", "variant": "full"} if model == "kd_attack" else {}
        for size in args.sizes.split(","):
            for compiled in ((False, True) if args.compile and model in ("pix2pix", "kd_attack") else (False,)):
                try:
                    flops = step_flops(model, size, IMAGES[size], args.batch, args.device, options)
                    rate = train_rate(model, size, IMAGES[size], args.steps, args.warmup, args.batch, args.device, options, compiled)
                except torch.cuda.OutOfMemoryError:  # type: ignore[attr-defined]
                    print(f"train {model:10s} {size:6s}: out of memory at batch {args.batch}", flush=True)
                    torch.cuda.empty_cache()
                    continue
                except Exception as exc:  # noqa: BLE001 - recorded, the other rows go on
                    failed(f"train {model} {size}{' compiled' if compiled else ''}", exc)
                    continue
                row = {"model": model, "size": size, "compile": compiled, "batch": args.batch, "steps_per_s": round(rate, 3),
                       "images_per_s": round(rate * args.batch, 1), "gflop_per_step": round(flops / 1e9, 2),
                       "tflops": round(rate * flops / 1e12, 3), "share_of_peak": round(rate * flops / 1e12 / peak, 4)}
                train_rows.append(row)
                save()
                print(f"train {model:10s} {size:6s} {IMAGES[size]}^2 batch {args.batch}{' compiled' if compiled else ''}: "
                      f"{rate:7.2f} steps/s, {row['images_per_s']:8.1f} images/s, {row['tflops']:6.2f} TFLOP/s "
                      f"({100 * row['share_of_peak']:.1f} % of peak)", flush=True)
    image = 64 if args.quick else 128
    fig["eval_image"] = image
    try:
        rates, samples = eval_rates(args.device, args.eval_slices, image, args.eval_model, args.quick)
        fig["eval"] = rates
        fig["gpu_busy"] = {"mean_pct": round(sum(u for u, _ in samples) / len(samples), 1), "max_pct": max(u for u, _ in samples),
                           "max_mem_mib": max(m for _, m in samples), "samples": len(samples)} if samples else {}
        if fig["gpu_busy"]:
            print(f"GPU busy during scoring: mean {fig['gpu_busy']['mean_pct']} %, max {fig['gpu_busy']['max_pct']} %", flush=True)
    except Exception as exc:  # noqa: BLE001
        failed("eval", exc)
    save()
    fig["drift"] = {"status": "skipped (--quick)"}
    if not args.quick:
        try:
            fig["drift"] = smoke_drift(args.device, min(180.0, args.budget_s - (time.perf_counter() - t_start)))
            print(f"smoke on {args.device} against the CPU reference: {fig['drift']}", flush=True)
        except Exception as exc:  # noqa: BLE001
            failed("drift", exc)
    save()
    try:
        fig["quick"] = quick_suite(args.budget_s - (time.perf_counter() - t_start), args.quick)
        print(f"quick suite: {fig['quick']}", flush=True)
    except Exception as exc:  # noqa: BLE001
        failed("quick", exc)
    save()
    print(f"wrote {stem}.json and .md ({time.perf_counter() - t_start:.0f} s)"
          + (f"; {len(fig['errors'])} stage(s) failed: {', '.join(fig['errors'])}" if fig["errors"] else ""))
    return 1 if fig["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
