"""How much PSNR each attack costs a trained model, side by side: the threat model before and after
it was aimed at the reported error.

    .venv/bin/robustmri bench --suite smoke --out /tmp/sm             # trains the tiny pix2pix (300 steps, 64^2)
    .venv/bin/python benchmarks/attack_strength.py /tmp/sm/runs/pix2pix__t1_to_t2__s0 --suite smoke
    .venv/bin/python benchmarks/attack_strength.py --quick         # seconds, a 2-step model (the tests run it)

Rows (L-inf eps 8/255 = severity 4 unless --severity says otherwise), on the run's test split:

- ``old default``: 10 PGD steps of 0.25 eps from a random start, maximising the MSE to the model's
  own clean output, delta confined to the brain (the threat model before issue 13);
- ``random signs``: the control, +-eps per pixel (``random_linf``);
- ``fgsm``: one step from a random start, on the reported error;
- ``pgd (smoke budget)`` / ``pgd (default)`` / ``pgd (full budget)``: APGD on the masked MSE to the
  target, delta anywhere: 20 steps, 50 steps, 100 steps x 3 restarts;
- ``square 100 / 1000 queries``: the black-box attack on the same objective.

PSNR is the robustmri protocol's (masked, data range 1), mean over test slices.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="a trained run folder (e.g. a smoke bench's runs/pix2pix__t1_to_t2__s0)")
    ap.add_argument("--severity", type=int, default=4)
    ap.add_argument("--suite", default="smoke", help="the suite whose data the run was trained on (its test split is used)")
    ap.add_argument("--quick", action="store_true",
                    help="seconds: trains a tiny pix2pix for 2 steps on 4 embedded subjects and runs every row at budgets of 2 steps / 5 queries")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    if args.run is None and not args.quick:
        ap.error("give a trained run folder (or --quick)")
    args.cache = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.run, args.suite = _quick_run(Path(tmp))
            args.cache = Path(tmp) / "cache"
        return _measure(args)


def _quick_run(tmp: Path) -> tuple[str, str]:
    """A 2-step tiny pix2pix on a 4-subject suite written to ``tmp``: (run folder, suite path)."""
    from robustmri.bench import load_suite, run_suite

    from _quick_suite import write_quick_suite

    suite = write_quick_suite(tmp, "attack-strength-quick")
    out = run_suite(load_suite(suite), tmp / "out", cache=tmp / "cache", progress=False)
    return str(out / "runs" / "pix2pix__t1_to_t2__s0"), str(suite)




def _measure(args: argparse.Namespace) -> int:

    from robustmri.bench.tasks import resolve_suite_data
    from robustmri.bench.suite import load_suite
    from robustmri.data.resolve import load_split_tensors
    from robustmri.perturb import apply_perturbation, attack
    from robustmri.perturb.adversarial import AttackContext, gradient_attack
    from robustmri.perturb.calibration import masked_psnr
    from robustmri.train.engine import open_run

    handle = open_run(args.run)  # quick: the budgets above are 2 steps / 5 queries, figures for the tests only
    model, config = handle.load("cpu")
    model.eval()
    spec = resolve_suite_data(load_suite(args.suite), args.cache)
    test = load_split_tensors(spec, "test", config.source, config.target)
    x, y, m = test.source, test.target, test.mask
    eps = (1, 2, 4, 8, 16)[args.severity - 1] / 255

    def psnr(inputs: torch.Tensor) -> float:
        with torch.no_grad():
            return float(masked_psnr(y, model.translate(inputs), m).mean())

    clean = psnr(x)
    rows: list[tuple[str, float, float]] = []

    def add(label: str, fn) -> None:  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        with torch.enable_grad():
            x_adv = fn()
        rows.append((label, clean - psnr(x_adv), time.perf_counter() - t0))

    f = model.translate
    big = {"steps": 2, "queries": 5} if args.quick else {"steps": 100, "queries": 1000}
    add("old default (10 steps, to clean output, brain only)",
        lambda: gradient_attack(AttackContext(f), x, eps, 0.25 * eps, 2 if args.quick else 10, mask=m, generator=0))
    add("random signs (random_linf)", lambda: apply_perturbation(x, "random_linf", args.severity, seed=0))
    kw = dict(target=y, loss_mask=m, generator=0)
    add("fgsm_linf, reported error", lambda: attack(f, x, "fgsm_linf", args.severity, **kw))
    add("pgd_linf, 20 steps (smoke budget)",
        lambda: attack(f, x, "pgd_linf", args.severity, budget={"steps": 2 if args.quick else 20}, **kw))
    add("pgd_linf, 50 steps (default)",
        lambda: attack(f, x, "pgd_linf", args.severity, budget={"steps": 2} if args.quick else None, **kw))
    add("pgd_linf, 100 steps x 3 restarts (full)",
        lambda: attack(f, x, "pgd_linf", args.severity, budget={"steps": big["steps"], "restarts": 3}, **kw))
    add("square_linf, 100 queries (smoke budget)",
        lambda: attack(f, x, "square_linf", args.severity, budget={"queries": 5 if args.quick else 100}, **kw))
    add("square_linf, 1000 queries (default)",
        lambda: attack(f, x, "square_linf", args.severity, budget={"queries": big["queries"]}, **kw))

    print(f"{args.run}: {len(x)} test slices, clean PSNR {clean:.2f} dB, eps {round(eps * 255)}/255")
    print(f"{'attack':52s} {'PSNR lost (dB)':>15s} {'seconds':>8s}")
    for label, damage, secs in rows:
        print(f"{label:52s} {damage:15.3f} {secs:8.1f}")
    old, rand = rows[0][1], rows[1][1]
    best = max(d for _, d, _ in rows[3:6])
    print(f"\nPGD (best budget) / old default: {best / old:.2f}x; PGD / random signs: "
          f"{best / abs(rand) if rand else float('inf'):.1f}x (random signs cost {rand:.3f} dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
