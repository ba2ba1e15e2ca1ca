"""KD+attack: variants, inference path without the target, attacker bound, SPSA, distillation."""

from __future__ import annotations

import pytest
import torch

from robustmri.data.embedded import embedded_slices
from robustmri.errors import ConfigError
from robustmri.kd.attacker import GenerativeAttacker, per_image_l1, spsa_gradient
from robustmri.kd.model import VARIANTS, KDAttack
from robustmri.models.registry import build_model
from robustmri.train.context import SimpleStepContext


def _batch(n: int = 2, size: int = 64) -> dict[str, torch.Tensor]:
    d = embedded_slices(n_subjects=1, size=size, n_slices=n, seed=4, contrasts=("t1", "t2"))
    return {"source": d["t1"], "target": d["t2"], "mask": d["mask"]}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_builds_and_trains_one_step(variant):
    torch.manual_seed(0)
    model = build_model("kd_attack", size="tiny", image_size=64, variant=variant)
    model.set_total_steps(10)
    ctx = SimpleStepContext.for_model(model, 10)
    ctx.step = 9  # past every phase of the schedule: all modules of the variant train
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs = model.training_step(_batch(), ctx)
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert "generator" in changed
    flags = VARIANTS[variant]
    assert ("attacker" in changed) == (flags["attack"] == "learned")
    if flags["attack"] is not None:  # G's batch holds the clean and the perturbed copy
        assert logs["attack_linf"] <= model.eps + 1e-6
        assert flags["attack"] == "learned" or logs["attack_linf"] > 0.5 * model.eps  # the learned one starts at 0
    assert ("student" in changed) == flags["kd"]
    assert ("teacher" in changed) == flags["distill"]
    assert ("S/kd" in logs) == flags["distill"]  # g_refine's student learns from the target alone
    assert all(bool(torch.isfinite(torch.as_tensor(v))) for v in logs.values())
    model.eval()
    x = _batch()["source"]
    out = model(x, target=_batch()["target"]) if variant == "teacher_oracle" else model(x)
    assert out.shape == (2, 1, 64, 64)


def test_student_inference_never_reaches_the_target():
    model = build_model("kd_attack", size="tiny", image_size=64, variant="full").eval()
    calls = {"teacher": 0}
    model.teacher.register_forward_hook(lambda *a: calls.__setitem__("teacher", calls["teacher"] + 1))
    x = _batch()["source"]
    with torch.no_grad():
        a = model.translate(x)
        b = model.translate(x, target=torch.rand(2, 1, 64, 64))  # a target offered is ignored
        c = model.translate(x, target=torch.full((2, 1, 64, 64), float("nan")))
    assert calls["teacher"] == 0
    assert torch.equal(a, b) and torch.equal(a, c)
    assert model.inference_modules()[-1] is model.student and model.teacher not in model.inference_modules()
    oracle = build_model("kd_attack", size="tiny", image_size=64, variant="teacher_oracle").eval()
    with pytest.raises(ConfigError, match="target"):
        oracle.translate(x)


def test_attacker_respects_its_norm_bound_and_mask():
    torch.manual_seed(1)
    att = GenerativeAttacker(1, width=8, depth=2, eps=0.02)
    for p in att.parameters():
        torch.nn.init.normal_(p, 0.0, 3.0)  # saturate tanh: the bound must still hold
    x = torch.rand(4, 1, 32, 32)
    mask = torch.zeros(4, 1, 32, 32, dtype=torch.bool)
    mask[..., 8:24, 8:24] = True
    delta = att(x, mask)
    delta = delta.detach()
    assert float(delta.abs().max()) <= 0.02 + 1e-7
    assert float(delta.abs().max()) > 0.019  # and it is reached
    assert float(delta[~mask].abs().max()) == 0.0


