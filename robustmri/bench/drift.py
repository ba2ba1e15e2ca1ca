"""Metric drift check: aggregated results against committed reference values.

The reference (e.g. ``reports/reference/smoke.json``) holds, per cell (model, direction,
perturbation, severity, metric), the mean over subjects of the per-subject means (seeds averaged),
plus the suite, its hash, the protocol id and the tolerances. :func:`check_drift` lists every cell
whose value moved by more than its metric's tolerance, every cell that disappeared and every new
one. Default tolerances absorb floating-point differences between machines for the tiny CPU models
of the smoke suite; a real change of a model, a perturbation or a metric moves numbers far more.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from robustmri.atomic import write_json_atomic
from robustmri.errors import DataError

DEFAULT_TOLERANCE: dict[str, float] = {"psnr": 0.25, "ssim": 0.005, "mae": 0.003, "nmse": 0.01}
"""Absolute tolerances: dB for PSNR, fractions for SSIM, MAE (of the data range) and NMSE."""

KEY = ("model", "direction", "perturbation", "severity", "metric")


def aggregate_cells(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over subjects of per-subject means (seeds averaged first), one row per cell and metric."""
    metrics = [m for m in ("psnr", "ssim", "mae", "nmse") if m in results.columns]
    per_subject = results.groupby(["model", "direction", "perturbation", "severity", "subject"], sort=True)[metrics].mean()
    cell = per_subject.groupby(level=["model", "direction", "perturbation", "severity"], sort=True).mean()
    long = cell.reset_index().melt(id_vars=["model", "direction", "perturbation", "severity"], var_name="metric", value_name="value")
    return long.sort_values(list(KEY), kind="stable").reset_index(drop=True)


def read_results(results_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = Path(results_dir) / "results.csv"
    if not path.is_file():
        raise DataError(f"{path} not found: run `robustmri bench --out {results_dir}` first")
    frame = pd.read_csv(path, dtype={"subject": str})
    manifest_path = Path(results_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return frame, manifest


def write_reference(results_dir: str | os.PathLike[str], reference: str | os.PathLike[str], tolerance: dict[str, float] | None = None) -> Path:
    """Write the aggregated cells of ``results_dir`` as the new reference (``--update``)."""
    frame, manifest = read_results(results_dir)
    cells = aggregate_cells(frame)
    payload = {
        "suite": manifest.get("suite"),
        "suite_hash": manifest.get("suite_hash"),
        "protocol": str(frame["protocol"].iloc[0]) if "protocol" in frame else None,
        "tolerance": {**DEFAULT_TOLERANCE, **(tolerance or {})},
        "cells": [
            {"model": r.model, "direction": r.direction, "perturbation": r.perturbation, "severity": int(r.severity),
             "metric": r.metric, "value": None if math.isnan(r.value) else round(float(r.value), 6)}
            for r in cells.itertuples()
        ],
    }
    write_json_atomic(reference, payload)
    return Path(reference)


@dataclass(frozen=True)
class Drift:
    model: str
    direction: str
    perturbation: str
    severity: int
    metric: str
    old: float | None
    new: float | None

    def describe(self) -> str:
        def fmt(v: float | None) -> str:
            return "missing" if v is None else f"{v:.4f}"

        return f"{self.model}, {self.direction}, {self.perturbation}, severity {self.severity}, {self.metric}: {fmt(self.old)} -> {fmt(self.new)}"


def check_drift(
    results_dir: str | os.PathLike[str], reference: str | os.PathLike[str], tolerance: dict[str, float] | None = None
) -> list[Drift]:
    """Every cell whose aggregated value differs from ``reference`` by more than its tolerance."""
    ref_path = Path(reference)
    if not ref_path.is_file():
        raise DataError(f"reference {ref_path} not found: create it with `robustmri check RESULTS --reference {ref_path} --update`")
    ref = json.loads(ref_path.read_text())
    frame, _ = read_results(results_dir)
    if ref.get("protocol") and "protocol" in frame and str(frame["protocol"].iloc[0]) != ref["protocol"]:
        raise DataError(
            f"results were scored with protocol {frame['protocol'].iloc[0]} but {ref_path} with {ref['protocol']}: "
            "compare like with like, or --update the reference on purpose"
        )
    tol = {**DEFAULT_TOLERANCE, **ref.get("tolerance", {}), **(tolerance or {})}
    new = {tuple(getattr(r, k) for k in KEY): r.value for r in aggregate_cells(frame).itertuples()}
    old = {tuple(c[k] for k in KEY): c["value"] for c in ref["cells"]}
    drifts = []
    for key in sorted(set(old) | set(new), key=str):
        o, n = old.get(key), new.get(key)
        n = None if n is None or (isinstance(n, float) and math.isnan(n)) else float(n)
        if o is None and n is None:
            continue
        if o is None or n is None or abs(n - o) > tol.get(key[4], 0.0):
            drifts.append(Drift(key[0], key[1], key[2], int(key[3]), key[4], o, n))
    return drifts
