"""Speed of the corruption library: all corruptions x 5 severities on 64 slices of 256x256,
batched, against TorchIO applied per sample (for the artifacts TorchIO has), on the same CPU.

    .venv/bin/python benchmarks/bench_perturb.py [--slices 64] [--size 256] [--repeats 3]
    .venv/bin/python benchmarks/bench_perturb.py --quick     # seconds: 4 slices of 64x64 (the tests run it)

Prints the best-of-``repeats`` wall time per corruption and the TorchIO / robustmri ratio. It never
asserts on time: on a shared machine the numbers move; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from robustmri.perturb import apply_perturbation, get_perturbation, list_perturbations


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _torchio_cases(p_ours):
    """TorchIO deterministic transforms with our severity parameters (per severity)."""
    import torchio as tio

    rng = np.random.default_rng(0)
    cases = {}
    cases["ghosting"] = [
        tio.Ghosting(num_ghosts=p["num_ghosts"], axis=1, intensity=p["intensity"], restore=p["restore"])
        for p in (p_ours("ghosting", s) for s in range(1, 6))
    ]
    cases["spike"] = [
        tio.Spike(spikes_positions=np.c_[rng.random((p["num_spikes"], 2)), np.zeros(p["num_spikes"])], intensity=p["intensity"])
        for p in (p_ours("spike", s) for s in range(1, 6))
    ]
    cases["bias_field"] = [
        tio.BiasField(coefficients=list(rng.uniform(-p["coefficient"], p["coefficient"], 20)), order=p["order"])
        for p in (p_ours("bias_field", s) for s in range(1, 6))
    ]
    cases["gaussian_blur"] = [tio.Blur(std=(p["sigma"], p["sigma"], 0.0)) for p in (p_ours("gaussian_blur", s) for s in range(1, 6))]
    cases["motion"] = []
    for s in range(1, 6):
        p = p_ours("motion", s)
        t = p["num_transforms"]
        deg = np.zeros((t, 3))
        deg[:, 0] = rng.uniform(-p["degrees"], p["degrees"], t)
        tr = np.zeros((t, 3))
        tr[:, 1:] = rng.uniform(-p["translation_px"], p["translation_px"], (t, 2))
        times = np.sort(rng.uniform(0.05, 0.95, t))
        cases["motion"].append(tio.Motion(degrees=deg, translation=tr, times=times, image_interpolation="linear"))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="4 slices of 64x64, one repeat: seconds (what the tests run)")
    args = ap.parse_args()
    if args.quick:
        args.slices, args.size, args.repeats = 4, 64, 1
    torch.set_num_threads(2)

    from robustmri.data.embedded import embedded_slices

    n_sub = max(1, args.slices // 16)
    d = embedded_slices(n_subjects=n_sub, size=args.size, n_slices=16, seed=0, contrasts=("t1",))
    x = d["t1"]
    while x.shape[0] < args.slices:
        x = torch.cat([x, x])
    x = x[: args.slices].contiguous()
    print(f"{x.shape[0]} slices of {args.size}x{args.size}, severities 1..5, torch threads 2, best of {args.repeats}")

    spacing = 210.0 / args.size  # mm per pixel: the embedded field of view is 210 mm

    def p_ours(name: str, sev: int) -> dict:
        """The core's parameters in pixels (lengths in mm resolved at this spacing), as TorchIO takes them."""
        p = get_perturbation(name)
        full = p.resolve(p.params(sev), x[:1], None, torch.tensor([spacing], dtype=torch.float64))
        return {k: float(v.flatten()[0]) if torch.is_tensor(v) else v for k, v in full.items()}

    ours = {}
    for name in list_perturbations(include_adversarial=False):
        ours[name] = _best(lambda n=name: [apply_perturbation(x, n, s, spacing_mm=spacing) for s in range(1, 6)], args.repeats)

    try:
        import torchio as tio
    except ImportError:  # pragma: no cover
        tio = None
    theirs = {}
    if tio is not None:
        vols = [tio.ScalarImage(tensor=x[i, 0][None, :, :, None].numpy()) for i in range(x.shape[0])]
        vols_motion = [tio.ScalarImage(tensor=x[i][None].numpy()) for i in range(x.shape[0])]  # (1,1,H,W)
        for name, transforms in _torchio_cases(p_ours).items():
            imgs = vols_motion if name == "motion" else vols
            reps = 1 if name == "motion" else args.repeats
            theirs[name] = _best(lambda ts=transforms, ims=imgs: [t(im) for t in ts for im in ims], reps)

    print(f"\n{'corruption':<16} {'robustmri (s)':>14} {'TorchIO per-sample (s)':>23} {'ratio':>7}")
    for name, t in ours.items():
        if name in theirs:
            print(f"{name:<16} {t:>14.3f} {theirs[name]:>23.3f} {theirs[name] / t:>6.1f}x")
        else:
            print(f"{name:<16} {t:>14.3f} {'-':>23} {'':>7}")
    total = sum(ours.values())
    shared = [n for n in theirs]
    print(f"\nall {len(ours)} corruptions x 5 severities: {total:.2f} s "
          f"({total / (len(ours) * 5 * x.shape[0]) * 1e3:.2f} ms per slice-corruption)")
    if shared:
        t_o = sum(ours[n] for n in shared)
        t_t = sum(theirs[n] for n in shared)
        print(f"artifacts TorchIO also has ({', '.join(shared)}): robustmri {t_o:.2f} s vs TorchIO {t_t:.2f} s -> {t_t / t_o:.1f}x")


if __name__ == "__main__":
    main()
