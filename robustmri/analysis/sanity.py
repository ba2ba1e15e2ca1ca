"""Threat-model sanity checks: is each attack as strong as it must be, for every model?

Gradient masking, a broken attack or too small a budget all look like robustness. The checks
below compare the *damage* of the attack cells of one model (PSNR lost against the same model's
clean score, dB, mean over test subjects) and flag every violation:

- ``control``: every attack costs more than ``random_linf``, random +-eps signs of the same
  L-inf norm (an attack that does not beat noise is not searching);
- ``fgsm <= pgd``: PGD, which starts where FGSM starts and iterates, costs at least what FGSM costs;
- ``black-box <= white-box``: Square (queries only) costs no more than PGD (gradients) at the same
  eps, unless the gradients are masked;
- ``monotone``: an attack's damage does not fall as eps grows (the control is exempt: its damage
  is noise around zero).

``tolerance_db`` absorbs what is noise at the subject level (default 0.01 dB). Violations are
reported, never hidden: :func:`robustmri.report.build.build_report` lists them on the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from robustmri.analysis.robustness import CLEAN

CONTROL = "random_linf"
WHITE_BOX = ("pgd_linf",)
ONE_STEP = "fgsm_linf"
BLACK_BOX = "square_linf"
LINF_ATTACKS = ("fgsm_linf", "pgd_linf", "square_linf")


@dataclass(frozen=True)
class SanityFlag:
    """One violated check: ``check`` name, model, direction, severity and a sentence saying it."""

    check: str
    model: str
    direction: str
    severity: int
    message: str


def attack_damage(subjects: pd.DataFrame, metric: str = "psnr") -> pd.DataFrame:
    """Mean damage per (model, direction, perturbation, severity) of the adversarial family.

    ``subjects``: the subject frame of :func:`robustmri.results.subject_means`. Damage = clean
    ``metric`` minus perturbed ``metric`` of the same subject (dB for PSNR; positive = worse),
    averaged over subjects. Columns: model, direction, perturbation, severity, damage, n.
    """
    adv = subjects[(subjects["family"] == "adversarial") & (subjects["perturbation"] != CLEAN)]
    clean = subjects[subjects["perturbation"] == CLEAN][["model", "direction", "subject", metric]]
    if adv.empty or clean.empty:
        return pd.DataFrame(columns=["model", "direction", "perturbation", "severity", "damage", "n"])
    merged = adv.merge(clean, on=["model", "direction", "subject"], suffixes=("", "_clean"))
    merged["damage"] = merged[f"{metric}_clean"] - merged[metric]
    out = merged.groupby(["model", "direction", "perturbation", "severity"], sort=True).agg(
        damage=("damage", "mean"), n=("damage", "size"))
    return out.reset_index()


def sanity_checks(subjects: pd.DataFrame, metric: str = "psnr", tolerance_db: float = 0.01) -> list[SanityFlag]:
    """Every violated check of the module docstring, for every model and direction present."""
    damage = attack_damage(subjects, metric)
    flags: list[SanityFlag] = []
    for (model, direction), block in damage.groupby(["model", "direction"], sort=False):
        d = {(r.perturbation, int(r.severity)): float(r.damage) for r in block.itertuples(index=False)}

        def flag(check: str, sev: int, text: str) -> None:
            flags.append(SanityFlag(check, str(model), str(direction), sev, f"{model}, {direction}: {text}"))

        for (name, sev), value in sorted(d.items()):
            if name in LINF_ATTACKS and (CONTROL, sev) in d and value <= d[(CONTROL, sev)] + tolerance_db:
                flag("control", sev, f"{name} at severity {sev} costs {value:.3f} dB, no more than random signs of "
                     f"the same norm ({d[(CONTROL, sev)]:.3f} dB): the attack is not finding anything")
        for sev in sorted({s for _, s in d}):
            if (ONE_STEP, sev) in d and ("pgd_linf", sev) in d and d[("pgd_linf", sev)] < d[(ONE_STEP, sev)] - tolerance_db:
                flag("fgsm <= pgd", sev, f"pgd_linf at severity {sev} costs {d[('pgd_linf', sev)]:.3f} dB, less than "
                     f"fgsm_linf's {d[(ONE_STEP, sev)]:.3f} dB: PGD is too short or its step size wrong")
            if (BLACK_BOX, sev) in d and ("pgd_linf", sev) in d and d[(BLACK_BOX, sev)] > d[("pgd_linf", sev)] + tolerance_db:
                flag("black-box <= white-box", sev, f"square_linf at severity {sev} costs {d[(BLACK_BOX, sev)]:.3f} dB, "
                     f"more than pgd_linf's {d[('pgd_linf', sev)]:.3f} dB: gradients may be masked")
        for name in sorted({n for n, _ in d} - {CONTROL}):  # the control's damage is noise around 0
            sevs = sorted(s for n, s in d if n == name)
            for a, b in zip(sevs, sevs[1:]):
                if d[(name, b)] < d[(name, a)] - tolerance_db:
                    flag("monotone", b, f"{name} costs {d[(name, b)]:.3f} dB at severity {b} but {d[(name, a)]:.3f} dB "
                         f"at the smaller severity {a}")
    return flags
