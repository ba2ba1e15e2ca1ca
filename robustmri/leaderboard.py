"""Leaderboard entries (RobustBench style) and the board that ranks them.

``robustmri bench`` writes one JSON entry per model and direction into ``OUT/leaderboard/``
(:func:`write_entries`): the model (architecture or external entry, parameter count), the data,
the protocol, the suite and a *threat-model hash*, the clean and robust scores, versions and date.
``robustmri leaderboard DIR... --out board.md|board.html|board.csv`` (:func:`build_board`) ranks
the entries of several bench folders, but only entries that were scored alike: the same protocol,
threat model and test data (else a one-line error naming the difference).

Scores (PSNR in dB, SSIM unitless; slices averaged within subjects, then subjects, seeds pooled):

- ``clean_psnr``, ``clean_ssim``: the clean cell;
- ``corrupted_psnr``, ``corrupted_ssim``: mean over every corruption and severity of the suite
  (the ranking key: robustness to what scanners do);
- ``adversarial_psnr``: mean over every attack and severity except the ``random_linf`` control;
  None for a model some of whose attacks were not run (an external model without gradients);
- ``worst_psnr``: the lowest cell mean over corruptions and attacks;
- ``clinical`` (a suite with ``eval.clinical``, :mod:`robustmri.clinical`): over test subjects with
  a lesion, ``clean_contrast_kept``, ``clean_lesions_kept``, ``clean_lesions_invented`` and the
  same averaged over every perturbed cell but the ``random_linf`` control (``perturbed_*``); and over
  every test subject the whole-volume scores ``clean_volume_psnr``, ``clean_volume_ssim``, the
  segmenter's tissue Dice ``clean_dice_mean`` and their ``perturbed_*`` means
  (:mod:`robustmri.clinical.volume`, :mod:`robustmri.clinical.segmenter`).

Oracle models (which see the target at test time) are listed, never ranked. The no-learning floor
``lookup`` is ranked like any model, and listed once when several folders scored it alike.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from robustmri.errors import ConfigError, DataError
from robustmri.results import FLOOR_MODELS

__all__ = ["ENTRY_FORMAT", "threat_model_hash", "model_scores", "write_entries", "write_run_entries", "read_entries", "build_board"]

ENTRY_FORMAT = "robustmri-leaderboard-entry/1"
FOLDER = "leaderboard"
COMPARED = ("protocol", "threat_model", "data", "direction")
"""Entries share these fields to be ranked together (direction: one board section per direction)."""
CONTROL = "random_linf"
# The no-learning floors (robustmri.results.FLOOR_MODELS) are ranked like any model (a model below
# ``lookup`` should be seen below it), listed once when several folders scored the same floor alike.


def threat_model_hash(suite: Any) -> str:
    """sha256 (16 hex digits) of what defines a suite's perturbations: the threat-model version, the
    corruption and attack names with their severity tables, the severities scored, attack budgets,
    loss, objective, EOT samples and the evaluation seed (which fixes every random draw)."""
    from robustmri.bench.store import THREAT_MODEL_VERSION, perturbation_params

    names = set(suite.perturbations) | set(suite.attacks)
    spec = {
        "version": THREAT_MODEL_VERSION,
        "tables": perturbation_params(names),
        "perturbations": sorted(suite.perturbations), "severities": list(suite.severities),
        "attacks": sorted(suite.attacks), "attack_severities": list(suite.attack_severities),
        "budget": suite.attack_budget, "loss": suite.attack_loss, "objective": suite.attack_objective,
        "eot_samples": suite.eot_samples, "eval_seed": suite.eval_seed,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)


def model_scores(frame: pd.DataFrame, model: str, direction: str, expected_attacks: list[str]) -> dict[str, float | None]:
    """The board's scores of ``model`` in ``direction`` from a results table (see module docstring)."""
    from robustmri.results import subject_means

    rows = frame[(frame["model"] == model) & (frame["direction"] == direction)]
    if rows.empty:
        raise DataError(f"results hold no rows of model {model!r} in {direction}")
    subjects = subject_means(rows, [m for m in ("psnr", "ssim") if m in rows.columns])
    cells = subjects.groupby(["perturbation", "family", "severity"])[["psnr", "ssim"]].mean().reset_index()
    clean = cells[cells["severity"] == 0]
    corr = cells[(cells["family"] != "adversarial") & (cells["severity"] > 0)]
    adv = cells[(cells["family"] == "adversarial") & (cells["perturbation"] != CONTROL) & (cells["severity"] > 0)]
    ran = set(adv["perturbation"])
    complete = all(a in ran for a in expected_attacks if a != CONTROL)
    hard = pd.concat([corr, adv])
    return {
        "clean_psnr": _num(clean["psnr"].mean()) if not clean.empty else None,
        "clean_ssim": _num(clean["ssim"].mean()) if not clean.empty else None,
        "corrupted_psnr": _num(corr["psnr"].mean()) if not corr.empty else None,
        "corrupted_ssim": _num(corr["ssim"].mean()) if not corr.empty else None,
        "adversarial_psnr": _num(adv["psnr"].mean()) if (not adv.empty and complete) else None,
        "worst_psnr": _num(hard["psnr"].min()) if not hard.empty else None,
    }


