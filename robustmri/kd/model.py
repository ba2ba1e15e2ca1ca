"""KD+attack: any generator + black-box attacker before it + registration teacher distilled into a student.

After Liang, Feng, Long, Yuan, Zhao, Zhao, "Robust Multi-contrast MRI Medical Image Translation via
Knowledge Distillation and Adversarial Attack", IEEE JBHI 2025 (doi 10.1109/JBHI.2025.3584721).
Only the abstract is public; what it states is *published*, everything else is *inferred* here and
configurable (see docs/kd_attack.md for the diagram and the full table).

Published: a refinement network of a teacher and a student with similar structure but different
inputs after any generator G; the teacher is a registration network that also sees the real target;
the student sees only what is available at test time and is trained by knowledge distillation; an
adversarial (black-box) attack module before G produces norm-bounded perturbations and adversarial
examples throughout training so G learns to resist them; inference is student(G(x)).

Inferred (defaults, all options of :class:`KDAttack`):

- Attacker: :class:`robustmri.kd.attacker.GenerativeAttacker`, ``delta = eps * tanh(A(x))`` inside
  the brain mask, eps 0.015 (:data:`DEFAULT_EPS`); trained from queries of G only, never its gradients (``attacker="spsa"``):
  by default from G's output images (``spsa_estimate="local"``: ``spsa_samples`` = 3 random
  directions + 1 base query, the diagonal of G's Jacobian smoothed by ``spsa_sigma_px`` = 1 pixel;
  cosine 0.32-0.44 with the true gradient), or from G's loss alone (``spsa_estimate="loss"``:
  ``2 * spsa_samples`` queries, cosine 0.03 at the same 4 queries); or no learned attacker but a
  query-only Square attack per batch (``attacker="square"``). With ``attacker_update="step"``
  (default, Adam lr 1e-3) the adversarial example G trains on is A's output refined by one projected
  sign-ascent step of ``attack_step`` x eps along the estimate (the same queries: no extra cost),
  and A learns by regression onto that refined perturbation; ``"linear"`` (A's output as the
  example, the estimate as the gradient of ``-sum g * delta``, lr 1e-4: the former default)
  saturates tanh and stops learning (:func:`robustmri.kd.attacker.attacker_loss`).
- G is trained by its *own* training step (its own losses and optimisers, e.g. pix2pix's GAN +
  100 L1) on the concatenation of the clean and the attacked batch.
- Teacher ``T(G(x), [y, x])`` and student ``S(G(x), x)``: Reg-GAN registration networks
  (:mod:`robustmri.kd.refine`), trained on G's outputs for clean and attacked inputs with G
  detached (G learns only from its own losses). The teacher only registers: its output is
  ``warp(G(x), flow_T)`` (``teacher="register"``), so what it passes on is where G's output should
  move, never the target's intensities; the student also has a bounded intensity correction, as it
  sees only test-time inputs. ``teacher="correct"`` restores a teacher with a correction head that
  sees the target (it learns to copy it: 22.6 -> 29.9 dB while its warp alone added 0.06 dB).
- Teacher loss: ``20 * L1(T, y) + 10 * smooth(flow_T)`` (Reg-GAN's R loss), plus
  ``1 * mean|r_T|`` for the correcting teacher. Logged every step: ``T/l1_synth`` = L1(G(x), y),
  ``T/l1_warp`` = L1(warp(G(x), flow_T), y) and ``T/l1``; the report's ``teacher`` table turns
  them into the warp's share of the teacher's gain.
- Student loss: ``10 * L1(S, T) + 10 * L1(S, y) + 10 * smooth(flow_S)``: distillation of the
  teacher's output. Distilling its flow (``kd_flow * L1(flow_S, flow_T)``) and last features
  (``kd_feature * MSE(feat_S, feat_T) / mean(feat_T^2)``, relative to the teacher's feature scale)
  is available but off by default: it cost the student about 0.8 dB in the ablations.
- Schedule (fractions of the training steps): attack from 0.1, teacher from 0.3, student from 0.5;
  before that G trains alone (warm-up).
- Variants (:data:`VARIANTS`): ``g_only``, ``g_attack``, ``g_refine`` and ``g_attack_refine`` (the
  student without a teacher: separates distillation from the extra network), ``g_kd``, ``full`` and
  ``teacher_oracle`` (the teacher used at test time WITH the target: an upper bound for diagnosis only);
  the controls ``g_noise`` (noise augmentation) and ``g_pgd`` (PGD adversarial training, ``pgd_steps``
  steps of size ``2.5 eps / pgd_steps`` from a random start, G in eval mode) with the same 2B images
  per G step as ``g_attack``. Per step the learned attacker costs ``spsa_samples + 2`` forward passes of G
  (``2 * spsa_samples + 1`` with ``spsa_estimate="loss"``), PGD ``pgd_steps`` forward and backward passes, noise none.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.layers import check_image_size
from baselines.reggan import smoothness_loss
from robustmri.errors import ConfigError, did_you_mean
from robustmri.kd.attacker import (
    ATTACKER_UPDATES,
    GenerativeAttacker,
    ascent_step,
    attacker_loss,
    local_gradient,
    per_image_l1,
    spsa_gradient,
)
from robustmri.kd.refine import Refinement, RefinementNet
from robustmri.models.base import Batch, OptimizerSpec, StepContext, TranslationModel
from robustmri.models.registry import build_model
from robustmri.rng import KeyedStream, RandomSource

VARIANTS: dict[str, dict[str, Any]] = {
    "g_only": {"attack": None, "kd": False, "distill": False, "inference": "generator"},
    "g_attack": {"attack": "learned", "kd": False, "distill": False, "inference": "generator"},
    "g_refine": {"attack": None, "kd": True, "distill": False, "inference": "student"},
    "g_attack_refine": {"attack": "learned", "kd": True, "distill": False, "inference": "student"},
    "g_kd": {"attack": None, "kd": True, "distill": True, "inference": "student"},
    "full": {"attack": "learned", "kd": True, "distill": True, "inference": "student"},
    "teacher_oracle": {"attack": "learned", "kd": True, "distill": True, "inference": "teacher_oracle"},
    # controls at matched images per step (G sees the clean batch and a perturbed copy, 2B images)
    "g_noise": {"attack": "noise", "kd": False, "distill": False, "inference": "generator"},
    "g_pgd": {"attack": "pgd", "kd": False, "distill": False, "inference": "generator"},
}
"""Ablation variants: which modules train and what :meth:`KDAttack.translate` returns.

