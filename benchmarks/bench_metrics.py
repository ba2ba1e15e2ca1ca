"""Benchmark: masked PSNR + SSIM, batched torch (robustmri.metrics) vs a per-slice scikit-image loop.

Both sides compute, for every slice, PSNR over the brain-mask voxels and the SSIM map averaged
within the mask (scikit-image: ``structural_similarity(..., full=True)``, map cropped by the window
radius and averaged over the mask there, which is robustmri's masked-SSIM convention). Prints the
median time of several repeats for each, the ratio, and the largest disagreement.

Usage:
    python benchmarks/bench_metrics.py                   # 256 slices of 256x256, CPU, 2 threads
    python benchmarks/bench_metrics.py --device cuda     # torch side on a GPU
    python benchmarks/bench_metrics.py --window uniform --repeats 7
"""

from __future__ import annotations

import os

# libgomp's default spin-waiting makes every parallel region of torch wait for a descheduled
# thread when the CPU is shared (load > cores): measured 35 s instead of 1.8 s for this benchmark
# with 2 threads at load 6. PASSIVE waiting avoids that; it must be set before torch is imported.
# Override with OMP_WAIT_POLICY=ACTIVE to measure the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics
import time
from collections.abc import Callable

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from robustmri import metrics  # noqa: E402

SK_ARGS = {
    "gaussian": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False},
    "uniform": {},
}


def make_batch(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded smooth 'anatomy' targets in [0, 1], noisy predictions, and elliptical brain masks."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, size // 8, size // 8, generator=gen)
    target = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    mask = ((yy / 0.85) ** 2 + (xx / 0.7) ** 2 <= 1).expand(n, 1, size, size).clone()
    target = target * mask
    pred = (target + 0.05 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
    return pred, target, mask


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Median wall time of each function; the functions alternate so load changes hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="number of slices")
    parser.add_argument("--size", type=int, default=256, help="slice side in pixels")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    parser.add_argument("--window", choices=("gaussian", "uniform"), default="gaussian")
    parser.add_argument("--skip-skimage", action="store_true", help="time the torch side only")
    parser.add_argument("--quick", action="store_true", help="seconds: 8 slices of 64x64, one repeat (the tests run it)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.size, args.repeats = 8, 64, 1

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pred, target, mask = make_batch(args.n, args.size, seed=0)
    pad = metrics.ssim_pad(args.window)
    p_dev, t_dev, m_dev = pred.to(device), target.to(device), mask.to(device)

    def run_torch() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            return (
                metrics.psnr(p_dev, t_dev, data_range=1.0, mask=m_dev),
                metrics.ssim(p_dev, t_dev, data_range=1.0, mask=m_dev, window=args.window),
            )

    p_np, t_np, m_np = pred[:, 0].numpy(), target[:, 0].numpy(), mask[:, 0].numpy()

    def run_skimage() -> tuple[np.ndarray, np.ndarray]:
        psnrs, ssims = np.empty(args.n), np.empty(args.n)
        for i in range(args.n):
            m = m_np[i]
            psnrs[i] = peak_signal_noise_ratio(t_np[i][m], p_np[i][m], data_range=1.0)
            _, smap = structural_similarity(t_np[i], p_np[i], data_range=1.0, full=True, **SK_ARGS[args.window])
            ssims[i] = smap[pad:-pad, pad:-pad][m[pad:-pad, pad:-pad]].mean()
        return psnrs, ssims

    run_torch()  # warm-up (CUDA context, allocator)
    fns: dict[str, Callable[[], object]] = {"torch": run_torch}
    if not args.skip_skimage:
        fns["skimage"] = run_skimage
    med = interleaved_medians(fns, args.repeats, sync)
    print(f"setup: {args.n} slices of {args.size}x{args.size} float32, masked PSNR + {args.window} SSIM, "
          f"torch {torch.__version__} on {device} with {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"torch batched : {med['torch']:.3f} s (median of {args.repeats})")
    if args.skip_skimage:
        return
    print(f"scikit-image  : {med['skimage']:.3f} s (median of {args.repeats}, per-slice loop, interleaved)")
    print(f"speed-up      : {med['skimage'] / med['torch']:.2f}x")
    ours_psnr, ours_ssim = (v.cpu().numpy() for v in run_torch())
    ref_psnr, ref_ssim = run_skimage()
    print(f"max |diff|    : PSNR {np.abs(ours_psnr - ref_psnr).max():.2e} dB, SSIM {np.abs(ours_ssim - ref_ssim).max():.2e}")


if __name__ == "__main__":
    main()