def test_spsa_estimates_a_known_gradient_without_backward():
    torch.manual_seed(2)
    w = torch.randn(3, 1, 16, 16)
    calls = {"n": 0}

    def loss(q: torch.Tensor) -> torch.Tensor:  # linear: the true gradient is w
        calls["n"] += 1
        assert not torch.is_grad_enabled()
        return (q * w).flatten(1).sum(1)

    x = torch.full((3, 1, 16, 16), 0.5)
    g = spsa_gradient(loss, x, torch.zeros_like(x), c=0.01, samples=400)
    cos = torch.nn.functional.cosine_similarity(g.flatten(1), w.flatten(1)).min()
    assert calls["n"] == 800 and float(cos) > 0.65
    g2 = spsa_gradient(loss, x, torch.zeros_like(x), c=0.01, samples=2)
    assert float(torch.nn.functional.cosine_similarity(g2.flatten(1), w.flatten(1)).mean()) > 0.0


def test_attacker_step_uses_no_generator_gradient():
    torch.manual_seed(3)
    model = build_model("kd_attack", size="tiny", image_size=64, variant="g_attack")
    model.set_total_steps(10)
    ctx = SimpleStepContext.for_model(model, 10)
    ctx.step = 5
    for p in model.generator.parameters():
        p.grad = None
    model._attack(_batch(), ctx)
    assert all(p.grad is None for p in model.generator.parameters())  # black-box: queries only
    assert any(p.grad is not None for p in model.attacker.parameters())


def test_distillation_loss_falls_during_training():
    """Teacher first (steps 0-31), then the student distils it: its distillation loss falls. The
    correcting teacher moves away from G(x) at once, so the student starts far from it; a registering
    teacher starts at G(x), as the student does (its distillation starts near 0 and is tested above)."""
    torch.manual_seed(4)
    torch.set_num_threads(2)
    steps = 80
    model = KDAttack(build_model("pix2pix", size="tiny", image_size=64), variant="g_kd", schedule=(0.0, 0.0, 0.4), teacher="correct")
    model.set_total_steps(steps)
    ctx = SimpleStepContext.for_model(model, steps)
    d = embedded_slices(n_subjects=2, size=64, n_slices=8, seed=5, contrasts=("t1", "t2"))
    kd = []
    for step in range(steps):
        ctx.step = step
        idx = torch.arange(step * 4, step * 4 + 4) % 16
        logs = model.training_step({"source": d["t1"][idx], "target": d["t2"][idx], "mask": d["mask"][idx]}, ctx)
        if "S/kd" in logs:
            kd.append(logs["S/kd"])
    assert len(kd) == 48
    first, last = sum(kd[:8]) / 8, sum(kd[-8:]) / 8
    assert last < 0.7 * first, (first, last)


def test_the_registering_teacher_cannot_repaint_intensities():
    """Teacher output = warp(G(x)): with a zero flow it IS G(x), whatever target it sees; the
    correcting teacher (the ablation option) has a head that moves intensities toward the target."""
    torch.manual_seed(5)
    b = _batch()
    model = build_model("kd_attack", size="tiny", image_size=64, variant="full")
    assert model.teacher.correction_head is None and model.student.correction_head is not None
    synth = torch.rand(2, 1, 64, 64)
    net = model.teacher
    for p in net.register_net.parameters():  # a non-trivial network: random weights ...
        torch.nn.init.normal_(p, 0.0, 0.2)
    net.register_net.output.register_forward_hook(lambda mod, inp, out: torch.zeros_like(out))  # ... and no motion
    for y in (b["target"], torch.zeros_like(b["target"]), torch.ones_like(b["target"])):
        r = net(synth, torch.cat([y, b["source"]], 1))
        assert torch.allclose(r.image, synth, atol=1e-5)  # the target's intensities never reach the output
    old = build_model("kd_attack", size="tiny", image_size=64, variant="full", teacher="correct")
    assert old.teacher.correction_head is not None
    # an intensity pattern the warp cannot produce: the correcting teacher's output depends on y
    for p in old.teacher.parameters():
        torch.nn.init.normal_(p, 0.0, 0.2)
    r0 = old.teacher(synth, torch.cat([torch.zeros_like(b["target"]), b["source"]], 1)).correction
    r1 = old.teacher(synth, torch.cat([torch.ones_like(b["target"]), b["source"]], 1)).correction
    assert float((r0 - r1).abs().mean()) > 1e-3


