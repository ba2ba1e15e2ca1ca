"""GPU check: training steps/s per model at `small` and `paper` size, evaluation slices/s (clean,
a corruption, PGD), GPU utilisation during the evaluation sweep, and the `quick` suite's time
estimated from these measurements. One short run, meant for a session that has a GPU:

    .venv/bin/python benchmarks/gpu_check.py --out gpu_check.json                # on the GPU (about 5 min)
    .venv/bin/python benchmarks/gpu_check.py --device cpu --sizes tiny --steps 3 --eval-slices 16   # smoke test

Training: the engine's `train` (bf16 autocast on CUDA) for `--steps` steps after `--warmup` steps,
batch 8, 128^2 for `small` and 256^2 for `paper`, on random slices (speed does not depend on
content); steps/s is measured between the warm-up and the end. Evaluation: the bench's scoring
loop (`score_cell`) on `--eval-slices` slices at 128^2, batch 32, for the clean cell, gaussian_blur
severity 3 and pgd_linf severity 3 at the quick suite's budget (50 steps). Utilisation: `nvidia-smi`
sampled every 200 ms while the evaluation runs (mean and max). The estimate multiplies the quick
suite's work (`robustmri bench --suite quick --dry-run` counts) by these rates; it ignores data
preparation and report time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch


def sample_gpu(stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    """Append (utilisation %, memory MiB) every 200 ms until ``stop`` is set (nothing without nvidia-smi)."""
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
            if out:
                u, m = (float(v) for v in out[0].split(","))
                samples.append((u, m))
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return
        stop.wait(0.2)


def paired(n: int, size: int, seed: int = 0):  # type: ignore[no-untyped-def]
    from robustmri.data.paired import PairedTensors

    g = torch.Generator().manual_seed(seed)
    src = torch.rand(n, 1, size, size, generator=g)
    tgt = torch.rand(n, 1, size, size, generator=g)
    mask = torch.ones(n, 1, size, size, dtype=torch.bool)
    return PairedTensors(src, tgt, mask, torch.arange(n) // 8, torch.arange(n) % 8, spacing=torch.full((n,), 210.0 / size,
                                                                                                       dtype=torch.float64))


def train_rate(model: str, size: str, image: int, steps: int, warmup: int, device: str, options: dict) -> float:
    """Training steps per second of ``model`` at ``size`` on ``image``^2 slices (after ``warmup`` steps)."""
    from robustmri.train.engine import TrainConfig, train

    data = paired(64, image)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model=model, size=size, source="t1", target="t2", steps=warmup, batch_size=8, seed=0,
                          checkpoint_every=10**9, device=device, model_options=options)
        train(cfg, data, Path(tmp) / "run", progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        cfg2 = TrainConfig(**{**cfg.to_dict(), "steps": warmup + steps, "image_size": 0, "in_channels": 1})
        train(cfg2, data, Path(tmp) / "run", resume=True, progress=False, extend=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return steps / (time.perf_counter() - t0)


def eval_rates(device: str, n: int, image: int, batch_size: int = 32,
               model_name: str = "pix2pix") -> tuple[dict[str, float], list[tuple[float, float]]]:
    """Slices per second of the clean cell, gaussian_blur 3 and pgd_linf 3 on a small ``model_name``."""
    from robustmri.bench.evaluate import EvalSettings, score_cell
    from robustmri.bench.plan import Cell
    from robustmri.models.registry import build_model
    from robustmri.protocol import get_protocol

    model = build_model(model_name, size="small", image_size=image).to(device).eval()
    data = paired(n, image)
    settings = EvalSettings(protocol=get_protocol("robustmri"), seed=0, batch_size=batch_size,
                            attack_budget={"pgd_linf": {"steps": 50, "restarts": 1}})
    rates = {}
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=sample_gpu, args=(stop, samples), daemon=True)
    watcher.start()
    for name, family, sev in (("clean", "clean", 0), ("gaussian_blur", "image", 3), ("pgd_linf", "adversarial", 3)):
        cell = Cell(name, family, sev)
        score_cell(model, data, cell, settings, torch.device(device))  # warm-up (kernels, caches)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        score_cell(model, data, cell, settings, torch.device(device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rates[name] = n / (time.perf_counter() - t0)
    stop.set()
    watcher.join(timeout=2)
    return rates, samples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="pix2pix,resvit,reggan,diffusion,kd_attack")
    ap.add_argument("--sizes", default="small,paper")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--eval-slices", type=int, default=256)
    ap.add_argument("--eval-batch", type=int, default=32, help="slices per batch in the evaluation")
    ap.add_argument("--eval-model", default="pix2pix", help="the model the evaluation rates are measured on")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for a smoke test", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"device {name}, torch {torch.__version__}")
    images = {"tiny": 64, "small": 128, "paper": 256}
    train_figs: dict[str, dict[str, float]] = {}
    for model in filter(None, args.models.split(",")):
        options = {"generator": "pix2pix", "variant": "full"} if model == "kd_attack" else {}
        for size in args.sizes.split(","):
            try:
                rate = train_rate(model, size, images[size], args.steps, args.warmup, args.device, options)
                train_figs.setdefault(model, {})[size] = round(rate, 3)
                print(f"train {model:10s} {size:6s} {images[size]}^2 batch 8: {rate:7.2f} steps/s")
            except torch.cuda.OutOfMemoryError:  # type: ignore[attr-defined]
                print(f"train {model:10s} {size:6s}: out of memory")
                torch.cuda.empty_cache()
    image = images["small"] if "small" in args.sizes.split(",") or args.device.startswith("cuda") else images["tiny"]
    rates, samples = eval_rates(args.device, args.eval_slices, image, args.eval_batch, args.eval_model)
    for k, v in rates.items():
        print(f"eval {args.eval_model} {k:14s} {image}^2 batch {args.eval_batch}: {v:9.1f} slices/s")
    util = {"mean_pct": round(sum(u for u, _ in samples) / len(samples), 1), "max_pct": max(u for u, _ in samples),
            "max_mem_mib": max(m for _, m in samples)} if samples else {}
    if util:
        print(f"GPU utilisation during evaluation: mean {util['mean_pct']} %, max {util['max_pct']} %, "
              f"memory up to {util['max_mem_mib']:.0f} MiB ({len(samples)} samples)")
    # the quick suite: 5 models x 4 directions x 3000 steps; 4 directions x 5 models x (1 + 11 x 5 + 5 x 3) cells
    # on about 10 test subjects x the slices per subject (embedded: 24 brain slices) = 240 slices each
    est = None
    if all("small" in train_figs.get(m, {}) for m in ("pix2pix", "resvit", "reggan", "diffusion", "kd_attack")):
        train_s = sum(4 * 3000 / train_figs[m]["small"] for m in ("pix2pix", "resvit", "reggan", "diffusion", "kd_attack"))
        slices = 240
        per_model = (1 + 11 * 5) * slices / ((rates["clean"] + rates["gaussian_blur"]) / 2) + 5 * 3 * slices / rates["pgd_linf"]
        eval_s = 4 * 5 * per_model
        est = {"train_s": round(train_s), "eval_s": round(eval_s), "total_h": round((train_s + eval_s) / 3600, 2)}
        print(f"quick suite estimate: training {train_s / 60:.0f} min + evaluation {eval_s / 60:.0f} min = "
              f"{est['total_h']} h (pix2pix's evaluation rate for every model; diffusion evaluates slower)")
    if args.out is not None:
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "train_steps_per_s": train_figs,
                                        "eval_slices_per_s": rates, "eval_model": args.eval_model,
                                        "eval_batch": args.eval_batch, "gpu_utilisation": util, "quick_estimate": est},
                                       indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
