"""How informative is KD+attack's black-box gradient estimate, and does it make a stronger attacker?

    .venv/bin/python benchmarks/attacker_cosine.py                        # 64^2, tiny pix2pix, 300 steps (~1.5 min)
    .venv/bin/python benchmarks/attacker_cosine.py --size 128 --model-size small --steps 500   # paper-mini's generator (~4 min)
    .venv/bin/python benchmarks/attacker_cosine.py --quick                # seconds (the tests run it)

A pix2pix (``--model-size``) is trained for ``--steps`` steps (batch 4) on 6 embedded subjects at
``--size``. The attacker's loss is the per-image L1 error to the target inside the brain mask.

1. **Cosine** of each estimate of d loss / d input with the true gradient (autograd), at the clean
   input, on 8 test slices, ``--repeats`` times, at equal numbers of generator queries (forward
   passes): ``loss`` is :func:`robustmri.kd.attacker.spsa_gradient` (SPSA on the loss, 2 queries
   per sample; per pixel or on a k x k basis), ``local`` is :func:`robustmri.kd.attacker.local_gradient`
   (from the output images: 1 base query + 1 per sample; smoothed by sigma pixels). The training
   default is ``local``, 3 samples, sigma 1 (4 queries, as the former default ``loss`` x 2 samples).
2. **Strength**: a fresh attacker network A (KD+attack's ``tiny`` one, at KD+attack's default eps
   0.015, or ``--eps``) is trained against
   the frozen generator for ``--attack-steps`` steps (batch 4, Adam) at the default budget of 4
   queries, with each estimate and update rule (:func:`robustmri.kd.attacker.attacker_loss`). The
   test slices' mean L1 error (x 1000) under A's output, and under the adversarial example the
   default gives G (A's output plus one eps step along a 4-query estimate), is compared with the
   clean error, random signs of the same L-inf norm (the control every attack must beat), the
   step alone from zero, and white-box PGD (10 steps of eps/4 on the same loss).
"""

from __future__ import annotations

import argparse
import inspect
import tempfile
from pathlib import Path
from typing import Any