def test_teacher_logs_the_warp_share_and_a_pure_warp_teacher_equals_its_warp():
    torch.manual_seed(6)
    for kind in ("register", "correct"):
        model = build_model("kd_attack", size="tiny", image_size=64, variant="g_kd", teacher=kind)
        model.set_total_steps(10)
        ctx = SimpleStepContext.for_model(model, 10)
        ctx.step = 9
        logs = model.training_step(_batch(), ctx)
        assert {"T/l1_synth", "T/l1_warp", "T/l1"} <= set(logs)
        if kind == "register":
            assert abs(logs["T/l1"] - logs["T/l1_warp"]) < 1e-6


def test_pgd_training_control_beats_noise_of_the_same_bound():
    """The g_pgd control's perturbation raises G's L1 error more than g_noise's, same L-inf ball."""
    torch.manual_seed(7)
    b = _batch(4)
    gains = {}
    for variant in ("g_noise", "g_pgd"):
        torch.manual_seed(7)
        model = build_model("kd_attack", size="tiny", image_size=64, variant=variant, eps=0.05, pgd_steps=5)
        model.set_total_steps(10)
        ctx = SimpleStepContext.for_model(model, 10)
        ctx.step = 9
        x_adv, logs = model._attack(b, ctx)
        assert float((x_adv - b["source"]).abs().amax()) <= 0.05 + 1e-6
        assert float((x_adv - b["source"])[~b["mask"]].abs().amax()) == 0.0  # inside the brain mask
        gains[variant] = float(model._query_loss(x_adv, b["target"]).mean() - model._query_loss(b["source"], b["target"]).mean())
    assert gains["g_pgd"] > 2 * abs(gains["g_noise"]) and gains["g_pgd"] > 0, gains


def test_bad_kd_configs():
    with pytest.raises(ConfigError, match="variant"):
        build_model("kd_attack", variant="everything")
    with pytest.raises(ConfigError, match="itself"):
        build_model("kd_attack", generator="kd_attack")
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("kd_attack", generator="nope")
    with pytest.raises(ConfigError, match="attacker"):
        build_model("kd_attack", attacker="magic")
    with pytest.raises(ConfigError, match="teacher_L1"):
        build_model("kd_attack", loss_weights={"teacher_L1": 1.0})  # a typo is not silently ignored
    with pytest.raises(ConfigError, match="spsa_samples"):
        build_model("kd_attack", spsa_samples=0)
    with pytest.raises(ConfigError, match="schedule"):
        build_model("kd_attack", schedule=(0.1, 0.3))
    with pytest.raises(ConfigError, match="eps"):
        build_model("kd_attack", eps=0.0)
    with pytest.raises(ConfigError, match="teacher"):
        build_model("kd_attack", teacher="copy")
    with pytest.raises(ConfigError, match="pgd_steps"):
        build_model("kd_attack", variant="g_pgd", pgd_steps=0)
    # the paper-size refinement network has 7 downsamplings: 128^2 would fail deep inside a padding
    with pytest.raises(ConfigError, match="multiple of 128 and >= 256"):
        build_model("kd_attack", size="paper", image_size=128)


def test_module_size_sizes_the_wrappers_networks_apart_from_the_generator():
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    small = build_model("kd_attack", size="small", image_size=64)
    mixed = build_model("kd_attack", size="small", image_size=64, module_size="tiny")
    tiny = build_model("kd_attack", size="tiny", image_size=64)
    assert count(mixed.generator) == count(small.generator) > count(tiny.generator)
    for part in ("student", "teacher", "attacker"):
        assert count(getattr(mixed, part)) == count(getattr(tiny, part)) < count(getattr(small, part))
    with pytest.raises(ConfigError, match="size"):
        build_model("kd_attack", module_size="huge")


def _cos(a, b):
    return float((a.flatten() @ b.flatten()) / (a.norm() * b.norm()))


