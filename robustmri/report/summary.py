"""The one-screen summary a bench prints when it ends (``robustmri bench``, ``robustmri.benchmark``).

Per direction and model, from ``results.csv`` alone (means over test subjects, each subject's slices
and seeds averaged first, as in the report):

- clean PSNR (dB) and SSIM, and the clean PSNR over the ``lookup`` floor (dB) where one was run;
- PSNR lost (dB, clean minus perturbed) per corruption family, at each perturbation's highest
  severity, averaged over the family's perturbations;
- PSNR lost to the attacks (the report's adversarial score: every attack and severity but the
  ``random_linf`` control);
- mCE (percent of the reference model's corruption error, lower is better).

Floors and oracles are tagged; the report's first warning (a model not above the floor, a lone
model) follows the table, then the report's path.
"""

from __future__ import annotations

import math
import os

import pandas as pd

from robustmri.analysis.robustness import CLEAN

__all__ = ["bench_summary", "summary_rows"]

_FAMILY_ORDER = ("noise", "image", "kspace", "geometric")


def summary_rows(results_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, list[str]]:
    """(one row per direction x model with the summary's columns, the report's warnings).

    Columns: direction, model, tag ("floor", "oracle" or ""), clean_psnr, clean_ssim, over_lookup,
    ``lost_<family>`` per corruption family present, lost_attacks, mce, partial_attacks (True where
    the white-box attacks were skipped: no gradients). Units: dB, SSIM in [0, 1], mCE in percent.
    NaN where a value has no cells.
    """
    from robustmri.analysis.robustness import summary_scores
    from robustmri.report.build import floor_labels, load_results
    from robustmri.results import read_model_records, subject_means

    inputs = load_results(results_dir)
    subjects = subject_means(inputs.frame)
    info = read_model_records(results_dir)
    floor_names = floor_labels(info)
    floors = set(floor_names)
    lookups = {label for label, n in floor_names.items() if n == "lookup"}
    scores = None
    perturbed = subjects[subjects["perturbation"] != CLEAN]
    if not perturbed.empty:
        scores = summary_scores(subjects, inputs.reference).set_index(["direction", "model", "score"])["value"]
    families = [f for f in _FAMILY_ORDER if f in set(perturbed["family"])]
    families += sorted(set(perturbed["family"]) - set(families) - {"adversarial"})
    rows = []
    for direction in dict.fromkeys(subjects["direction"]):
        block = subjects[subjects["direction"] == direction]
        clean = block[block["perturbation"] == CLEAN].groupby("model")[["psnr", "ssim"]].mean()
        lookup = next((float(clean.loc[m, "psnr"]) for m in lookups if m in clean.index), math.nan)
        for model in inputs.models:
            if model not in clean.index:
                continue
            row: dict[str, object] = {
                "direction": direction, "model": model,
                "tag": "oracle" if model in inputs.oracles else "floor" if model in floors else "",
                "clean_psnr": float(clean.loc[model, "psnr"]), "clean_ssim": float(clean.loc[model, "ssim"]),
                "over_lookup": float(clean.loc[model, "psnr"]) - lookup if model not in lookups else math.nan,
            }
            mine = block[block["model"] == model]
            for family in families:
                cells = mine[(mine["family"] == family) & (mine["severity"] >= 1)]
                losses = []
                for _, pert in cells.groupby("perturbation"):
                    top = pert[pert["severity"] == pert["severity"].max()]
                    losses.append(row["clean_psnr"] - float(top["psnr"].mean()))  # type: ignore[operator]
                row[f"lost_{family}"] = sum(losses) / len(losses) if losses else math.nan
            for name, score in (("lost_attacks", "adversarial"), ("mce", "mce")):
                key = (direction, model, score)
                row[name] = float(scores[key]) if scores is not None and key in scores.index else math.nan
            row["partial_attacks"] = bool((info.get(model) or {}).get("skipped_attacks"))
            if model in inputs.oracles:
                row["mce"] = math.nan  # never ranked
            rows.append(row)
    return pd.DataFrame(rows), list(inputs.warnings)


def _cell(value: object, spec: str) -> str:
    return "-" if not isinstance(value, (int, float)) or math.isnan(float(value)) else format(float(value), spec)


def bench_summary(results_dir: str | os.PathLike[str], *, report: str | os.PathLike[str] | None = None) -> str:
    """The summary table of a results folder as plain text (one line per model, fixed-width
    columns), followed by the report's first warning and ``report``'s path when given."""
    rows, warnings = summary_rows(results_dir)
    if rows.empty:
        return f"no clean results in {results_dir}"
    lost = [c for c in rows.columns if c.startswith("lost_") and c != "lost_attacks"]
    columns: list[tuple[str, str, str]] = [("clean_psnr", "PSNR", ".2f"), ("clean_ssim", "SSIM", ".3f")]
    if rows["over_lookup"].notna().any():
        columns.append(("over_lookup", "vs lookup", "+.2f"))
    columns += [(c, c.removeprefix("lost_"), ".2f") for c in lost]
    if rows["lost_attacks"].notna().any():
        columns.append(("lost_attacks", "attacks", ".2f"))
    if rows["mce"].notna().any():
        columns.append(("mce", "mCE", ".1f"))
    names = [f"{m} ({t})" if t else str(m) for m, t in zip(rows["model"], rows["tag"])]
    width = max(len("model"), *map(len, names))
    head = f"{'model':<{width}}" + "".join(f"  {title:>9}" for _, title, _ in columns)
    lines = []
    marked = False
    for direction in dict.fromkeys(rows["direction"]):
        block = rows[rows["direction"] == direction]
        n_lost = len(lost) + int(any(c == "lost_attacks" for c, _, _ in columns))
        lines.append(f"{direction}: clean, then PSNR lost (dB) at the top severity per family"
                     + (" and to the attacks" if n_lost > len(lost) else "") + ", mCE (%)" * any(c == "mce" for c, _, _ in columns))
        lines.append(head)
        for i in block.index:
            cells = []
            for c, _, spec in columns:
                text = _cell(rows.loc[i, c], spec)
                if c == "lost_attacks" and rows.loc[i, "partial_attacks"] and text != "-":
                    text += "†"
                    marked = True
                cells.append(f"  {text:>9}")
            lines.append(f"{names[i]:<{width}}" + "".join(cells))
    if marked:
        lines.append("† black-box attacks only: the model has no gradients, so the white-box attacks were not run on it")
    first = next((w for w in warnings if w.startswith(("Below the no-learning floor", "Only one model"))), None)
    if first:
        lines.append(first)
    if report is not None:
        lines.append(f"report: {report}")
    return "\n".join(lines)
