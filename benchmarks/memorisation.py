"""How much of the embedded test set a model could have memorised: nearest-neighbour SSIM of each
test slice to the training slices, and the train-test gap of a tiny pix2pix at the smoke budget.

    .venv/bin/python benchmarks/memorisation.py                      # the simulator's default variety
    .venv/bin/python benchmarks/memorisation.py --variety classic    # format 1's narrow variety

Data: ``--subjects`` embedded subjects (first half train, second half test) at ``--size``, with
``--slices`` axial slices each, T2w as the target (T1w the source), each volume scaled to its
99.5th brain percentile (as `embedded_slices` does). Nearest neighbour: for every test slice, the
highest SSIM (Gaussian window, data range 1, whole slice) to any training slice; the script prints
the median and quartiles over test slices, and the share above 0.9. Gap: a `tiny` pix2pix trained
for ``--steps`` steps at batch 4 (the smoke suite's budget) on the training half, then masked PSNR
(dB, data range 1) of its predictions on training and test slices; the gap is train minus test.
``--variety default`` passes no simulator option, so the script also runs against older code.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

CLASSIC = dict(deformation_mm=2.5, deformation_levels=1, rotation_deg=3.0, scale_fraction=0.05, translation_mm=3.0,
               slab_jitter_mm=0.0, ventricle_expansion=0.0, sulcal_widening=0.0, cortical_change=0.0, acquisition="fixed")


def nearest_neighbour_ssim(test: torch.Tensor, train: torch.Tensor, chunk: int = 256) -> np.ndarray:
    """For each of ``test`` (N, 1, H, W) the highest SSIM to any of ``train`` (M, 1, H, W), in [0, 1] data."""
    from robustmri.metrics import ssim

    best = np.full(len(test), -1.0)
    for i in range(len(test)):
        for j0 in range(0, len(train), chunk):
            ref = train[j0 : j0 + chunk]
            s = ssim(test[i : i + 1].expand_as(ref), ref, data_range=1.0).numpy()
            best[i] = max(best[i], float(s.max()))
    return best


def train_test_gap(data: dict[str, torch.Tensor], train_rows: np.ndarray, test_rows: np.ndarray, steps: int) -> dict[str, float]:
    """Masked PSNR (dB) of a tiny pix2pix on its training and on the test slices."""
    import tempfile
    from pathlib import Path

    from robustmri.data.paired import PairedTensors
    from robustmri.metrics import psnr
    from robustmri.train.engine import TrainConfig, load_trained, train

    def paired(rows: np.ndarray) -> PairedTensors:
        idx = torch.from_numpy(rows)
        return PairedTensors(data["t1"][idx], data["t2"][idx], data["mask"][idx], data["subject"][idx], data["slice"][idx],
                             spacing=data["spacing"][idx])

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model="pix2pix", size="tiny", source="t1", target="t2", steps=steps, batch_size=4, seed=0,
                          checkpoint_every=steps, device="cpu")
        train(cfg, paired(train_rows), Path(tmp) / "run", progress=False)
        model, _ = load_trained(Path(tmp) / "run")
        out = {}
        for name, rows in (("train", train_rows), ("test", test_rows)):
            p = paired(rows)
            with torch.no_grad():
                pred = model.translate(p.source).clamp(0, 1)
            out[f"psnr_{name}"] = float(psnr(pred, p.target, data_range=1.0, mask=p.mask).mean())
    out["gap_db"] = out["psnr_train"] - out["psnr_test"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variety", choices=("default", "classic"), default="default")
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--noiseless", action="store_true", help="simulate without noise (snr 0): anatomy and contrast alone")
    ap.add_argument("--steps", type=int, default=300, help="pix2pix training steps (0: skip the gap)")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    ap.add_argument("--quick", action="store_true", help="seconds: 4 subjects, 2 slices, 2 training steps (the tests run it)")
    args = ap.parse_args(argv)
    if args.quick:
        args.subjects, args.slices, args.steps = 4, 2, 2
    torch.manual_seed(0)
    from robustmri.data.embedded import embedded_slices

    t0 = time.perf_counter()
    overrides: dict[str, Any] = dict(CLASSIC) if args.variety == "classic" else {}
    if args.noiseless:
        overrides["snr"] = 0.0
    data = embedded_slices(args.subjects, size=args.size, n_slices=args.slices, seed=0, contrasts=("t1", "t2"), **overrides)
    t_sim = time.perf_counter() - t0
    half = args.subjects // 2
    subj = data["subject"].numpy()
    train_rows, test_rows = np.flatnonzero(subj < half), np.flatnonzero(subj >= half)
    nn = nearest_neighbour_ssim(data["t2"][test_rows], data["t2"][train_rows])
    q1, med, q3 = np.percentile(nn, [25, 50, 75])
    figs: dict[str, Any] = {"variety": args.variety, "noiseless": args.noiseless, "subjects": args.subjects, "size": args.size, "slices": args.slices,
                            "nn_ssim_median": round(float(med), 4), "nn_ssim_q1": round(float(q1), 4),
                            "nn_ssim_q3": round(float(q3), 4), "nn_ssim_share_above_0.9": round(float((nn > 0.9).mean()), 3),
                            "simulation_s": round(t_sim, 1)}
    print(f"variety {args.variety}{' (noiseless)' if args.noiseless else ''}: {args.subjects} subjects ({half} train / {args.subjects - half} test) at {args.size}^2, "
          f"{args.slices} slices each; simulated in {t_sim:.1f} s")
    print(f"nearest-neighbour SSIM of test T2w slices to training slices: median {med:.3f} (quartiles {q1:.3f}-{q3:.3f}); "
          f"{100 * (nn > 0.9).mean():.0f} % above 0.9")
    if args.steps > 0:
        gap = train_test_gap(data, train_rows, test_rows, args.steps)
        figs.update({k: round(v, 3) for k, v in gap.items()})
        print(f"tiny pix2pix, {args.steps} steps: PSNR train {gap['psnr_train']:.2f} dB, test {gap['psnr_test']:.2f} dB, "
              f"gap {gap['gap_db']:+.2f} dB")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(figs, fh, indent=2)
    return figs


if __name__ == "__main__":
    main()