def test_spsa_estimate_is_unbiased_and_its_cosine_follows_the_dimension():
    """Known answers on a linear loss L(x) = <w, x> (true gradient w): with n Rademacher directions in
    d dimensions the estimate's cosine with w is about sqrt(n / (n + d - 1)) (per pixel, d = 4096:
    0.022 at n = 2), it tends to 1 with many samples in few dimensions, and a k x k basis helps
    exactly when the gradient is smooth: for a smooth w, 8 samples in an 8 x 8 basis reach over 0.3."""
    import math

    from robustmri.kd.attacker import spsa_gradient

    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = (torch.sin(2 * math.pi * xx) + torch.cos(math.pi * yy)).view(1, 1, 64, 64)
    rough = torch.randn(1, 1, 64, 64)
    x = torch.full((1, 1, 64, 64), 0.5)
    zero = torch.zeros_like(x)
    for w in (smooth, rough):
        def loss(q, w=w):
            return (q * w).flatten(1).sum(1)

        per_pixel = [_cos(spsa_gradient(loss, x, zero, 0.01, 2), w) for _ in range(20)]
        assert abs(sum(per_pixel) / 20 - math.sqrt(2 / 4097)) < 0.01
    small = torch.randn(1, 1, 4, 4)
    est = spsa_gradient(lambda q: (q * small).flatten(1).sum(1), torch.full((1, 1, 4, 4), 0.5), torch.zeros(1, 1, 4, 4), 0.01, 2000)
    assert _cos(est, small) > 0.97  # unbiased: many samples recover the gradient
    basis = sum(_cos(spsa_gradient(lambda q: (q * smooth).flatten(1).sum(1), x, zero, 0.01, 8, basis=8), smooth) for _ in range(10)) / 10
    rough_basis = sum(_cos(spsa_gradient(lambda q: (q * rough).flatten(1).sum(1), x, zero, 0.01, 8, basis=8), rough) for _ in range(10)) / 10
    assert basis > 0.3 and abs(rough_basis) < 0.1  # a basis cannot see what it does not span
    with pytest.raises(ConfigError):
        spsa_gradient(lambda q: q.flatten(1).sum(1), x, zero, 0.01, 1, basis=-1)