``attack``: what perturbs the second half of G's batch: ``"learned"`` (the black-box attacker),
``"noise"`` (uniform noise in the same L-inf ball: noise augmentation), ``"pgd"`` (white-box PGD on
G's L1 error in the same ball: Madry-style adversarial training) or ``None`` (G sees B images).
``kd``: the student refinement network exists; ``distill``: a teacher exists and the student learns
from it. ``g_refine`` / ``g_attack_refine`` train the same student with the same schedule but from
the target alone (no teacher, no distillation terms): they separate the gain of distillation from
the gain of an extra refinement network. ``g_noise`` and ``g_pgd`` are the controls of
``g_attack``: the same 2B images per G step, perturbed without the learned attacker."""

DEFAULT_EPS: dict[str | None, float] = {"learned": 0.015, "noise": 0.06, "pgd": 0.06, None: 0.015}
"""The L-inf budget (intensities in [0, 1]) of what perturbs G's second half-batch, by the variant's
``attack`` kind: the values ``tune-paper-mini`` chose on validation subjects with three trials per
method (docs/kd_attack.md, "Equal chances"): KD+attack ``full`` 0.015 (its trial with ``small``
modules; 0.03 and 0.06 with ``tiny`` ones scored lower), noise augmentation and PGD training 0.06
(their three trials within 0.03 dB of each other). Variants without an attack do not use it."""

TEACHERS: tuple[str, ...] = ("register", "correct")
"""``register`` (default): the teacher's output is the warped G(x), no intensity correction, so
it cannot copy the target's intensities; ``correct``: registration plus a bounded correction head
that sees the target (wave-1 behaviour, kept for the ablation)."""

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"down": (8, 16, 32), "up": (32, 16, 8), "blocks": 1, "attacker_width": 16, "attacker_depth": 3},
    "small": {"down": (32, 64, 64, 64), "up": (64, 64, 64, 32), "blocks": 2, "attacker_width": 32, "attacker_depth": 4},
    "paper": {
        "down": (32, 64, 64, 64, 64, 64, 64),
        "up": (64, 64, 64, 64, 64, 64, 32),
        "blocks": 3,
        "attacker_width": 64,
        "attacker_depth": 5,
    },
}

LOSS_WEIGHTS: dict[str, float] = {
    "teacher_l1": 20.0,
    "smooth": 10.0,
    "correction": 1.0,
    "kd_output": 10.0,
    # Flow and feature distillation are available but off: the teacher's flow and features come
    # from the target, and matching them cost the student 0.8 dB over two seeds (docs/kd_attack.md,
    # suites ablation-kdweights and ablation-kdoutput).
    "kd_flow": 0.0,
    "kd_feature": 0.0,
    "student_l1": 10.0,
}


class _PrefixedContext:
    """Lets the wrapped generator's ``training_step`` use its own optimiser names under a prefix."""

    def __init__(self, parent: StepContext, prefix: str) -> None:
        self._parent, self._prefix = parent, prefix

    @property
    def step(self) -> int:
        return self._parent.step

    @property
    def device(self) -> torch.device:
        return self._parent.device

    def autocast(self):  # type: ignore[no-untyped-def]
        return self._parent.autocast()

    def optimize(self, name: str, loss: Tensor) -> None:
        self._parent.optimize(self._prefix + name, loss)


class KDAttack(TranslationModel):
    """KD+attack around a registered generator (see the module docstring).

    ``translate(source)`` returns ``student(G(source), source)`` for the KD variants and ``G(source)``
    for ``g_only``/``g_attack``; ``teacher_oracle`` needs ``translate(source, target=y)``.
    """

    name = "kd_attack"

    def __init__(
        self,
        generator: TranslationModel,
        variant: str = "full",
        size: str = "tiny",
        eps: float | None = None,
        attacker: str = "spsa",
        spsa_samples: int = 3,
        spsa_basis: int = 0,
        spsa_estimate: str = "local",
        spsa_sigma_px: float = 1.0,
        attacker_update: str = "step",
        attack_step: float = 1.0,
        square_queries: int = 20,
        pgd_steps: int = 3,
        teacher: str = "register",
        schedule: tuple[float, float, float] = (0.1, 0.3, 0.5),
        lr: float = 1e-4,
        attacker_lr: float = 1e-3,
        loss_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__(generator.in_channels, generator.image_size)
        if variant not in VARIANTS:
            raise ConfigError(f"unknown kd_attack variant {variant!r}{did_you_mean(variant, VARIANTS)}: use one of {', '.join(VARIANTS)}")
        if attacker not in ("spsa", "square"):
            raise ConfigError(f"unknown attacker {attacker!r}: use spsa or square")
        if teacher not in TEACHERS:
            raise ConfigError(f"unknown teacher {teacher!r}: use one of {', '.join(TEACHERS)}")
        if int(pgd_steps) < 1:
            raise ConfigError(f"pgd_steps must be >= 1, got {pgd_steps}")
        if len(schedule) != 3 or not (0.0 <= schedule[0] <= 1 and 0.0 <= schedule[1] <= schedule[2] <= 1):
            raise ConfigError(
                f"schedule must be 3 fractions (attacker, teacher, student start) in [0, 1] with teacher <= student, "
                f"got {schedule}"
            )
        if size not in PRESETS:
            raise ConfigError(f"unknown size {size!r}: use one of {', '.join(PRESETS)}")
        unknown = sorted(set(loss_weights or {}) - set(LOSS_WEIGHTS))
        if unknown:
            raise ConfigError(f"unknown kd_attack loss weight(s) {unknown}: use {', '.join(LOSS_WEIGHTS)}")
        if spsa_estimate not in ("local", "loss"):
            raise ConfigError(f"unknown spsa_estimate {spsa_estimate!r}: use local (from G's outputs) or loss (from G's loss alone)")
        if attacker_update not in ATTACKER_UPDATES:
            raise ConfigError(f"unknown attacker_update {attacker_update!r}: use one of {', '.join(ATTACKER_UPDATES)}")
        if not 0 < float(attack_step) <= 2:
            raise ConfigError(f"attack_step must be in (0, 2] (a fraction of eps), got {attack_step}")
        if not float(spsa_sigma_px) >= 0:
            raise ConfigError(f"spsa_sigma_px must be >= 0 (pixels), got {spsa_sigma_px}")
        if int(spsa_basis) < 0:
            raise ConfigError(f"spsa_basis must be 0 (per pixel) or a grid size k > 0, got {spsa_basis}")
        if int(spsa_samples) < 1 or int(square_queries) < 1:
            raise ConfigError(f"spsa_samples and square_queries must be >= 1, got {spsa_samples} and {square_queries}")
        if eps is None:
            eps = DEFAULT_EPS[VARIANTS[variant]["attack"]] if variant in VARIANTS else 0.015
        if not eps > 0:
            raise ConfigError(f"eps must be > 0 (L-inf bound in intensity units), got {eps}")
        preset = PRESETS[size]
        if VARIANTS[variant]["kd"]:
            depth = len(preset["down"])
            check_image_size(f"kd_attack ({size}) refinement network", generator.image_size, 2**depth, 2 ** (depth + 1))
        self.variant = variant
        self.flags = VARIANTS[variant]
        self.needs_target = self.flags["inference"] == "teacher_oracle"  # an oracle: sees y at test time
        self.generator = generator
        self.attacker_kind = attacker
        self.spsa_samples = int(spsa_samples)
        self.spsa_basis = int(spsa_basis)
        self.spsa_estimate = spsa_estimate
        self.spsa_sigma_px = float(spsa_sigma_px)
        self.attacker_update = attacker_update
        self.attack_step = float(attack_step)
        self.square_queries = int(square_queries)
        self.pgd_steps = int(pgd_steps)
        self.teacher_kind = teacher
        self.schedule = tuple(float(s) for s in schedule)
        self.lr, self.attacker_lr = lr, attacker_lr
        self.weights = {**LOSS_WEIGHTS, **(loss_weights or {})}
        self.total_steps = 1
        c = generator.in_channels
        learned = self.flags["attack"] == "learned"
        self.attacker = GenerativeAttacker(c, preset["attacker_width"], preset["attacker_depth"], eps) if learned else None
        self.eps = float(eps)
        self.teacher = (
            RefinementNet(1 + c, preset["down"], preset["up"], preset["blocks"], correction=teacher == "correct")
            if self.flags["distill"]
            else None
        )
        self.student = RefinementNet(c, preset["down"], preset["up"], preset["blocks"]) if self.flags["kd"] else None

    # ------------------------------------------------------------------ inference
    def set_total_steps(self, steps: int) -> None:
        self.total_steps = max(int(steps), 1)

    def _g(self, source: Tensor, generator: RandomSource | None = None) -> Tensor:
        return self.generator.translate(source, generator=generator)

    def translate(self, source: Tensor, generator: RandomSource | None = None, target: Tensor | None = None) -> Tensor:
        synth = self._g(source, generator)
        mode = self.flags["inference"]
        if mode == "generator":
            return synth
        if mode == "student":
            return self.student(synth, source).image
        if target is None:
            raise ConfigError("the teacher_oracle variant needs the real target at test time (diagnosis only): pass target=")
        return self.teacher(synth, torch.cat([target, source], 1)).image

    def forward(self, source: Tensor, generator: RandomSource | None = None, target: Tensor | None = None) -> Tensor:
        return self.translate(source, generator=generator, target=target)

    def inference_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = list(self.generator.inference_modules())
        if self.flags["inference"] == "student":
            mods.append(self.student)
        elif self.flags["inference"] == "teacher_oracle":
            mods.append(self.teacher)
        return mods

    # ------------------------------------------------------------------ training
    def optimizers(self) -> dict[str, OptimizerSpec]:
        specs: dict[str, OptimizerSpec] = {}
        if self.attacker is not None:
            specs["A"] = OptimizerSpec(list(self.attacker.parameters()), lr=self.attacker_lr)
        for name, spec in self.generator.optimizers().items():
            specs["G/" + name] = spec
        if self.teacher is not None:
            specs["T"] = OptimizerSpec(list(self.teacher.parameters()), lr=self.lr)
        if self.student is not None:
            specs["S"] = OptimizerSpec(list(self.student.parameters()), lr=self.lr)
        return specs

    def _phase(self, step: int) -> tuple[bool, bool, bool]:
        frac = step / self.total_steps
        attack = self.flags["attack"] is not None and frac >= self.schedule[0]
        teacher = self.teacher is not None and frac >= self.schedule[1]
        student = self.student is not None and frac >= self.schedule[2]
        return attack, teacher, student

    @torch.no_grad()
    def _query_output(self, x: Tensor) -> Tensor:
        """G's output for ``x``, by a forward query only (generator in eval mode)."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self._g(x)
        finally:
            self.generator.train(was_training)

    def _query_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Generator L1 error per image, by forward queries only (generator in eval mode)."""
        return per_image_l1(self._query_output(x), y)

    def _attack(self, batch: Batch, ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
        x, y, m = batch["source"], batch["target"], batch["mask"]
        kind = self.flags["attack"]
        if kind == "noise":  # noise augmentation: uniform in the attacker's L-inf ball, inside the mask
            delta = self.eps * (2.0 * torch.rand_like(x) - 1.0) * m.to(x.dtype)
            return (x + delta).clamp(0.0, 1.0), {"attack_linf": delta.abs().amax()}
        if kind == "pgd":  # white-box PGD on G's L1 error (adversarial training), same ball and mask
            from robustmri.perturb.adversarial import AttackContext, gradient_attack

            seed = KeyedStream(torch.randint(0, 2**62, (x.shape[0],), device=x.device))  # drawn on the device: no sync
            was_training = self.generator.training
            self.generator.eval()
            try:
                actx = AttackContext(model=self._g, target=y, loss="l1")
                x_adv = gradient_attack(actx, x, self.eps, 2.5 * self.eps / self.pgd_steps, self.pgd_steps, mask=m,
                                        generator=seed, keep_best=False)
            finally:
                self.generator.train(was_training)
            return x_adv, {"attack_linf": (x_adv - x).abs().amax()}
        if self.attacker_kind == "square":
            from robustmri.perturb.adversarial import AttackContext, square_attack

            seed = KeyedStream(torch.randint(0, 2**62, (x.shape[0],), device=x.device))
            was_training = self.generator.training
            self.generator.eval()
            try:
                actx = AttackContext(model=self._g, target=y, loss="l1")
                x_adv = square_attack(actx, x, self.eps, self.square_queries, mask=m, generator=seed)
            finally:
                self.generator.train(was_training)
            return x_adv, {"attack_gain": self._query_loss(x_adv, y).mean() - self._query_loss(x, y).mean()}
        assert self.attacker is not None
        with ctx.autocast():
            delta = self.attacker(x, m)
        if self.spsa_estimate == "local":
            grad = local_gradient(self._query_output, lambda out: per_image_l1(out, y), x, delta.detach().float(), c=0.5 * self.eps,
                                  samples=self.spsa_samples, mask=m, sigma_px=self.spsa_sigma_px)
        else:
            grad = spsa_gradient(lambda q: self._query_loss(q, y), x, delta.detach().float(), c=0.5 * self.eps,
                                 samples=self.spsa_samples, mask=m, basis=self.spsa_basis)
        ctx.optimize("A", attacker_loss(delta.float(), grad, self.eps, m, self.attacker_update, self.attack_step))
        if self.attacker_update == "step":  # the adversarial example: A's output refined by the step it learns
            used = ascent_step(delta.detach().float(), grad, self.eps, self.attack_step, m).to(x.dtype)
        else:
            used = delta.detach()
        x_adv = (x + used).clamp(0.0, 1.0)
        return x_adv, {"attack_linf": used.abs().amax()}

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, Tensor]:
        attack_on, teacher_on, student_on = self._phase(ctx.step)
        logs: dict[str, Tensor] = {}
        x, y, m = batch["source"], batch["target"], batch["mask"]
        if attack_on:
            x_adv, attack_logs = self._attack(batch, ctx)
            logs.update(attack_logs)
            x_all, y_all, m_all = torch.cat([x, x_adv]), torch.cat([y, y]), torch.cat([m, m])
        else:
            x_all, y_all, m_all = x, y, m
        g_logs = self.generator.training_step({"source": x_all, "target": y_all, "mask": m_all}, _PrefixedContext(ctx, "G/"))
        logs.update({f"G/{k}": v for k, v in g_logs.items()})
        if not (teacher_on or student_on):
            return logs
        with torch.no_grad():
            self.generator.eval()
            synth = self._g(x_all)
            self.generator.train()
        w = self.weights
        t_out: Refinement | None = None
        if teacher_on:
            with ctx.autocast():
                t_out = self.teacher(synth, torch.cat([y_all, x_all], 1))
                t_l1 = F.l1_loss(t_out.image.float(), y_all)
                loss_t = w["teacher_l1"] * t_l1 + w["smooth"] * smoothness_loss(t_out.flow)
                if self.teacher_kind == "correct":
                    loss_t = loss_t + w["correction"] * t_out.correction.float().abs().mean()
            ctx.optimize("T", loss_t)
            with torch.no_grad():  # the warp's share of the teacher's gain over G(x)
                warped = self.teacher.warp(synth, t_out.flow.detach().float()).clamp(0.0, 1.0)
                l1_synth, l1_warp = F.l1_loss(synth.float(), y_all), F.l1_loss(warped, y_all)
            logs.update({"T/l1": t_l1.detach(), "T/l1_synth": l1_synth, "T/l1_warp": l1_warp, "T/loss": loss_t.detach()})
        if not student_on:
            return logs
        with ctx.autocast():
            s_out: Refinement = self.student(synth, x_all)
            s_l1 = F.l1_loss(s_out.image.float(), y_all)
            if t_out is not None:
                kd_out = F.l1_loss(s_out.image.float(), t_out.image.detach().float())
                kd_flow = F.l1_loss(s_out.flow.float(), t_out.flow.detach().float())
                t_feat = t_out.features.detach().float()
                kd_feat = F.mse_loss(s_out.features.float(), t_feat) / (t_feat.pow(2).mean() + 1e-8)
                kd = w["kd_output"] * kd_out + w["kd_flow"] * kd_flow + w["kd_feature"] * kd_feat
                loss_s = kd + w["student_l1"] * s_l1 + w["smooth"] * smoothness_loss(s_out.flow)
            else:  # g_refine, g_attack_refine: the same student, from the target alone
                loss_s = w["student_l1"] * s_l1 + w["smooth"] * smoothness_loss(s_out.flow)
        ctx.optimize("S", loss_s)
        if t_out is not None:
            logs.update({"S/kd": kd.detach(), "S/kd_output": kd_out.detach()})
        logs.update({"S/l1": s_l1.detach(), "S/loss": loss_s.detach()})
        return logs


def build(
    size: str = "tiny",
    in_channels: int = 1,
    image_size: int = 64,
    generator: str = "pix2pix",
    variant: str = "full",
    generator_options: dict[str, Any] | None = None,
    module_size: str | None = None,
    **options: Any,
) -> KDAttack:
    """Registry builder: KD+attack around the registered ``generator`` at the ``size`` preset.
    ``module_size`` (default: ``size``) sizes KD+attack's own networks (attacker, teacher, student)
    apart from the generator's: a ``small`` generator with ``tiny`` modules trains at about 2.9x
    the generator's cost per step instead of 6x (128^2, 2 CPU cores; docs/kd_attack.md)."""
    if generator == "kd_attack":
        raise ConfigError("kd_attack cannot wrap itself: choose a generator such as pix2pix")
    g = build_model(generator, size=size, in_channels=in_channels, image_size=image_size, **(generator_options or {}))
    return KDAttack(g, variant=variant, size=size if module_size is None else str(module_size), **options)


# Versions of KD+attack's defaults (robustmri.models.registry.model_version; a run trained under
# another version is another training): 1 until 2026-12; 2: the attacker learns from G's outputs
# (spsa_estimate="local", 3 samples, sigma 1 px), G trains on A's output refined by one ascent
# step of eps, and A regresses onto it at lr 1e-3 ("step" update), instead of loss-only SPSA
# (2 samples), A's output as the example, and the linear surrogate at lr 1e-4.
# 3: the attack budgets tune-paper-mini chose (DEFAULT_EPS): 0.015 for the learned attacker,
# 0.06 for noise augmentation and PGD training, instead of 0.03 for all; and the attacker's gradient
# estimate smoothed by the corruption library's Gaussian blur (scipy's, reflected edges, 4 sigma)
# instead of a copy of it with replicated edges, truncated at 3 sigma.
build.version = 3  # type: ignore[attr-defined]
