"""The results table: its columns, reading and validating it, and per-subject aggregation.

``results.csv`` (and every cell CSV of a bench folder) holds one row per (model, direction, seed,
perturbation, severity, subject, slice) with the columns of :data:`RESULT_COLUMNS`: metrics in
their natural units (PSNR in dB; SSIM, MAE as a fraction of the data range, NMSE dimensionless)
and the scoring protocol's id. This module is the one place that knows that layout; the bench,
the drift check, the analysis and the report read tables through it.

Unit of analysis: the subject. :func:`subject_means` averages slices within a subject, then over
seeds; :func:`cell_means` averages those over subjects (the value the drift check compares);
:func:`aggregate` summarises a per-slice table at a protocol's level (subject or slice).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from robustmri.errors import ConfigError, DataError
from robustmri.metrics import METRICS, list_metrics
from robustmri.protocol import Protocol, check_same_protocol

CLEAN = "clean"
"""Perturbation name of the unperturbed cell (severity 0)."""

CELL_KEY: tuple[str, ...] = ("model", "direction", "perturbation", "severity", "metric")
"""Columns identifying one aggregated cell of :func:`cell_means`."""

STABILITY_METRICS: tuple[str, ...] = ("stability_psnr", "stability_ssim")
"""Output stability: the protocol's PSNR (dB) and SSIM of the perturbed output against the same
model's clean output (how far a perturbation moves what the model says, whatever the target);
NaN in the clean cell."""

REPORTED: tuple[str, ...] = (*METRICS, *STABILITY_METRICS)
"""Every per-slice value column of the results table: the metrics against the target, then stability."""

RESULT_COLUMNS: tuple[str, ...] = (
    "model", "direction", "seed", "perturbation", "family", "severity", "subject", "slice", *REPORTED, "protocol",
)
"""Columns a ``results.csv`` must have (one row per model, direction, seed, perturbation, severity,
subject and slice)."""


def registered_metrics(columns: Iterable[str]) -> list[str]:
    """The registered metrics (:func:`robustmri.metrics.register_metric`, not the built-ins) among
    ``columns``, in the registry's order. A column the registry does not know makes the plugins
    load first (a plugin registers its metric when imported)."""
    columns = [str(c) for c in columns]
    if any(c not in RESULT_COLUMNS and c not in list_metrics() for c in columns):
        from robustmri.plugins import load_plugins

        load_plugins()
    return [m for m in list_metrics() if m not in METRICS and m in columns]


def result_columns(extra_metrics: Sequence[str] = ()) -> tuple[str, ...]:
    """The columns of a results table whose protocol also scores ``extra_metrics`` (registered
    metrics): :data:`RESULT_COLUMNS` with them after the built-in metrics."""
    n = RESULT_COLUMNS.index(METRICS[-1]) + 1
    return (*RESULT_COLUMNS[:n], *extra_metrics, *RESULT_COLUMNS[n:])


def value_columns(frame: pd.DataFrame) -> list[str]:
    """The per-slice value columns ``frame`` has: built-in metrics, registered metrics, stability."""
    extra = registered_metrics(frame.columns)
    return [m for m in (*METRICS, *extra, *STABILITY_METRICS) if m in frame.columns]


KEYS: tuple[str, ...] = ("model", "direction", "perturbation", "family", "severity", "subject")
"""Columns identifying one row of a subject frame (see :func:`subject_means`)."""


def subject_means(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Average slices within subjects, then the per-subject values over seeds.

    Args:
        frame: a results table, one row per slice, with the columns of :data:`RESULT_COLUMNS`
            (``protocol`` and unused metrics may be absent).
        metrics: metric columns to keep; default: every value column present (:func:`value_columns`).

    Returns:
        The *subject frame*: one row per :data:`KEYS` combination with the metric columns (same
        units as the input: PSNR in dB, SSIM/MAE/NMSE dimensionless), ``n_seeds`` (seeds averaged)
        and ``n_slices`` (slices per subject, summed over seeds). Sorted by :data:`KEYS`.
    """
    if metrics is None:
        metrics = value_columns(frame)
    metrics = list(metrics)
    needed = [*KEYS, "seed", "slice", *metrics]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"results table lacks column(s) {missing}; it has {list(frame.columns)}")
    if not metrics:
        raise DataError(f"results table has none of the metric columns {list(METRICS)}")
    keys = list(KEYS)
    values = frame[[*keys, "seed", *metrics]].copy()
    values[metrics] = values[metrics].astype(float)
    per_seed = values.groupby([*keys, "seed"], sort=True, dropna=False)
    seed_means = per_seed[metrics].mean()
    seed_means["n_slices"] = per_seed.size()
    seed_means = seed_means.reset_index()
    per_subject = seed_means.groupby(keys, sort=True, dropna=False)
    out = per_subject[metrics].mean()
    out["n_seeds"] = per_subject["seed"].nunique()
    out["n_slices"] = per_subject["n_slices"].sum()
    return out.reset_index()