def test_local_estimate_is_exact_for_a_pointwise_generator_and_only_queries_it():
    """Known answer: for a pointwise G (here the T1->T2-like inversion with a curve, G(x) = 1 - x^2)
    the Jacobian is diagonal, so one Rademacher sample recovers J^T v exactly (u^2 = 1), up to the
    forward difference's error; G is called samples + 1 times, never under autograd."""
    from robustmri.kd.attacker import local_gradient

    torch.manual_seed(0)
    calls = {"n": 0}

    def generate(q: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        assert not torch.is_grad_enabled()
        return 1 - q**2

    x = torch.rand(3, 1, 16, 16) * 0.8 + 0.1
    y = torch.rand(3, 1, 16, 16)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[..., :4] = False

    def output_loss(out: torch.Tensor) -> torch.Tensor:
        return per_image_l1(out * mask, y * mask)

    est = local_gradient(generate, output_loss, x, torch.zeros_like(x), c=1e-4, samples=1, mask=mask, sigma_px=0.0)
    xg = x.clone().requires_grad_(True)
    (true,) = torch.autograd.grad(output_loss(1 - xg**2).sum(), xg)
    assert calls["n"] == 2
    assert torch.allclose(est, true * mask, atol=1e-6, rtol=1e-2)
    assert float(est[~mask].abs().max()) == 0.0
    with pytest.raises(ConfigError):
        local_gradient(generate, output_loss, x, torch.zeros_like(x), 1e-4, 0)


def test_local_estimate_smoothing_recovers_a_spatially_spread_jacobian():
    """For a blurring G (a 5x5 Gaussian convolution, J = its symmetric kernel) and a smooth output
    error, J^T v is smooth: the raw diagonal estimate sees only the kernel's centre weight times v
    plus noise, and smoothing over about a pixel raises its cosine with the true gradient (measured
    at 3 samples: 0.77 raw -> 0.95 smoothed); with many samples the raw estimate converges to
    diag(J) * v (known: the kernel's centre weight)."""
    import math

    from robustmri.kd.attacker import local_gradient
    from robustmri.perturb.image import gaussian_blur

    torch.manual_seed(0)

    def generate(q: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(q, 1.0)

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    x = (0.5 + 0.3 * torch.sin(2 * math.pi * xx) * torch.cos(math.pi * yy)).view(1, 1, 48, 48)
    y = torch.full_like(x, 0.5)

    def output_loss(out: torch.Tensor) -> torch.Tensor:
        return ((out - y) ** 2).flatten(1).mean(1)  # v = 2 (out - y) / N: smooth

    zero = torch.zeros_like(x)
    xg = x.clone().requires_grad_(True)
    (true,) = torch.autograd.grad(output_loss(generate(xg)).sum(), xg)
    raw = sum(_cos(local_gradient(generate, output_loss, x, zero, 1e-3, 3, sigma_px=0.0), true) for _ in range(5)) / 5
    smooth = sum(_cos(local_gradient(generate, output_loss, x, zero, 1e-3, 3, sigma_px=1.0), true) for _ in range(5)) / 5
    assert smooth > raw + 0.15 and smooth > 0.8
    many = local_gradient(generate, output_loss, x, zero, 1e-3, 2000, sigma_px=0.0)
    with torch.no_grad():
        v = 2 * (generate(x) - y) / x.numel()
        centre = float(generate(torch.zeros(1, 1, 9, 9).index_put_((torch.tensor([0]), torch.tensor([0]), torch.tensor([4]), torch.tensor([4])), torch.tensor(1.0)))[0, 0, 4, 4])
    inner = (..., slice(4, -4), slice(4, -4))  # away from the reflected edges, where the diagonal is larger
    assert torch.allclose(many[inner], centre * v[inner], atol=0.1 * float(v.abs().max()))


def test_attacker_trained_on_queries_beats_random_signs_of_the_same_norm():
    """Known answer: G(x) = 1 - x and a target off by b(x) = 0.1 (x - 0.5), so the L1 error is
    mean|delta + b| and the best attack in the eps-ball is eps * sign(b(x)), a function of the image
    the network can learn: +eps wherever |b| > eps. Random signs of the same L-inf gain nothing
    there. Trained from 4 queries per step with the default estimate and update, the attacker must
    gain most of eps; the former linear update on the same estimates saturates tanh and gains less."""
    from robustmri.kd.attacker import attacker_loss, local_gradient

    eps = 0.03

    def generate(q: torch.Tensor) -> torch.Tensor:
        return 1 - q

    def data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        x = torch.nn.functional.avg_pool2d(torch.rand(n, 1, 32, 32, generator=g), 5, 1, 2)
        x = (x - x.amin((2, 3), keepdim=True)) / (x.amax((2, 3), keepdim=True) - x.amin((2, 3), keepdim=True))
        return x, 1 - x - 0.1 * (x - 0.5)

    xt, yt = data(64, 0)
    xs, ys = data(16, 1)
    far = (0.1 * (xs - 0.5)).abs() > eps

    def gain(delta: torch.Tensor) -> float:
        return float(((generate(xs + delta) - ys).abs() - (generate(xs) - ys).abs())[far].mean())

    gains = {}
    for update, lr in (("step", 1e-3), ("linear", 1e-4)):
        torch.manual_seed(0)
        att = GenerativeAttacker(1, width=16, depth=3, eps=eps)
        opt = torch.optim.Adam(att.parameters(), lr=lr)
        for i in range(300):
            idx = torch.arange(4 * i, 4 * i + 4) % len(xt)
            xb, yb = xt[idx], yt[idx]
            delta = att(xb)
            g = local_gradient(generate, lambda out, yb=yb: per_image_l1(out, yb), xb, delta.detach(), 0.015, 3)
            opt.zero_grad()
            attacker_loss(delta, g, eps, None, update).backward()
            opt.step()
        with torch.no_grad():
            gains[update] = gain(att(xs))
    random = gain(eps * (torch.randint(0, 2, xs.shape, generator=torch.Generator().manual_seed(2)).float() * 2 - 1))
    assert abs(random) < 0.1 * eps
    assert gains["step"] > 0.6 * eps
    assert gains["step"] > gains["linear"]
    with pytest.raises(ConfigError):
        attacker_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), eps, update="adam")


