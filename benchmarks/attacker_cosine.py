"""How informative is KD+attack's black-box gradient estimate? Cosine between the SPSA estimate of
d loss / d input and the true gradient (autograd), per image, on a trained generator.

    .venv/bin/python benchmarks/attacker_cosine.py [--size 64] [--steps 300] [--repeats 5]
    .venv/bin/python benchmarks/attacker_cosine.py --quick      # seconds (the tests run it)

A `tiny` pix2pix is trained for ``--steps`` steps (batch 4) on 6 embedded subjects at ``--size``;
the loss is the attacker's, the per-image L1 error to the target, at the clean input plus a zero
perturbation, inside the brain mask (as in training). For each (basis, samples) the estimate of
:func:`robustmri.kd.attacker.spsa_gradient` (2 x samples loss queries, step c = 0.01) is compared
with the true gradient on 8 test slices, ``--repeats`` times; the script prints the mean cosine and,
for a basis, the cosine of the true gradient with its own projection on that basis (the most any
estimate restricted to it can reach). The training default is basis 0 (per pixel), 2 samples.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="seconds: 2 training steps on 4 subjects, one repeat, 2 and 8 samples")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 2, 1
    subjects, train_subjects = (4, 2) if args.quick else (8, 6)
    sample_counts = (2, 8) if args.quick else (2, 8, 32)
    from robustmri.data.embedded import embedded_slices
    from robustmri.data.paired import PairedTensors
    from robustmri.kd.attacker import per_image_l1, spsa_gradient
    from robustmri.train.engine import TrainConfig, load_trained, train

    data = embedded_slices(subjects, size=args.size, n_slices=4 if args.quick else 8, seed=0, contrasts=("t1", "t2"))
    tr = data["subject"] < train_subjects
    te = torch.nonzero(~tr).flatten()[:8]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model="pix2pix", size="tiny", source="t1", target="t2", steps=args.steps, batch_size=4, seed=0,
                          checkpoint_every=args.steps, device="cpu")
        train(cfg, PairedTensors(data["t1"][tr], data["t2"][tr], data["mask"][tr], data["subject"][tr], data["slice"][tr],
                                 spacing=data["spacing"][tr]), Path(tmp) / "run", progress=False)
        model, _ = load_trained(Path(tmp) / "run")
    model.eval()
    x, y, m = data["t1"][te], data["t2"][te], data["mask"][te]

    def loss(xp: torch.Tensor) -> torch.Tensor:
        return per_image_l1(model.translate(xp) * m, y * m)

    xg = x.clone().requires_grad_(True)
    loss(xg).sum().backward()
    true = xg.grad.detach() * m  # the attacker perturbs inside the mask only
    rows = []
    print(f"tiny pix2pix, {args.steps} steps, {args.size}^2, {len(te)} test slices, {args.repeats} repeats; cosine with the true gradient")
    print("| basis | samples (queries) | mean cosine | best possible in the basis |")
    print("|---|--:|--:|--:|")
    for basis in (0, 16, 8, 4):
        best = float(projection_cosine(true, basis).mean()) if basis else 1.0
        for samples in sample_counts:
            torch.manual_seed(0)
            cs = [float(cosine(spsa_gradient(loss, x, torch.zeros_like(x), 0.01, samples, mask=m, basis=basis), true).mean())
                  for _ in range(args.repeats)]
            mean = sum(cs) / len(cs)
            rows.append({"basis": basis, "samples": samples, "cosine": round(mean, 4), "best_in_basis": round(best, 4)})
            name = "per pixel" if basis == 0 else f"{basis}x{basis}"
            print(f"| {name} | {samples} ({2 * samples}) | {mean:.3f} | {best:.3f} |")
    return rows


if __name__ == "__main__":
    main()