CLINICAL_ENTRY = ("contrast_kept", "lesions_kept", "lesions_invented")
SUBJECT_ENTRY = ("volume_psnr", "volume_ssim", "dice_mean")


def clinical_scores(clinical: pd.DataFrame, model: str, direction: str) -> dict[str, float | None] | None:
    """The entry's clinical scores of ``model`` in ``direction`` from ``clinical.csv``'s rows (see
    the module docstring), or None when it has no row there."""
    rows = clinical[(clinical["model"] == model) & (clinical["direction"] == direction)]
    if rows.empty:
        return None
    out: dict[str, float | None] = {}
    for scores, part in ((CLINICAL_ENTRY, rows[rows["lesions"] > 0]), (SUBJECT_ENTRY, rows)):
        subjects = part.groupby(["perturbation", "severity", "subject"])[list(scores)].mean().reset_index()
        clean = subjects[subjects["severity"] == 0]
        perturbed = subjects[(subjects["severity"] > 0) & (subjects["perturbation"] != CONTROL)]
        for name, block in (("clean", clean), ("perturbed", perturbed)):
            for score in scores:
                out[f"{name}_{score}"] = _num(block[score].mean()) if not block.empty else None
    return out


def write_run_entries(out: str | os.PathLike[str]) -> list[Path]:
    """The leaderboard entries of a finished results folder (``results.csv`` and ``manifest.json``
    with its suite definition): :func:`write_entries` with the models' ``model.json`` records.
    Returns the paths written; none for a folder whose manifest holds no suite definition."""
    from robustmri.bench.store import ResultsStore
    from robustmri.bench.suite import suite_from_dict
    from robustmri.results import read_manifest

    root = Path(out)
    manifest = read_manifest(root / "manifest.json") if (root / "manifest.json").is_file() else {}
    if "suite_definition" not in manifest:
        return []
    suite = suite_from_dict(manifest["suite_definition"])
    return write_entries(root, suite, ResultsStore(root).model_info(), str(manifest.get("data", "")),
                         str(manifest.get("protocol", "")))