@pytest.mark.slow
def test_the_default_attacker_estimate_is_informative_on_a_real_generator():
    """On a trained tiny pix2pix at 64^2 (benchmarks/attacker_cosine.py; about 1.5 min): at the
    default budget of 4 queries the local estimate's cosine with the true gradient is at least 0.3
    (measured 0.44; the loss-only SPSA 0.03), and the adversarial example the defaults give G (the
    trained attacker's output refined by one step along the estimate) raises the test error more
    than random signs of the same norm and more than the former default's attacker."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from attacker_cosine import main

    out = main(["--steps", "150", "--repeats", "2", "--attack-steps", "300"])
    cos = {(r["estimate"], r["option"], r["queries"]): r["cosine"] for r in out["cosine"]}
    assert cos[("local", 1.0, 4)] >= 0.3
    assert cos[("loss", 0, 4)] < 0.1
    gains = {s["attack"]: s["gain"] for s in out["strength"]}
    default = next(v for k, v in gains.items() if k.startswith("default") and "what G trains on" in k)
    former = next(v for k, v in gains.items() if "former default" in k)
    random = next(v for k, v in gains.items() if k.startswith("random"))
    assert default > former and default > 2 * abs(random) + 0.1


def test_the_paper_suite_holds_every_variant_and_wraps_every_trainable_generator():
    """paper.toml claims every ablation variant and KD+attack "with any generator": each VARIANT
    wraps pix2pix, and pix2pix, ResViT and Reg-GAN each appear as "X + KD+attack" (full); each of
    those entries builds (at tiny size here) and translates a batch to the right shape."""
    from robustmri.bench import load_suite

    suite = load_suite("paper")
    kd = [m for m in suite.models if m.name == "kd_attack"]
    assert {m.options["variant"] for m in kd if m.options["generator"] == "pix2pix"} == set(VARIANTS)  # controls included
    wrapped = {m.options["generator"] for m in kd if m.options["variant"] == "full"}
    assert wrapped == {"pix2pix", "resvit", "reggan"}
    assert {m.name for m in suite.models} >= {"pix2pix", "resvit", "reggan", "diffusion"}
    assert len({m.label for m in suite.models}) == len(suite.models)
    x = torch.rand(2, 1, 64, 64)
    for gen in sorted(wrapped):
        model = build_model("kd_attack", size="tiny", image_size=64, generator=gen, variant="full").eval()
        with torch.no_grad():
            assert model.translate(x).shape == (2, 1, 64, 64)


def test_a_run_trained_under_former_defaults_is_another_training():
    """KD+attack declares the version of its defaults (2: the informative attacker); the run config
    records it, so a finished run saved without it (version 1) differs and is refused, not reused.
    A model that declares no version records none (its saved runs stay valid)."""
    from robustmri.models.registry import model_version
    from robustmri.train.engine import TrainConfig, config_differences

    kd = TrainConfig(model="kd_attack").to_dict()
    assert model_version("kd_attack") == 3 and kd["model_version"] == 3
    assert "model_version" not in TrainConfig(model="pix2pix").to_dict() and model_version("pix2pix") is None
    former = {k: v for k, v in kd.items() if k != "model_version"}
    assert config_differences(former, kd) == ["model_version"]
    assert TrainConfig.from_dict(kd).to_dict() == kd


def test_each_variant_gets_the_attack_budget_tuning_chose() -> None:
    from robustmri.kd.model import DEFAULT_EPS

    g = build_model("pix2pix", "tiny", image_size=64)
    budgets = {v: KDAttack(g, variant=v, size="tiny").eps for v in ("full", "g_attack", "g_noise", "g_pgd", "g_only")}
    assert budgets == {"full": 0.015, "g_attack": 0.015, "g_noise": 0.06, "g_pgd": 0.06, "g_only": 0.015}
    assert DEFAULT_EPS["learned"] == 0.015
    assert KDAttack(g, variant="g_pgd", size="tiny", eps=0.03).eps == 0.03  # an explicit budget wins
