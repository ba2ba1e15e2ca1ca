"""Metric drift check in two layers: evaluation drift and training drift.

Two layers, because they fail for different reasons and need different tolerances:

- **Evaluation drift** (code that scores: data, perturbations, attacks, metrics, protocol,
  aggregation). The reference stores the inference weights of the smoke models (float16, see
  :mod:`robustmri.bench.reference`); :func:`evaluate_reference_weights` scores them under the
  suite's whole grid with the bench's own scoring loop, and every cell must equal the committed
  value within tight tolerances (:data:`EVALUATION_TOLERANCE`, measured: see ``docs/drift.md``).
  Fixed weights take training's chaotic sensitivity to float summation order out of the
  comparison, so this layer is exact on any CPU, and any change of scoring code shows.
- **Training drift** (code that trains: models, their defaults, the engine). The results of the
  bench's freshly trained models are compared with the reference run, each cell with its own
  tolerance derived from the *measured* spread of training itself: when the reference is written
  (``--update``), the suite is trained again under :data:`FLOAT_ORDER_VARIANTS`, process settings
  that change the order in which floats are summed the way another CPU does (thread count, ATen's
  vector kernels, oneDNN's instruction set). See :func:`training_tolerances` for the rule.

A cell is (model, direction, perturbation, severity, metric) with the mean over test subjects of
the per-subject means (seeds averaged within a subject first).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmri.atomic import atomic_path
from robustmri.errors import ConfigError, DataError
from robustmri.results import CELL_KEY as KEY
from robustmri.results import cell_means, read_results

EVALUATION_TOLERANCE: dict[str, float] = {"psnr": 2e-3, "ssim": 2e-4, "mae": 5e-5, "nmse": 1e-4,
                                          "stability_psnr": 1e-2, "stability_ssim": 1e-3}
"""Absolute tolerances of the evaluation layer for every cell but the gradient attacks' (dB;
fractions). Measured spread of the smoke grid on fixed weights across thread counts and CPU kernel
variants below 3e-6 in every such cell: see docs/drift.md."""

ATTACK_EVALUATION_TOLERANCE: dict[str, float] = {"psnr": 6e-3, "ssim": 4e-4, "mae": 2e-4, "nmse": 5e-4,
                                                 "stability_psnr": 0.1, "stability_ssim": 7e-4}
"""Evaluation tolerances of the cells of attacks that follow gradients (:data:`ATTACK_CELLS`): a
float-order change flips the sign of near-zero gradient entries, and APGD's momentum carries the
flip along its path. About 5x the largest spread measured (docs/drift.md)."""

EVALUATION_TOLERANCE_BASIS = (
    "fixed float16 reference weights scored under the smoke grid with OMP_NUM_THREADS=1, "
    "ATEN_CPU_CAPABILITY=default and ONEDNN_MAX_CPU_ISA=SSE41 against the default process: in attack cells "
    "(PGD/FGSM, gradient signs flipping at float noise) the largest differences are 1.2e-3 dB PSNR, 6.8e-5 SSIM, "
    "4.4e-5 MAE, 8.5e-5 NMSE, 0.021 dB stability PSNR, 1.3e-4 stability SSIM, and attack tolerances are about 5x "
    "those; every other cell moves less than 3e-6 and its tolerances are at least 100x that (docs/drift.md)"
)


def is_attack_cell(perturbation: str) -> bool:
    """True for the cells of a registered attack (it needs the model): their evaluation tolerance is
    :data:`ATTACK_EVALUATION_TOLERANCE`."""
    from robustmri.perturb import PERTURBATIONS

    cls = PERTURBATIONS.get(perturbation)
    return bool(cls is not None and cls.needs_model)


def evaluation_tolerance(reference_evaluation: dict[str, Any]) -> Callable[[tuple], float]:
    """The evaluation tolerance of a cell key (model, direction, perturbation, severity, metric),
    as a reference stores them (``tolerance``, and ``tolerance_attacks`` for attack cells)."""
    plain = {**EVALUATION_TOLERANCE, **reference_evaluation.get("tolerance", {})}
    attacks = {**ATTACK_EVALUATION_TOLERANCE, **reference_evaluation.get("tolerance_attacks", {})}
    return lambda key: (attacks if is_attack_cell(str(key[2])) else plain).get(str(key[4]), 0.0)

TRAINING_FACTOR = 6.0
"""Tolerance of a training cell in units of its spread (see :func:`training_tolerances`)."""

TRAINING_FLOOR: dict[str, float] = {"psnr": 0.02, "ssim": 0.001, "mae": 0.0005, "nmse": 0.002,
                                    "stability_psnr": 0.1, "stability_ssim": 0.005}
"""Smallest training tolerances (dB; fractions): above the evaluation layer's, below any real change."""