def write_entries(out: Path, suite: Any, models: dict[str, dict[str, Any]], data: str, protocol: str) -> list[Path]:
    """Write ``out/leaderboard/<label>__<direction>.json`` for every model label and direction of
    ``out/results.csv``. ``models``: label -> {"architecture": ..., "parameters": int, "oracle": bool,
    optional "gradients": bool}. Returns the paths written."""
    from robustmri._version import __version__
    from robustmri.atomic import write_json_atomic
    from robustmri.bench.plan import direction_tag
    from robustmri.results import read_table

    from robustmri.results import read_clinical

    frame = read_table(out / "results.csv")
    clinical = read_clinical(out)
    th = threat_model_hash(suite)
    versions = {"robustmri": __version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    written = []
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for (label, direction), _ in frame.groupby(["model", "direction"], sort=True):
        info = models.get(label, {})
        entry = {
            "format": ENTRY_FORMAT,
            "label": label,
            "direction": direction,
            "architecture": info.get("architecture", "unknown"),
            "parameters": info.get("parameters"),
            "oracle": bool(info.get("oracle", False)),
            "gradients": bool(info.get("gradients", True)),
            "floor": str((info.get("model") or {}).get("name", "")) in FLOOR_MODELS,
            "data": data,
            "protocol": protocol,
            "suite": suite.name,
            "suite_hash": suite.hash,
            "threat_model": th,
            "seeds": sorted(int(s) for s in frame[(frame["model"] == label)]["seed"].unique()),
            "scores": model_scores(frame, label, direction, list(suite.attacks)),
            **({"clinical": clinical_scores(clinical, label, direction)} if clinical is not None else {}),
            "versions": versions,
            "date": date,
        }
        s, t = direction.split("->")
        path = out / FOLDER / f"{label.replace(':', '-')}__{direction_tag(s, t)}.json"
        write_json_atomic(path, entry)
        written.append(path)
    return written


@dataclass(frozen=True)
class Entry:
    path: Path
    data: dict[str, Any]


def read_entries(folders: list[str | os.PathLike[str]]) -> list[Entry]:
    """Every entry under ``FOLDER/leaderboard/*.json`` of each bench folder (or a folder of entries)."""
    entries = []
    for f in folders:
        root = Path(f)
        if not root.is_dir():
            raise DataError(f"{root} is not a folder: pass bench result folders (each with leaderboard/*.json)")
        files = sorted((root / FOLDER).glob("*.json")) if (root / FOLDER).is_dir() else sorted(root.glob("*.json"))
        if not files:
            raise DataError(f"{root} holds no leaderboard entries ({FOLDER}/*.json): run `robustmri bench` into it first")
        for p in files:
            try:
                d = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise DataError(f"{p} is not a readable leaderboard entry: delete it or rerun the bench") from None
            if not isinstance(d, dict) or d.get("format") != ENTRY_FORMAT:
                raise DataError(f"{p} is not a robustmri leaderboard entry (format {ENTRY_FORMAT})")
            entries.append(Entry(p, d))
    return entries


def _check_comparable(entries: list[Entry]) -> None:
    for key in ("protocol", "threat_model", "data"):
        values = {e.data.get(key) for e in entries}
        if len(values) > 1:
            a = entries[0]
            b = next(e for e in entries if e.data.get(key) != a.data.get(key))
            raise ConfigError(
                f"cannot rank together: {a.path} has {key} {a.data.get(key)!r} but {b.path} has {b.data.get(key)!r}; "
                f"rank only entries scored with the same {key} (bench them with the same suite and data)"
            )


def board_frame(entries: list[Entry]) -> pd.DataFrame:
    """One row per entry: rank (by corrupted PSNR within a direction; oracles unranked), label,
    direction, scores, parameters, architecture, suite, date."""
    _check_comparable(entries)
    seen: set[str] = set()
    kept = []
    for e in entries:  # a no-learning floor scored alike in several folders is one entry, not one per folder
        if e.data.get("floor"):
            key = json.dumps([e.data.get(k) for k in ("label", "direction", "data", "threat_model", "scores")], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
        kept.append(e)
    entries = kept
    rows = []
    labels = [e.data["label"] for e in entries]
    for e in entries:
        d = e.data
        label = d["label"] if labels.count(d["label"]) == 1 else f"{d['label']} ({e.path.parent.parent.name})"
        rows.append({"direction": d["direction"], "model": label, **d["scores"], "parameters": d.get("parameters"),
                     "architecture": d.get("architecture"), "oracle": d.get("oracle", False), "suite": d.get("suite"),
                     "date": d.get("date")})
    frame = pd.DataFrame(rows)
    frame["rank"] = pd.NA
    for _, idx in frame.groupby("direction").groups.items():
        block = frame.loc[idx]
        ranked = block[~block["oracle"]].sort_values(["corrupted_psnr", "clean_psnr"], ascending=False, na_position="last")
        frame.loc[ranked.index, "rank"] = range(1, len(ranked) + 1)
    frame = frame.sort_values(["direction", "rank"], na_position="last", kind="stable")
    cols = ["direction", "rank", "model", "clean_psnr", "clean_ssim", "corrupted_psnr", "corrupted_ssim",
            "adversarial_psnr", "worst_psnr", "parameters", "architecture", "oracle", "suite", "date"]
    return frame[cols].reset_index(drop=True)


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def to_markdown(frame: pd.DataFrame, caption: str) -> str:
    out = ["# robustmri leaderboard", "", caption, ""]
    for direction, block in frame.groupby("direction", sort=True):
        out += [f"## {direction}", "",
                "| rank | model | clean PSNR | clean SSIM | corrupted PSNR | corrupted SSIM | adversarial PSNR | worst PSNR | parameters | architecture |",
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in block.itertuples():
            rank = "oracle" if r.oracle else _fmt(r.rank)
            out.append(f"| {rank} | {r.model} | {_fmt(r.clean_psnr)} | {_fmt(r.clean_ssim, 3)} | {_fmt(r.corrupted_psnr)} | "
                       f"{_fmt(r.corrupted_ssim, 3)} | {_fmt(r.adversarial_psnr)} | {_fmt(r.worst_psnr)} | "
                       f"{_fmt(r.parameters)} | {r.architecture} |")
        out.append("")
    return "\n".join(out)


def to_html(frame: pd.DataFrame, caption: str) -> str:
    import html

    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>robustmri leaderboard</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse;"
             "margin-bottom:2em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}td.l,th.l{text-align:left}"
             "th{background:#f3f3f3}tr.oracle td{color:#777;font-style:italic}caption{caption-side:top;text-align:left;"
             "padding-bottom:.5em}</style></head><body><h1>robustmri leaderboard</h1>",
             f"<p>{html.escape(caption)}</p>"]
    head = ["rank", "model", "clean PSNR (dB)", "clean SSIM", "corrupted PSNR (dB)", "corrupted SSIM",
            "adversarial PSNR (dB)", "worst PSNR (dB)", "parameters", "architecture"]
    for direction, block in frame.groupby("direction", sort=True):
        parts.append(f"<table><caption><b>{html.escape(str(direction))}</b></caption><tr>"
                     + "".join(f"<th class='{'l' if h in ('model', 'architecture') else ''}'>{h}</th>" for h in head) + "</tr>")
        for r in block.itertuples():
            rank = "oracle" if r.oracle else _fmt(r.rank)
            cells = [rank, r.model, _fmt(r.clean_psnr), _fmt(r.clean_ssim, 3), _fmt(r.corrupted_psnr),
                     _fmt(r.corrupted_ssim, 3), _fmt(r.adversarial_psnr), _fmt(r.worst_psnr), _fmt(r.parameters),
                     r.architecture]
            parts.append(f"<tr class='{'oracle' if r.oracle else ''}'>" + "".join(
                f"<td class='{'l' if i in (1, 9) else ''}'>{html.escape(str(c))}</td>" for i, c in enumerate(cells)) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_board(folders: list[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Rank the entries of ``folders`` into ``out`` (.md, .html or .csv, by suffix); returns it."""
    from robustmri.atomic import write_text_atomic

    target = Path(out)
    if target.suffix not in (".md", ".html", ".csv"):
        raise ConfigError(f"--out {target}: give a file name ending in .md, .html or .csv")
    entries = read_entries(list(folders))
    frame = board_frame(entries)
    first = entries[0].data
    caption = (f"Protocol {first['protocol']}, threat model {first['threat_model']}, data: {first['data']}. Ranked by mean "
               "PSNR over every corruption and severity (ties: clean PSNR); adversarial PSNR excludes the random-sign "
               "control and is n/a for models some of whose attacks were not run; oracle models see the target at test "
               "time and are not ranked. Slices averaged within subjects, then over subjects; seeds pooled.")
    text = {".md": lambda: to_markdown(frame, caption), ".html": lambda: to_html(frame, caption),
            ".csv": lambda: frame.to_csv(index=False)}[target.suffix]()
    write_text_atomic(target, text)
    return target
