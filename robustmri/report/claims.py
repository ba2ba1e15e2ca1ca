"""The tables behind the KD+attack paper's claims: paired differences with intervals, and the
registration teacher's warp share.

- :func:`claim_pairs` finds, in a results folder, the comparisons that test a claim:
  every generator X against "X + KD+attack" (``kd_attack`` with ``generator=X``, variant ``full``),
  and within the ablation the module each claim is about (the teacher: ``full`` vs
  ``g_attack_refine``; the learned attacker: ``g_attack`` vs ``g_only`` or the reference, vs the
  noise-augmentation control ``g_noise`` and vs the PGD-training control ``g_pgd``).
- :func:`claims_table`: for each pair, the paired difference (second minus first, PSNR in dB) on
  clean inputs, averaged over the corruption cells, averaged over the attack cells (the random
  control excluded), and of the PSNR *lost* to corruptions and to attacks (clean minus perturbed:
  negative = the second model loses less, i.e. robustness beyond clean quality). Each difference is
  the mean over test subjects with a 95 % interval: the paired t interval over subjects, widened by
  each model's seed-to-seed variance (:func:`robustmri.analysis.stats.paired_difference_ci`).
- :func:`teacher_table`: from the training logs (``runs/*/log.jsonl``), L1 of G(x), of the teacher's
  warp of G(x) and of the teacher's output to the target, and the warp's share of the teacher's
  gain ``(L1_G - L1_warp) / (L1_G - L1_T)`` (100 % for a teacher that only registers), averaged over
  the last quarter of the logged steps, mean ± std over seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmri.analysis.robustness import CLEAN
from robustmri.analysis.sanity import CONTROL
from robustmri.analysis.stats import paired_difference_ci, seed_subject_means
from robustmri.report.table import Cell, Column, Table

__all__ = ["claim_pairs", "claims_table", "teacher_table"]

ABLATION_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("kd_attack:g_attack_refine", "kd_attack:full", "teacher: distilled vs undistilled student"),
    ("kd_attack:g_only", "kd_attack:g_attack", "learned attacker vs none"),
    ("kd_attack:g_noise", "kd_attack:g_attack", "learned attacker vs noise augmentation"),
    ("kd_attack:g_pgd", "kd_attack:g_attack", "learned attacker vs PGD training"),
)
"""(first, second, what the comparison tests) within the ablation variants."""

SUMMARIES: tuple[tuple[str, str], ...] = (
    ("clean", "clean"),
    ("corrupted", "corruptions"),
    ("attacked", "attacks"),
    ("drop_corrupted", "lost to corruptions"),
    ("drop_attacked", "lost to attacks"),
)


def claim_pairs(models: list[str], info: dict[str, dict[str, Any]], reference: str | None) -> list[tuple[str, str, str]]:
    """The (first, second, what) comparisons present among ``models``; ``info``: label -> model.json."""
    present = set(models)

    def spec(label: str) -> dict[str, Any]:
        return (info.get(label) or {}).get("model") or {}

    pairs: list[tuple[str, str, str]] = []
    for label in models:
        wrapped = spec(label)
        opts = wrapped.get("options") or {}
        if wrapped.get("name") != "kd_attack" or opts.get("variant", "full") != "full" or opts.get("generator_options"):
            continue
        generator = opts.get("generator", "pix2pix")
        bases = [m for m in models
                 if spec(m).get("name") == generator and not spec(m).get("options") and spec(m).get("size") == wrapped.get("size")]
        if bases:
            pairs.append((bases[0], label, f"any generator: {generator} + KD+attack vs {generator}"))
    for first, second, what in ABLATION_PAIRS:
        if first == "kd_attack:g_only" and first not in present and reference in present and reference != second:
            first = reference  # the reference (e.g. pix2pix) plays g_only when the variant is not run
            what = f"learned attacker vs none ({reference})"
        if first in present and second in present:
            pairs.append((first, second, what))
    return pairs


def _summaries(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per (model, direction, seed, subject): clean PSNR, PSNR averaged over the corruption cells and
    over the attack cells (random control excluded), and the PSNR lost to each (clean minus it)."""
    keys = ["model", "direction", "seed", "subject"]
    clean = seeds[seeds["perturbation"] == CLEAN]
    pert = seeds[(seeds["perturbation"] != CLEAN) & (seeds["severity"] > 0)]
    corr = pert[pert["family"] != "adversarial"]
    att = pert[(pert["family"] == "adversarial") & (pert["perturbation"] != CONTROL)]
    out = clean.groupby(keys)["psnr"].mean().rename("clean").to_frame()
    out = out.join(corr.groupby(keys)["psnr"].mean().rename("corrupted"), how="left")
    out = out.join(att.groupby(keys)["psnr"].mean().rename("attacked"), how="left")
    out["drop_corrupted"] = out["clean"] - out["corrupted"]
    out["drop_attacked"] = out["clean"] - out["attacked"]
    long = out.reset_index().melt(id_vars=keys, var_name="summary", value_name="psnr")
    return long.dropna(subset=["psnr"])