FLOAT_ORDER_VARIANTS: dict[str, dict[str, str]] = {
    "threads1": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
}
"""Process settings under which ``--update`` retrains the suite to measure training's spread: each
changes the order of float sums (parallel reductions, vectorised kernels, convolution kernels) the
way another CPU does, without changing anything the code computes in exact arithmetic."""


# ----------------------------------------------------------------------------- cells


def _cell_dicts(cells: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"model": r.model, "direction": r.direction, "perturbation": r.perturbation, "severity": int(r.severity),
         "metric": r.metric, "value": None if math.isnan(r.value) else round(float(r.value), 7)}
        for r in cells.itertuples()
    ]


def _as_map(cells: pd.DataFrame) -> dict[tuple, float | None]:
    out: dict[tuple, float | None] = {}
    for r in cells.itertuples():
        v = float(r.value)
        out[(r.model, r.direction, r.perturbation, int(r.severity), r.metric)] = None if math.isnan(v) else v
    return out


def _suite_of(results_dir: Path, manifest: dict[str, Any]):  # type: ignore[no-untyped-def]
    from robustmri.bench.suite import suite_from_dict

    definition = manifest.get("suite_definition")
    if not isinstance(definition, dict):
        raise DataError(f"{results_dir / 'manifest.json'} holds no suite definition: run `robustmri bench --out {results_dir}` again")
    suite = suite_from_dict(definition)
    if manifest.get("suite_hash") not in (None, suite.hash):
        raise DataError(f"{results_dir / 'manifest.json'}: the suite definition does not match its hash; run the bench again")
    return suite


# ----------------------------------------------------------------------------- drift records


@dataclass(frozen=True)
class Drift:
    """One cell beyond its tolerance; ``old``/``new`` are None for a cell missing on that side."""

    layer: str
    model: str
    direction: str
    perturbation: str
    severity: int
    metric: str
    old: float | None
    new: float | None
    tolerance: float

    def describe(self) -> str:
        def fmt(v: float | None) -> str:
            return "missing" if v is None else f"{v:.4f}" if abs(v) >= 0.01 else f"{v:.6f}"

        notes = [] if self.old is None or self.new is None else [f"{self.new - self.old:+.2g}"]
        notes.append(f"tolerance {self.tolerance:.2g}")
        return (
            f"{self.model}, {self.direction}, {self.perturbation}, severity {self.severity}, {self.metric}: "
            f"{fmt(self.old)} -> {fmt(self.new)} ({', '.join(notes)})"
        )


@dataclass
class DriftReport:
    evaluation: list[Drift] = field(default_factory=list)
    training: list[Drift] = field(default_factory=list)
    compared: dict[str, int] = field(default_factory=dict)
    environment: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.evaluation and not self.training


#: what the tolerances are measured within: a change of one of these can move numbers by itself
ENVIRONMENT_KEYS = ("python", "torch", "numpy", "scipy", "scikit-image")