import torch


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine per image of two (B, C, H, W) tensors."""
    a, b = a.flatten(1), b.flatten(1)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def projection_cosine(g: torch.Tensor, basis: int) -> torch.Tensor:
    """Cosine of ``g`` with its least-squares projection on the bilinear k x k basis."""
    b, c, h, w = g.shape
    eye = torch.eye(basis * basis, dtype=g.dtype).view(basis * basis, 1, basis, basis)
    atoms = torch.nn.functional.interpolate(eye, size=(h, w), mode="bilinear", align_corners=False).flatten(1)  # (k^2, HW)
    flat = g.flatten(1)  # (B, HW) with C = 1
    coef = torch.linalg.lstsq(atoms.T, flat.T).solution  # (k^2, B)
    proj = (atoms.T @ coef).T
    return cosine(proj.view_as(g), g)


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--model-size", default="tiny", choices=["tiny", "small"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--attack-steps", type=int, default=450, help="attacker training steps (paper-mini trains it for 450)")
    ap.add_argument("--eps", type=float, default=None,
                    help="L-inf budget of part 2's attacks; default: KD+attack's (robustmri.kd.model.DEFAULT_EPS, 0.015)")
    ap.add_argument("--quick", action="store_true", help="seconds: 2 training steps on 4 subjects, one repeat, budgets 4 and 16")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.attack_steps = 2, 1, 3
    subjects, train_subjects = (4, 2) if args.quick else (8, 6)
    budgets = (4, 16) if args.quick else (4, 16, 64)
    from robustmri.data.embedded import embedded_slices
    from robustmri.data.paired import PairedTensors
    from robustmri.kd.attacker import GenerativeAttacker, ascent_step, attacker_loss, local_gradient, per_image_l1, spsa_gradient
    from robustmri.kd.model import DEFAULT_EPS, PRESETS, KDAttack
    from robustmri.train.engine import TrainConfig, load_trained, train

    defaults = {k: v.default for k, v in inspect.signature(KDAttack.__init__).parameters.items()}
    data = embedded_slices(subjects, size=args.size, n_slices=4 if args.quick else 8, seed=0, contrasts=("t1", "t2"))
    tr = data["subject"] < train_subjects
    te = torch.nonzero(~tr).flatten()[:8]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model="pix2pix", size=args.model_size, source="t1", target="t2", steps=args.steps, batch_size=4, seed=0,
                          checkpoint_every=args.steps, device="cpu")
        train(cfg, PairedTensors(data["t1"][tr], data["t2"][tr], data["mask"][tr], data["subject"][tr], data["slice"][tr],
                                 spacing=data["spacing"][tr]), Path(tmp) / "run", progress=False)
        model, _ = load_trained(Path(tmp) / "run")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def estimate(kind: str, option: float, queries: int, loss, x, m, y) -> torch.Tensor:  # noqa: ANN001
        zero = torch.zeros_like(x)
        if kind == "loss":
            return spsa_gradient(loss, x, zero, 0.015, max(queries // 2, 1), mask=m, basis=int(option))
        return local_gradient(model.translate, lambda out: per_image_l1(out * m, y * m), x, zero, 0.015, max(queries - 1, 1),
                              mask=m, sigma_px=float(option))

    x, y, m = data["t1"][te], data["t2"][te], data["mask"][te]

    def test_loss(xp: torch.Tensor) -> torch.Tensor:
        return per_image_l1(model.translate(xp) * m, y * m)

    xg = x.clone().requires_grad_(True)
    test_loss(xg).sum().backward()
    true = xg.grad.detach() * m  # the attacker perturbs inside the mask only
    estimates = [("loss", 0), ("loss", 16), ("loss", 8), ("local", 0), ("local", 1.0), ("local", 2.0)]
    rows: list[dict[str, Any]] = []
    print(f"pix2pix {args.model_size}, {args.steps} steps, {args.size}^2, {len(te)} test slices, {args.repeats} repeats")
    print(f"training default: spsa_estimate={defaults.get('spsa_estimate')}, spsa_samples={defaults.get('spsa_samples')}, "
          f"spsa_sigma_px={defaults.get('spsa_sigma_px')}")
    print("\n1. Cosine with the true gradient, at equal generator queries\n")
    print("| estimate | " + " | ".join(f"{q} queries" for q in budgets) + " | most a basis can reach |")
    print("|---|" + "--:|" * (len(budgets) + 1))
    for kind, option in estimates:
        best = float(projection_cosine(true, int(option)).mean()) if kind == "loss" and option else 1.0
        means = []
        for q in budgets:
            torch.manual_seed(0)
            cs = [float(cosine(estimate(kind, option, q, test_loss, x, m, y), true).mean()) for _ in range(args.repeats)]
            means.append(sum(cs) / len(cs))
            rows.append({"estimate": kind, "option": option, "queries": q, "cosine": round(means[-1], 4), "best_in_basis": round(best, 4)})
        name = (f"loss, {'per pixel' if not option else f'{int(option)}x{int(option)} basis'}" if kind == "loss"
                else f"local, sigma {option:g} px")
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in means) + f" | {best:.3f} |")

    # 2. strength of an attacker network trained with each estimate at the default budget
    xt, yt, mt = data["t1"][tr], data["t2"][tr], data["mask"][tr]
    preset = PRESETS["tiny"]
    eps = DEFAULT_EPS["learned"] if args.eps is None else args.eps
    strength: list[dict[str, Any]] = []

    def l1_x1000(xp: torch.Tensor) -> float:
        with torch.no_grad():
            return 1000 * float(test_loss(xp).mean())

    torch.manual_seed(0)
    signs = (torch.randint(0, 2, x.shape).float() * 2 - 1) * eps * m
    xa = x.clone()
    for _ in range(10):  # white-box PGD on the same loss: the reference, not an estimate
        xa.requires_grad_(True)
        (g,) = torch.autograd.grad(test_loss(xa).sum(), xa)
        xa = (x + ((xa.detach() + 0.25 * eps * g.sign() * m) - x).clamp(-eps, eps)).clamp(0, 1)
    strength += [{"attack": "none (clean)", "l1_x1000": l1_x1000(x)},
                 {"attack": "random signs, same L-inf", "l1_x1000": l1_x1000((x + signs).clamp(0, 1))}]
    budget = 4

    def local(xb: torch.Tensor, yb: torch.Tensor, mb: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return local_gradient(model.translate, lambda out: per_image_l1(out * mb, yb * mb), xb, delta, 0.015, budget - 1, mask=mb, sigma_px=1.0)

    trials = (("loss", "linear", 1e-4, "former default: loss SPSA, linear update, lr 1e-4"),
              ("local", "linear", 1e-4, "local estimate, linear update, lr 1e-4"),
              ("local", "step", 1e-3, "default: local estimate, step update, lr 1e-3"))
    for kind, update, lr, label in trials:
        torch.manual_seed(0)
        att = GenerativeAttacker(1, preset["attacker_width"], preset["attacker_depth"], eps)
        opt = torch.optim.Adam(att.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(0)
        for _ in range(args.attack_steps):
            idx = torch.randint(0, len(xt), (4,), generator=gen)
            xb, yb, mb = xt[idx], yt[idx], mt[idx]
            delta = att(xb, mb)
            with torch.no_grad():
                if kind == "loss":
                    g = spsa_gradient(lambda q: per_image_l1(model.translate(q) * mb, yb * mb), xb, delta.detach(), 0.015, budget // 2, mask=mb)
                else:
                    g = local(xb, yb, mb, delta.detach())
            opt.zero_grad()
            attacker_loss(delta, g, eps, mb, update, step=1.0).backward()
            opt.step()
        with torch.no_grad():
            d = att(x, m)
            strength.append({"attack": f"{label}: A's output", "l1_x1000": l1_x1000((x + d).clamp(0, 1))})
            if update == "step":
                torch.manual_seed(1)
                refined = ascent_step(d, local(x, y, m, d), eps, 1.0, m)
                strength.append({"attack": f"{label}: A's output + one eps step along the estimate (what G trains on)",
                                 "l1_x1000": l1_x1000((x + refined).clamp(0, 1))})
    with torch.no_grad():
        torch.manual_seed(1)
        zero = torch.zeros_like(x)
        strength.append({"attack": "one eps step along the estimate from zero (no network)",
                         "l1_x1000": l1_x1000((x + ascent_step(zero, local(x, y, m, zero), eps, 1.0, m)).clamp(0, 1))})
    strength.append({"attack": "white-box PGD, 10 steps (reference)", "l1_x1000": l1_x1000(xa)})
    print(f"\n2. Test L1 error x 1000 under each perturbation (eps {eps}, attacker trained {args.attack_steps} steps)\n")
    print("| perturbation | L1 x 1000 | gain over clean |")
    print("|---|--:|--:|")
    clean = strength[0]["l1_x1000"]
    for s in strength:
        s["gain"] = round(s["l1_x1000"] - clean, 3)
        print(f"| {s['attack']} | {s['l1_x1000']:.2f} | {s['gain']:+.2f} |")
    return {"cosine": rows, "strength": strength}


if __name__ == "__main__":
    main()