def claims_table(frame: pd.DataFrame, pairs: list[tuple[str, str, str]]) -> Table | None:
    """Paired differences (second minus first) behind each claim; None without pairs. ``frame``: the
    slice-level results table (seeds kept apart here)."""
    if not pairs:
        return None
    long = _summaries(seed_subject_means(frame, ["psnr"]))
    present = set(long["summary"])
    keys = [k for k, _ in SUMMARIES if k in present]
    columns = [Column("first_clean", "first", group="clean PSNR (dB)", decimals=2),
               Column("second_clean", "second", group="clean PSNR (dB)", decimals=2)]
    columns += [Column(k, label, group="second − first, dB [95% CI]", decimals=2, show_ci=True) for k, label in SUMMARIES if k in keys]
    rows: list[tuple[str, str]] = []
    cells: dict[tuple[str, str, str], Cell] = {}
    for first, second, what in pairs:
        block = long[long["model"].isin([first, second])]
        if block.empty:
            continue
        diffs = paired_difference_ci(block, first, ["direction", "summary"], "psnr")
        clean = block[block["summary"] == "clean"]
        for direction in sorted(set(block["direction"])):
            row = f"{second} vs {first}"
            if (direction, row) in rows:
                continue
            rows.append((direction, row))
            for model, key in ((first, "first_clean"), (second, "second_clean")):
                vals = clean[(clean["direction"] == direction) & (clean["model"] == model)].groupby("subject")["psnr"].mean()
                if len(vals):
                    cells[(direction, row, key)] = Cell(float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else math.nan, n=len(vals))
            for rec in diffs[(diffs["direction"] == direction) & (diffs["model"] == second)].itertuples():
                cells[(direction, row, str(rec.summary))] = Cell(float(rec.mean_diff), n=int(rec.n_subjects),
                                                                  low=float(rec.ci_low), high=float(rec.ci_high))
    if not rows:
        return None
    whats = "; ".join(f"{s} vs {f}: {w}" for f, s, w in pairs)
    note = ("Paired differences, second minus first (the row names them: 'second vs first'), PSNR in dB: mean over "
            "test subjects of seed-averaged subject means, with a 95% interval (paired t over subjects, "
            "widened by each model's seed-to-seed variance, Welch-Satterthwaite df); per comparison, not simultaneous. corruptions / attacks: "
            "PSNR averaged over every corruption cell / every attack cell but the random control; lost to ...: "
            "clean PSNR minus that average, so a negative difference means the second model loses less (robustness "
            f"beyond clean quality). Comparisons: {whats}.")
    return Table("claims", "Paired differences behind the paper's claims", columns, rows, cells, None, note,
                 row_label="Comparison")


def teacher_table(root: str | Path) -> Table | None:
    """The registration teacher's gain and the warp's share of it, from ``runs/*/log.jsonl`` (see the
    module docstring); None when no run logged a teacher."""
    from robustmri.results import label_tag, read_model_records

    root = Path(root)
    tags = {label_tag(label): label for label in read_model_records(root)}
    records: list[dict[str, Any]] = []
    for log in sorted((root / "runs").glob("*__*__s*/log.jsonl")):
        tag, direction, seed = log.parent.name.split("__")
        entries = []
        try:
            for line in log.read_text(encoding="utf-8").splitlines():
                d = json.loads(line)
                if isinstance(d, dict) and all(k in d for k in ("T/l1_synth", "T/l1_warp", "T/l1")):
                    entries.append(d)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not entries:
            continue
        last = entries[-max(1, len(entries) // 4):]
        synth, warp, teach = (float(np.mean([e[k] for e in last])) for k in ("T/l1_synth", "T/l1_warp", "T/l1"))
        gain = synth - teach
        records.append({"model": tags.get(tag, tag), "direction": direction.replace("_to_", "->"), "seed": seed,
                        "l1_g": synth, "l1_warp": warp, "l1_teacher": teach,
                        "warp_share": 100.0 * (synth - warp) / gain if gain > 1e-6 else math.nan})
    if not records:
        return None
    data = pd.DataFrame(records)
    columns = [Column("l1_g", "L1(G(x), y)", decimals=4, show_std=True),
               Column("l1_warp", "L1(warp(G(x)), y)", decimals=4, show_std=True),
               Column("l1_teacher", "L1(teacher, y)", decimals=4, show_std=True),
               Column("warp_share", "warp share (%)", decimals=1, show_std=True)]
    rows, cells = [], {}
    for (direction, model), block in data.groupby(["direction", "model"], sort=True):
        rows.append((direction, model))
        for col in columns:
            vals = block[col.key].dropna()
            if len(vals):
                cells[(direction, model, col.key)] = Cell(float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
                                                          n=len(vals))
    note = ("Training batches (clean and attacked inputs), mean over the last quarter of the logged steps, ± std "
            "over seeds. warp share: (L1_G - L1_warp) / (L1_G - L1_teacher): the part of the teacher's gain over "
            "G(x) that its registration (the warp of G(x)) explains; 100% for the default teacher, which only "
            "registers; a correcting teacher (teacher='correct') that sees the target can gain by copying it instead.")
    return Table("teacher", "The registration teacher: its gain over G(x) and the warp's share", columns, rows, cells,
                 None, note, row_label="Model")