def environment_changes(ref: dict[str, Any], manifest: dict[str, Any], now: dict[str, str] | None = None) -> list[str]:
    """How the environment of a check differs from the reference's, as ``"torch 2.13.0+cpu -> 2.11.0"``
    lines: the library versions that change numbers (of the run in ``manifest`` and of this process,
    ``now``, which scores the evaluation layer) and the device the results were computed on.

    The tolerances are measured within one environment (the pinned install, on a CPU); a drift seen
    in another is not evidence of a code change by itself (docs/drift.md gives the figures)."""
    from robustmri.bench.store import versions

    created = ref.get("created") or {}
    old = created.get("versions") or {}
    now = versions() if now is None else now
    out = []
    for key in ENVIRONMENT_KEYS:
        seen = {v for v in ((manifest.get("versions") or {}).get(key), now.get(key)) if v}
        if key in old and seen and seen != {old[key]}:
            out.append(f"{key} {old[key]} -> {' / '.join(sorted(seen))}")
    if created.get("device") and manifest.get("device_name") and manifest["device_name"] != created["device"]:
        out.append(f"device {created['device']} -> {manifest['device_name']}")
    return out


def compare_cells(
    layer: str, old: dict[tuple, float | None], new: dict[tuple, float | None], tolerance: Callable[[tuple], float]
) -> list[Drift]:
    """Every cell of ``old`` or ``new`` that is missing on one side or moved by more than its tolerance."""
    drifts = []
    for key in sorted(set(old) | set(new), key=str):
        o, n = old.get(key), new.get(key)
        if o is None and n is None:
            continue
        tol = tolerance(key)
        if o is None or n is None or abs(n - o) > tol:
            drifts.append(Drift(layer, key[0], key[1], key[2], int(key[3]), key[4], o, n, tol))
    return drifts


# ----------------------------------------------------------------------------- evaluation layer


def evaluate_reference_weights(
    suite: Any, weights: dict[str, dict[str, Any]], folder: Path, cache: str | os.PathLike[str] | None = None,
    progress: bool = False, device: str | None = None,
) -> pd.DataFrame:
    """Score every reference model of ``weights`` (run name -> entry with ``file``, ``sha256``,
    ``model``, ``direction``, ``seed``; files relative to ``folder``) under the whole grid of
    ``suite`` with the bench's scoring loop, on ``device`` (default: the suite's); returns the
    per-slice rows (the results.csv columns)."""
    import torch

    from robustmri.bench.scoring import EvalSettings, score_cell
    from robustmri.bench.plan import Job, cells
    from robustmri.bench.reference import load_weights
    from robustmri.bench.tasks import resolve_suite_data
    from robustmri.bench.store import result_rows
    from robustmri.data.resolve import load_split_tensors
    from robustmri.device import resolve_device
    from robustmri.models.registry import is_differentiable
    from robustmri.perturb import PERTURBATIONS
    from robustmri.progress import progress_bar

    spec = resolve_suite_data(suite, cache, progress)
    device = resolve_device(device or suite.device)
    settings = EvalSettings.from_suite(suite)
    specs = {m.label: m for m in suite.models}
    grid = cells(suite)
    frames = []
    tests: dict[tuple[str, str], Any] = {}
    for run, entry in weights.items():
        if entry.get("model") not in specs:
            raise DataError(f"reference weights {run} are for model {entry.get('model')!r}, which the suite does not have: --update")
    # as in the bench, a model without gradients (a no-learning floor) gets no white-box attack
    own_cells = {run: grid if is_differentiable(specs[entry["model"]].name) else
                 [c for c in grid if c.is_clean or not PERTURBATIONS[c.perturbation].white_box] for run, entry in weights.items()}
    bar = progress_bar(total=sum(len(c) for c in own_cells.values()), desc="check: reference weights", unit="cell", enabled=progress)
    for run, entry in sorted(weights.items()):
        source, target = entry["direction"].split("->")
        job = Job(specs[entry["model"]], source, target, int(entry["seed"]))
        if (source, target) not in tests:
            tests[(source, target)] = load_split_tensors(spec, suite.eval_split, source, target)
        test = tests[(source, target)]
        model = load_weights(folder / entry["file"], entry.get("sha256"), device=device)
        clean_outputs: dict[int, Any] = {}  # shared by this model's cells (output stability)
        with torch.no_grad():
            for cell in own_cells[run]:
                scores = score_cell(model, test, cell, settings, device, clean_cache=clean_outputs)
                frames.append(result_rows(job, cell, scores.frame))
                bar.update(1)
    bar.close()
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- training layer


