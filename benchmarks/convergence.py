"""A trained model's validation PSNR against training steps, beside the no-learning floor: the
convergence curve and the ceiling measurement of docs/data.md.

    .venv/bin/python benchmarks/convergence.py --model pix2pix --size small --image-size 128 \\
        --train-subjects 20 --val-subjects 4 --slices 16 --checkpoints 500,1000,2000,4000 --out curve.json

Data: ``--train-subjects`` + ``--val-subjects`` embedded subjects (seed 0; the first ones train, the
last ones validate) at ``--image-size``, ``--slices`` axial slices each, T1w -> T2w, each volume
scaled to its 99.5th brain percentile (as the suites' embedded data). The model trains at batch
``--batch-size`` with a *constant* learning rate (``lr_policy = "constant"`` where the model has
one), so the run is extended from checkpoint to checkpoint and every point of the curve equals a
run planned for that many steps. A model whose training depends on its planned total (KD+attack's
phases) trains one run per point instead. At each checkpoint the validation slices are scored under the ``robustmri`` protocol
(masked, data range 1, subject means) and under ``selfrdb`` (whole image on [-1, 1], the field's
IXI tables), next to ``lookup`` (E[T2 | T1 intensity] fitted on the training slices) and
``lookup_oracle`` (fitted on each validation slice itself; an oracle). Prints one line per
checkpoint: steps, wall seconds (training only), PSNR/SSIM, and the margin over ``lookup``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def subject_means(scores: dict[str, torch.Tensor], subjects: np.ndarray) -> dict[str, float]:
    """Mean over subjects of each metric's per-subject slice mean (the protocols' ``subject`` level)."""
    out = {}
    for name, values in scores.items():
        v = values.double().cpu().numpy()
        out[name] = float(np.mean([np.nanmean(v[subjects == s]) for s in np.unique(subjects)]))
    return out


def score(pred: torch.Tensor, data: Any, subjects: np.ndarray) -> dict[str, dict[str, float]]:
    """Subject-mean PSNR (dB) and SSIM of ``pred`` (N, 1, H, W) in [0, 1] under two protocols."""
    from robustmri.protocol import get_protocol

    out = {}
    for name in ("robustmri", "selfrdb"):
        proto = get_protocol(name)
        s = proto.score_unit(pred.clamp(0, 1), data.target, mask=data.mask, source=data.source)
        out[name] = {k: round(v, 3) for k, v in subject_means({k: s[k] for k in ("psnr", "ssim")}, subjects).items()}
    return out


def predict(model: Any, source: torch.Tensor, batch: int = 32) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.translate(source[i : i + batch]) for i in range(0, len(source), batch)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pix2pix")
    ap.add_argument("--size", default="small", help="the model's size preset (tiny | small | paper)")
    ap.add_argument("--options", default="{}", help="the model's builder options as JSON (lr_policy is set to constant)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--train-subjects", type=int, default=20)
    ap.add_argument("--val-subjects", type=int, default=4)
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--checkpoints", default="500,1000,2000,4000", help="comma-separated step counts, increasing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the curve as JSON here")
    ap.add_argument("--plot", nargs="+", default=None, metavar="JSON",
                    help="draw curves written by --out (validation PSNR against steps, each with its lookup floor) into --png; no training")
    ap.add_argument("--png", default="convergence.png", help="with --plot: the figure's path")
    ap.add_argument("--quick", action="store_true", help="seconds: 64^2, 3+2 subjects, 2 slices, checkpoints 2,4 (the tests run it)")
    args = ap.parse_args(argv)
    if args.plot:
        plot_curves([json.loads(Path(p).read_text()) for p in args.plot], Path(args.png))
        print(f"wrote {args.png}")
        return {}
    if args.quick:
        args.image_size, args.train_subjects, args.val_subjects, args.slices, args.checkpoints = 64, 3, 2, 2, "2,4"
        args.size = "tiny"
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    if checkpoints != sorted(set(checkpoints)) or checkpoints[0] < 1:
        ap.error("--checkpoints must be increasing positive step counts")
    from robustmri.data.embedded import embedded_slices
    from robustmri.data.paired import PairedTensors
    from robustmri.models.floors import build_lookup, build_lookup_oracle
    from robustmri.train.engine import TrainConfig, build_from_config, depends_on_total_steps, load_trained, train

    torch.manual_seed(0)
    t0 = time.perf_counter()
    n = args.train_subjects + args.val_subjects
    data = embedded_slices(n, size=args.image_size, n_slices=args.slices, seed=0, contrasts=("t1", "t2"))
    t_sim = time.perf_counter() - t0
    subj = data["subject"].numpy()

    def paired(rows: np.ndarray) -> PairedTensors:
        idx = torch.from_numpy(rows)
        return PairedTensors(data["t1"][idx], data["t2"][idx], data["mask"][idx], data["subject"][idx], data["slice"][idx],
                             spacing=data["spacing"][idx])

    train_rows = np.flatnonzero(subj < args.train_subjects)
    val_rows = np.flatnonzero(subj >= args.train_subjects)
    train_data, val_data = paired(train_rows), paired(val_rows)
    val_subj = subj[val_rows]
    print(f"{args.train_subjects} training / {args.val_subjects} validation subjects at {args.image_size}^2, {args.slices} slices each "
          f"({len(train_rows)} / {len(val_rows)} slices); simulated in {t_sim:.0f} s")

    floors: dict[str, Any] = {}
    lookup = build_lookup(image_size=args.image_size)
    lookup.fit(train_data)
    floors["lookup"] = score(predict(lookup, val_data.source), val_data, val_subj)
    oracle = build_lookup_oracle(image_size=args.image_size)
    with torch.no_grad():
        pred = torch.cat([oracle.translate(val_data.source[i : i + 32], target=val_data.target[i : i + 32])
                          for i in range(0, len(val_rows), 32)])
    floors["lookup_oracle (oracle)"] = score(pred, val_data, val_subj)
    for name, s in floors.items():
        print(f"{name:>14}: robustmri {s['robustmri']['psnr']:.2f} dB / SSIM {s['robustmri']['ssim']:.3f}; "
              f"selfrdb {s['selfrdb']['psnr']:.2f} dB / {s['selfrdb']['ssim']:.3f}")

    options = json.loads(args.options)
    if args.model in ("pix2pix", "reggan", "resvit"):
        options.setdefault("lr_policy", "constant")
    curve = []
    wall = 0.0
    floor = floors["lookup"]["robustmri"]["psnr"]
    probe = build_from_config(TrainConfig(model=args.model, size=args.size, model_options=options, image_size=args.image_size,
                                          in_channels=1))
    fresh = depends_on_total_steps(probe, probe.optimizers())
    if fresh:
        print("this model's training depends on its planned total of steps (schedules or phases): every point is a "
              "run of its own, planned for that many steps; train_s is that run's time")
    with tempfile.TemporaryDirectory() as tmp:
        for i, steps in enumerate(checkpoints):
            run = Path(tmp) / (f"run{steps}" if fresh else "run")
            cfg = TrainConfig(model=args.model, size=args.size, source="t1", target="t2", steps=steps, batch_size=args.batch_size,
                              seed=args.seed, checkpoint_every=max(checkpoints), log_every=max(1, steps // 10), device="cpu",
                              model_options=options)
            t1 = time.perf_counter()
            train(cfg, train_data, run, resume=i > 0 and not fresh, progress=False)
            wall = (time.perf_counter() - t1) if fresh else wall + time.perf_counter() - t1
            model, _ = load_trained(run)
            model.eval()
            s = score(predict(model, val_data.source), val_data, val_subj)
            curve.append({"steps": steps, "train_s": round(wall, 1), **s})
            print(f"{steps:>7} steps {wall:7.0f} s: robustmri {s['robustmri']['psnr']:.2f} dB / SSIM {s['robustmri']['ssim']:.3f} "
                  f"({s['robustmri']['psnr'] - floor:+.2f} dB over lookup); selfrdb {s['selfrdb']['psnr']:.2f} dB / {s['selfrdb']['ssim']:.3f}",
                  flush=True)
    figs = {"model": args.model, "size": args.size, "options": options, "image_size": args.image_size,
            "train_subjects": args.train_subjects, "val_subjects": args.val_subjects, "slices": args.slices,
            "batch_size": args.batch_size, "seed": args.seed, "floors": floors, "curve": curve,
            "cpu": _cpu_name(), "torch_threads": torch.get_num_threads()}
    if args.out:
        Path(args.out).write_text(json.dumps(figs, indent=2))
    return figs


def plot_curves(runs: list[dict[str, Any]], png: Path) -> None:
    """Validation PSNR (robustmri protocol, dB) against training steps, one line per run, each
    run's ``lookup`` floor dashed in the same colour, and floor + 3 dB dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for i, run in enumerate(runs):
        color = f"C{i}"
        steps = [p["steps"] for p in run["curve"]]
        ax.plot(steps, [p["robustmri"]["psnr"] for p in run["curve"]], marker="o", color=color,
                label=f"{run['model']} {run['size']}, {run['image_size']}²")
        floor = run["floors"]["lookup"]["robustmri"]["psnr"]
        ax.axhline(floor, ls="--", lw=1, color=color, alpha=0.7)
        ax.axhline(floor + 3.0, ls=":", lw=1, color=color, alpha=0.7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training steps (batch 4)")
    ax.set_ylabel("validation PSNR (dB, masked)")
    ax.set_title("Convergence against the lookup floor (dashed) and floor + 3 dB (dotted)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