def cell_means(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean over subjects of :func:`subject_means`, one row per cell and metric: columns
    :data:`CELL_KEY` + ``value``, sorted by them. By default the columns of :data:`REPORTED` (the
    drift check's: a registered metric has no committed tolerance)."""
    subjects = subject_means(frame, metrics)
    names = [m for m in REPORTED if m in subjects.columns] if metrics is None else list(metrics)
    cell = subjects.groupby(["model", "direction", "perturbation", "severity"], sort=True)[names].mean()
    long = cell.reset_index().melt(id_vars=["model", "direction", "perturbation", "severity"], var_name="metric", value_name="value")
    return long.sort_values(list(CELL_KEY), kind="stable").reset_index(drop=True)


def aggregate_protocol(frame: pd.DataFrame, protocol: Protocol, by: Sequence[str] = (), ddof: int = 0) -> pd.DataFrame:
    """:func:`aggregate` at ``protocol``'s aggregation level, over its metrics present in ``frame``.
    A frame tagged with another protocol's id is a ConfigError naming the one to use."""
    if "protocol" in frame.columns:
        found = check_same_protocol(frame)
        if found != protocol.id:
            raise ConfigError(f"results were scored with protocol {found!r}, not {protocol.id!r}; aggregate them with {found!r}")
    names = [n for n in protocol.metrics if n in frame.columns]
    return aggregate(frame, names, level=protocol.aggregation, by=by, ddof=ddof)


FLOOR_MODELS = ("lookup", "lookup_oracle")
"""Registry names of the no-learning floors (:mod:`robustmri.models.floors`)."""


def label_tag(label: str) -> str:
    """Path-safe form of a model label, the folder name under ``runs/`` and ``cells/``
    (``kd_attack:full`` -> ``kd_attack-full``)."""
    return label.replace(":", "-")


def read_model_records(results_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """label -> the ``cells/<label>/**/model.json`` of its first job in a results folder: what the
    bench recorded about each model (architecture, parameters, oracle, gradients, skipped attacks,
    the external model's details). Unreadable files are skipped."""
    out: dict[str, dict[str, Any]] = {}
    for f in sorted((Path(results_dir) / "cells").rglob("model.json")):
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(d, dict) and isinstance(d.get("label"), str):
            out.setdefault(d["label"], d)
    return out


@dataclass(frozen=True)
class SampleKey:
    """Key of one array in ``samples/<direction>.npz``: ``kind`` is ``input`` or ``output``;
    ``model`` is None for an input shared by every model (a corruption), set for an output and for
    an input crafted against one model (an attack)."""

    kind: str
    model: str | None
    perturbation: str
    severity: int

    def encode(self) -> str:
        parts = [self.kind] + ([self.model] if self.model is not None else []) + [self.perturbation, str(self.severity)]
        return "|".join(parts)

    @classmethod
    def parse(cls, text: str) -> SampleKey | None:
        """The key encoded in ``text``, or None for another array (``source``, ``target``, ``mask``)."""
        parts = text.split("|")
        try:
            if parts[0] == "output" and len(parts) == 4:
                return cls("output", parts[1], parts[2], int(parts[3]))
            if parts[0] == "input" and len(parts) in (3, 4):
                model = parts[1] if len(parts) == 4 else None
                return cls("input", model, parts[-2], int(parts[-1]))
        except ValueError:
            return None
        return None


def read_table(path: str | os.PathLike[str], require_clean: bool = False) -> pd.DataFrame:
    """A results CSV (``results.csv`` or one cell CSV), validated: every column of
    :data:`RESULT_COLUMNS`, numeric seed/severity/slice/metrics, no empty ids, one protocol; subject
    ids stay text. ``require_clean``: the table must hold clean rows (severity 0). Each problem is a
    one-line :class:`DataError` naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; run `robustmri bench` first or pass the folder that holds results.csv")
    try:
        frame = pd.read_csv(path, dtype={"model": str, "direction": str, "perturbation": str, "family": str,
                                         "subject": str, "protocol": str})
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; re-run `robustmri bench` to write it") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"cannot read {path} as CSV ({exc}); re-run `robustmri bench` to rewrite it") from None
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns and c not in STABILITY_METRICS]
    for c in STABILITY_METRICS:  # tables written before output stability was scored stay readable
        if c not in frame.columns:
            frame[c] = float("nan")
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; it must have {list(RESULT_COLUMNS)} as `robustmri bench` writes them")
    if frame.empty:
        raise DataError(f"{path} has a header but no rows; re-run `robustmri bench` to fill it")
    try:
        for col in ("seed", "severity", "slice"):
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype(int)
        for m in (*REPORTED, *registered_metrics(frame.columns)):
            frame[m] = pd.to_numeric(frame[m], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path} has a non-numeric value in a seed/severity/slice/metric column ({exc}); "
                        "fix or regenerate the file") from None
    if frame[["model", "direction", "perturbation", "subject"]].isna().any().any():
        raise DataError(f"{path} has empty model/direction/perturbation/subject cells; regenerate the file")
    frame["family"] = frame["family"].fillna("")
    try:
        check_same_protocol(frame)
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}") from None
    if require_clean:
        if not (frame["perturbation"] == CLEAN).any():
            raise DataError(f"{path} has no clean rows (perturbation 'clean', severity 0); re-run `robustmri bench`")
        bad = frame[(frame["perturbation"] == CLEAN) & (frame["severity"] != 0)]
        if not bad.empty:
            raise DataError(f"{path} has clean rows with severity {int(bad['severity'].iloc[0])}; clean rows must have severity 0")
    return frame


CLINICAL_KEYS: tuple[str, ...] = ("model", "direction", "seed", "perturbation", "family", "severity", "subject")
"""The key columns of ``clinical.csv`` (one row per test subject and cell), before the scores of
:data:`robustmri.clinical.CLINICAL_SCORES`."""


def read_clinical(results_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """``clinical.csv`` of a results folder (written when the suite asks ``eval.clinical``), or None
    when there is none; validated like :func:`read_table` (one-line errors naming the file)."""
    from robustmri.clinical import CLINICAL_SCORES

    path = Path(results_dir) / "clinical.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype={"model": str, "direction": str, "perturbation": str, "family": str, "subject": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"cannot read {path} as CSV ({exc}); re-run `robustmri bench` to rewrite it") from None
    missing = [c for c in (*CLINICAL_KEYS, *CLINICAL_SCORES) if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; re-run `robustmri bench` to rewrite it")
    try:
        for col in ("seed", "severity"):
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype(int)
        for col in CLINICAL_SCORES:
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path} has a non-numeric key or score ({exc}); re-run `robustmri bench` to rewrite it") from None
    frame["family"] = frame["family"].fillna("")
    return frame


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A bench folder's ``manifest.json`` (``{}`` when absent); unreadable or not an object: one-line error."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path} ({exc}); fix or delete the manifest and re-run") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object, got {type(data).__name__}; re-run the benchmark")
    return data


def read_results(results_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``results.csv`` (validated, see :func:`read_table`) and ``manifest.json`` of a bench folder."""
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(f"results folder {root} does not exist; pass the folder written by `robustmri bench`")
    path = root / "results.csv"
    if not path.is_file():
        raise DataError(f"{path} not found: run `robustmri bench --out {root}` first")
    return read_table(path), read_manifest(root / "manifest.json")


def aggregate(
    frame: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    level: Literal["subject", "slice"] = "subject",
    by: Sequence[str] = (),
    ddof: int = 0,
) -> pd.DataFrame:
    """Summarise per-slice metric values: mean, std, median and count over subjects (or slices).

    Args:
        frame: one row per slice with columns ``subject``, ``slice`` and one column per metric;
            extra columns named in ``by`` (e.g. perturbation, severity) split the summary.
        metrics: metric columns to summarise; default: every value column present (:func:`value_columns`).
        level: ``"subject"``: average the slices of each subject first (NaN slices skipped), then
            summarise the per-subject means, so every subject weighs the same; ``"slice"``:
            summarise the slice values directly.
        by: grouping columns kept in the output.
        ddof: delta degrees of freedom of the std (0: population std as numpy and the peers' code).

    Returns:
        A long DataFrame with columns ``*by, metric, mean, std, median, n``; ``n`` counts the
        non-NaN subjects (or slices) summarised. NaN values are skipped everywhere (nanmean).
    """
    by = list(by)
    if metrics is None:
        metrics = value_columns(frame)
    metrics = list(metrics)
    needed = [*by, *metrics] + (["subject"] if level == "subject" else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"results table lacks column(s) {missing}; it has {list(frame.columns)}")
    if level not in ("subject", "slice"):
        raise ConfigError(f"unknown aggregation level {level!r}; use 'subject' or 'slice'")
    if not metrics:
        raise DataError(f"results table has none of the metric columns {list(METRICS)}; pass metrics=[...]")

    values = frame[[*by, *metrics] + (["subject"] if level == "subject" else [])]
    if level == "subject":
        # Mean over the slices of each subject (pandas' mean skips NaN).
        values = values.groupby([*by, "subject"], dropna=False, sort=True)[metrics].mean().reset_index()
    long = values.melt(id_vars=[c for c in values.columns if c not in metrics], value_vars=metrics,
                       var_name="metric", value_name="value")
    groups = long.groupby([*by, "metric"], dropna=False, sort=False)["value"]
    out = pd.DataFrame(
        {
            "mean": groups.mean(),
            "std": groups.std(ddof=ddof),
            "median": groups.median(),
            "n": groups.count(),
        }
    ).reset_index()
    # Keep the metrics in the order asked for.
    order = {m: i for i, m in enumerate(metrics)}
    out = out.sort_values([*by, "metric"], key=lambda s: s.map(order) if s.name == "metric" else s,
                          kind="stable").reset_index(drop=True)
    return out