def training_tolerances(
    values: pd.DataFrame, factor: float = TRAINING_FACTOR, floor: dict[str, float] | None = None
) -> pd.DataFrame:
    """Per-cell tolerances from replicate runs.

    ``values``: one row per (cell, run) with columns ``KEY + ("run", "value")``; the reference run
    and the float-order variants. For cell c, ``s_c`` is the sample standard deviation over the
    runs; the scale is ``max(s_c, median of s over the cells of the same model and metric)`` (a few
    replicates can underestimate one cell's spread by chance; the median of its model and metric
    guards against that), and the tolerance is ``max(floor[metric], factor * scale)``. A new run
    differs from the reference by sqrt(2) of one run's spread, so ``factor`` 6 is about 4.2
    standard deviations of that difference.
    """
    floor = {**TRAINING_FLOOR, **(floor or {})}
    sd = values.groupby(list(KEY), sort=True)["value"].agg(lambda v: float(np.std(v.dropna(), ddof=1)) if v.notna().sum() > 1 else 0.0)
    sd = sd.rename("spread_sd").reset_index()
    sd["group_median"] = sd.groupby(["model", "metric"])["spread_sd"].transform("median")
    scale = sd[["spread_sd", "group_median"]].max(axis=1)
    sd["tolerance"] = [max(floor.get(m, 0.0), factor * s) for m, s in zip(sd["metric"], scale, strict=True)]
    return sd.drop(columns="group_median")


_VARIANT_CODE = (
    "import json, sys\n"
    "from robustmri.bench.runner import run_suite\n"
    "from robustmri.bench.suite import suite_from_dict\n"
    "suite = suite_from_dict(json.load(open(sys.argv[1])))\n"
    "run_suite(suite, sys.argv[2], cache=sys.argv[3] if sys.argv[3] else None, progress=False)\n"
)


def run_variant(suite: Any, name: str, out: Path, cache: str | os.PathLike[str] | None) -> Path:
    """Train and score ``suite`` into ``out`` in a child process under the float-order variant
    ``name`` (resumable: a killed ``--update`` continues where it stopped)."""
    env = {**os.environ, **FLOAT_ORDER_VARIANTS[name]}
    out.mkdir(parents=True, exist_ok=True)
    suite_file = out / "suite.json"
    with atomic_path(suite_file) as tmp:
        tmp.write_text(json.dumps(suite.to_dict(), default=list))
    proc = subprocess.run(
        [sys.executable, "-c", _VARIANT_CODE, str(suite_file), str(out), str(cache or "")],
        env=env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DataError(f"the {name} replicate of suite {suite.name} failed in {out}: {tail}")
    return out


# ----------------------------------------------------------------------------- check and update


def _drift_dir(results_dir: Path) -> Path:
    return results_dir / "drift"


def _write_rows(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.9g")


def _check_same_suite(ref: dict[str, Any], reference: Path, results_dir: Path, suite: Any) -> None:
    if ref.get("suite_hash") != suite.hash:
        raise ConfigError(
            f"{results_dir} comes from suite {suite.name} (hash {suite.hash}) but {reference} from suite "
            f"{ref.get('suite')} (hash {ref.get('suite_hash')}): run the reference's suite, or --update the reference on purpose"
        )
    from robustmri.protocol import get_protocol

    if ref.get("protocol") and ref["protocol"] != get_protocol(suite.protocol).id:
        raise ConfigError(f"{results_dir} is scored with protocol {get_protocol(suite.protocol).id}, {reference} with {ref['protocol']}: --update on purpose")


def check_drift(
    results_dir: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    tolerance: dict[str, float] | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = False,
    layers: tuple[str, ...] = ("evaluation", "training"),
    device: str | None = None,
) -> DriftReport:
    """Check both layers of ``results_dir`` against ``reference``.

    Evaluation: the reference weights are scored under the results' suite now and compared at
    the reference's evaluation tolerances (rows kept in ``results_dir/drift/evaluation.csv``).
    Training: the results are compared cell by cell at the reference's per-cell tolerances;
    ``tolerance`` (metric -> value) replaces those of the training layer on purpose.
    ``device``: where the evaluation layer scores (default: the suite's): a GPU run of a CPU
    reference checks that scoring agrees across devices.
    """
    from robustmri.bench.reference import read_reference

    results_dir, reference = Path(results_dir), Path(reference)
    ref = read_reference(reference)
    frame, manifest = read_results(results_dir)
    suite = _suite_of(results_dir, manifest)
    _check_same_suite(ref, reference, results_dir, suite)
    report = DriftReport(environment=environment_changes(ref, manifest))
    if "evaluation" in layers:
        rows = evaluate_reference_weights(suite, ref["evaluation"]["weights"], reference.parent, cache=cache, progress=progress,
                                          device=device)
        _write_rows(_drift_dir(results_dir) / "evaluation.csv", rows)
        old = {tuple(c[k] for k in KEY): c["value"] for c in ref["evaluation"]["cells"]}
        report.evaluation = compare_cells("evaluation", old, _as_map(cell_means(rows)),
                                          evaluation_tolerance(ref["evaluation"]))
        report.compared["evaluation"] = len(old)
    if "training" in layers:
        tol_cells = {tuple(c[k] for k in KEY): float(c["tolerance"]) for c in ref["training"]["cells"]}
        old = {tuple(c[k] for k in KEY): c["value"] for c in ref["training"]["cells"]}
        override = tolerance or {}
        report.training = compare_cells(
            "training", old, _as_map(cell_means(frame)),
            lambda k: override[k[4]] if k[4] in override else tol_cells.get(k, TRAINING_FLOOR.get(k[4], 0.0)),
        )
        report.compared["training"] = len(old)
    return report


def update_reference(
    results_dir: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    variants: tuple[str, ...] = tuple(FLOAT_ORDER_VARIANTS),
    cache: str | os.PathLike[str] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write a new reference from ``results_dir`` (both layers, weights included) and return a
    summary of what moved against the previous one (``{"evaluation": n, "training": n, "largest": [...]}``).

    Training replicates run under ``variants`` into ``results_dir/drift/replicates/<variant>/``
    (resumable). Weights go to ``<reference stem>-weights/``; files of the old reference that the
    new one does not use are removed after the new reference is in place.
    """
    from robustmri.bench.reference import export_weights, read_reference, weights_dir, write_reference_file
    from robustmri.bench.plan import jobs
    from robustmri.bench.store import versions as _versions
    from robustmri.protocol import get_protocol

    results_dir, reference = Path(results_dir), Path(reference)
    unknown = [v for v in variants if v not in FLOAT_ORDER_VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"unknown or no float-order variant(s) {unknown}: use some of {', '.join(FLOAT_ORDER_VARIANTS)}")
    frame, manifest = read_results(results_dir)
    suite = _suite_of(results_dir, manifest)
    try:
        previous: dict[str, Any] | None = read_reference(reference)
    except DataError:
        previous = None

    # evaluation layer: export the trained runs' inference weights, score them under the grid
    wdir = weights_dir(reference)
    weights: dict[str, dict[str, Any]] = {}
    for job in jobs(suite):
        run_dir = results_dir / "runs" / job.run_name
        if not (run_dir / "summary.json").is_file():
            raise DataError(f"{run_dir} is not a finished run: finish `robustmri bench --out {results_dir}` first")
        rel = f"{wdir.name}/{job.run_name}.pt"
        sha = export_weights(run_dir, reference.parent / rel)
        weights[job.run_name] = {"file": rel, "sha256": sha, "model": job.model.label, "direction": job.direction, "seed": job.seed}
    log(f"scoring the reference weights under the grid of suite {suite.name}")
    t0 = time.perf_counter()
    rows = evaluate_reference_weights(suite, weights, reference.parent, cache=cache, progress=progress)
    _write_rows(_drift_dir(results_dir) / "evaluation.csv", rows)
    evaluation_cells = _cell_dicts(cell_means(rows))
    log(f"  {len(evaluation_cells)} evaluation cells in {time.perf_counter() - t0:.0f} s")

    # training layer: the results plus replicates under other float orders
    replicate_cells = [cell_means(frame).assign(run="reference")]
    for name in variants:
        log(f"training replicate {name} ({' '.join(f'{k}={v}' for k, v in FLOAT_ORDER_VARIANTS[name].items())})")
        t0 = time.perf_counter()
        out = run_variant(suite, name, _drift_dir(results_dir) / "replicates" / name, cache)
        rep, _ = read_results(out)
        replicate_cells.append(cell_means(rep).assign(run=name))
        log(f"  done in {time.perf_counter() - t0:.0f} s")
    values = pd.concat(replicate_cells, ignore_index=True)
    tol = training_tolerances(values)
    reference_values = _as_map(replicate_cells[0])
    spread_by_variant = {
        name: _max_psnr_change(replicate_cells[0], cells_) for name, cells_ in zip(variants, replicate_cells[1:], strict=True)
    }
    training_cells = []
    for r in tol.itertuples():
        key = (r.model, r.direction, r.perturbation, int(r.severity), r.metric)
        v = reference_values.get(key)
        training_cells.append({
            "model": r.model, "direction": r.direction, "perturbation": r.perturbation, "severity": int(r.severity),
            "metric": r.metric, "value": None if v is None else round(v, 7),
            "spread_sd": round(float(r.spread_sd), 7), "tolerance": round(float(r.tolerance), 7),
        })

    payload = {
        "suite": suite.name,
        "suite_hash": suite.hash,
        "protocol": get_protocol(suite.protocol).id,
        "created": {"date": time.strftime("%Y-%m-%d"), "versions": _versions(), "device": manifest.get("device_name")},
        "evaluation": {
            "weights": weights,
            "tolerance": dict(EVALUATION_TOLERANCE),
            "tolerance_attacks": dict(ATTACK_EVALUATION_TOLERANCE),
            "tolerance_basis": EVALUATION_TOLERANCE_BASIS,
            "cells": evaluation_cells,
        },
        "training": {
            "tolerance_rule": (
                f"max(floor[metric], {TRAINING_FACTOR:g} * max(sd_cell, median sd of the model and metric)); "
                "sd over the reference run and its replicates under the float-order variants"
            ),
            "factor": TRAINING_FACTOR,
            "floor": dict(TRAINING_FLOOR),
            "variants": [{"name": v, "env": FLOAT_ORDER_VARIANTS[v], "max_abs_psnr_change": round(spread_by_variant[v], 5)} for v in variants],
            "cells": training_cells,
        },
    }
    write_reference_file(reference, payload)
    keep = {(reference.parent / w["file"]).resolve() for w in weights.values()}
    if previous is not None:
        for w in previous["evaluation"]["weights"].values():
            old_file = (reference.parent / w.get("file", "")).resolve()
            if old_file not in keep and old_file.is_file() and old_file.parent == wdir.resolve():
                old_file.unlink()
    return _what_moved(previous, payload)


def _max_psnr_change(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Largest absolute PSNR difference (dB) between two aggregated cell tables."""
    merged = a.merge(b, on=list(KEY), suffixes=("_a", "_b"))
    diff = (merged["value_a"] - merged["value_b"]).abs()[merged["metric"] == "psnr"]
    return float(diff.max()) if len(diff) else float("nan")


def _what_moved(previous: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Cells of each layer that moved beyond the previous reference's tolerances."""
    summary: dict[str, Any] = {"previous": previous is not None}
    if previous is None:
        return summary
    try:
        ev_tol = evaluation_tolerance(previous["evaluation"])
        for layer, tol_fn in (
            ("evaluation", lambda c: ev_tol(tuple(c[k] for k in KEY))),
            ("training", lambda c: float(c.get("tolerance", 0.0))),
        ):
            old = {tuple(c[k] for k in KEY): c for c in previous[layer]["cells"]}
            new_map = {tuple(c[k] for k in KEY): c["value"] for c in new[layer]["cells"]}
            moved = compare_cells(layer, {k: c["value"] for k, c in old.items()}, new_map,
                                  lambda k: tol_fn(old[k]) if k in old else 0.0)
            summary[layer] = moved
    except (KeyError, TypeError):
        summary["previous"] = False
    return summary
