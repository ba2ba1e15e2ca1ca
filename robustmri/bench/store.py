"""The results folder of a bench run: layout, provenance, manifest, cells, samples, merging.

Layout (``OUT``)::

    OUT/manifest.json                                suite, hash, versions, git commit, device, timings, status
    OUT/runs/<label>__<src>_to_<tgt>__s<seed>/      training runs (engine run folders; resumable)
    OUT/cells/<label>/<src>_to_<tgt>/s<seed>/provenance.json   what the cells below were computed from
    OUT/cells/<label>/<src>_to_<tgt>/s<seed>/<perturbation>__<severity>.csv   one file per cell
    OUT/cells/.../<perturbation>__<severity>.npz    the cell's sample slice (input and output)
    OUT/results.csv                                 all cells (robustmri.results.RESULT_COLUMNS)
    OUT/samples/<src>_to_<tgt>.npz                  the qualitative sample of every cell, keyed by SampleKey
    OUT/samples/<src>_to_<tgt>.pair.npz             source, target, mask (tissue labels, pixel spacing) of the sample slice

A cell file is written atomically and is valid only while its folder's ``provenance.json``
matches what it would be computed from now (:meth:`ResultsStore.check_provenance`).
"""

from __future__ import annotations

import contextlib

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from robustmri._version import __version__
from robustmri.atomic import atomic_path, write_json_atomic
from robustmri.bench.plan import Cell, Job, direction_tag
from robustmri.bench.suite import Suite
from robustmri.errors import ConfigError, DataError
from robustmri.results import (
    REPORTED, SampleKey, read_manifest, read_model_records, read_table, registered_metrics, result_columns,
)


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    """Versions of robustmri, Python and the libraries that change numbers."""
    import importlib.metadata as md

    out = {"robustmri": __version__, "python": platform.python_version()}
    for pkg in ("torch", "numpy", "scipy", "pandas", "scikit-image", "nibabel", "nilearn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def perturbation_params(names: set[str] | list[str]) -> dict[str, Any]:
    """The severity tables of ``names`` (a cached cell is stale once its table changes)."""
    from robustmri.perturb import PERTURBATIONS

    return {n: {str(k): v for k, v in sorted(PERTURBATIONS[n].severities.items())} for n in sorted(names)}


THREAT_MODEL_VERSION = 4
"""Bumped whenever what a perturbation does changes beyond its severity table (2: corruptions on
the whole field of view in physical units; attacks on the reported error, APGD; 3: blur as the
Gaussian transfer function, resolution loss as k-space truncation; 4: APGD step for step as the
reference implementation, equispaced undersampling lines as fastMRI's). Cells scored under
another version are recomputed."""


CLINICAL_VERSION = 2
"""Version of the clinical scores (robustmri.clinical: lesion scores, the detector's rule, whole-volume scores) that a
suite with ``eval.clinical`` records in its cells' provenance; raise it when they change."""


def cell_provenance(suite: Suite, run_identity: dict[str, Any], trained_steps: int | None, data: str) -> dict[str, Any]:
    """What every cell of a job depends on besides its perturbation: the trained model, the test
    data, the protocol and the evaluation settings (cached cells are valid only while it holds)."""
    from robustmri.protocol import get_protocol

    return {
        "train": run_identity,
        "trained_steps": trained_steps,
        "data": data,
        "split": list(suite.split) if suite.split is not None else None,
        "image_size": suite.image_size,
        "protocol": get_protocol(suite.protocol).id,
        "threat_model": THREAT_MODEL_VERSION,
        "eval": {"seed": suite.eval_seed, "attack_loss": suite.attack_loss,
                 **({"split": suite.eval_split} if suite.eval_split != "test" else {}),
                 "attack_objective": suite.attack_objective, "eot_samples": suite.eot_samples, **({"attack_budget": suite.attack_budget} if suite.attack_budget else {})},
        **({"clinical": CLINICAL_VERSION} if suite.clinical else {}),
    }


def result_rows(job: Job, cell: Cell, scores: pd.DataFrame) -> pd.DataFrame:
    """Per-slice scores of ``job`` under ``cell`` as rows of the results table (RESULT_COLUMNS, with
    the protocol's registered metrics after the built-in ones)."""
    frame = scores.copy()
    for i, (col, value) in enumerate((
        ("model", job.model.label), ("direction", job.direction), ("seed", job.seed),
        ("perturbation", cell.perturbation), ("family", cell.family), ("severity", cell.severity),
    )):
        frame.insert(i, col, value)
    for metric in REPORTED:  # a protocol scoring fewer metrics (e.g. Reg-GAN's has no NMSE) leaves NaN
        if metric not in frame.columns:
            frame[metric] = float("nan")
    return frame[list(result_columns(registered_metrics(frame.columns)))]


def sample_index(test: Any) -> int:
    """The qualitative sample: the test slice with the most lesion voxels when the test subjects
    carry lesions (their tissue labels say so; the report's lesion figure shows it), else the
    middle slice of the first test subject."""
    labels = getattr(test, "labels", None)
    if labels is not None:
        from robustmri.data.tissues import LESION_LABELS

        lesion = torch.isin(labels[:, 0], torch.tensor(LESION_LABELS, dtype=labels.dtype)).flatten(1).sum(1)
        if int(lesion.max()) > 0:
            return int(torch.argmax(lesion))  # the first of equals
    first = test.subject[0]
    rows = torch.nonzero(test.subject == first).flatten()
    return int(rows[len(rows) // 2])


def _json(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


class ResultsStore:
    """The results folder ``out`` of a bench run (see the module docstring)."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)

    # ------------------------------------------------------------------ housekeeping
    def clean_stale_temporaries(self, older_than_s: float = 600.0) -> int:
        """Remove temporary files that a killed run left behind in this folder (robustmri's own
        pattern ``.<name>.<random>.tmp`` from :func:`robustmri.atomic.atomic_path`, untouched for
        ``older_than_s`` seconds, so a live writer's file is never taken); returns how many."""
        import time

        now, removed = time.time(), 0
        for path in self.out.rglob(".*.tmp"):
            try:
                if path.is_file() and now - path.stat().st_mtime > older_than_s:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    # ------------------------------------------------------------------ paths
    def run_dir(self, job: Job) -> Path:
        return self.out / "runs" / job.run_name

    def cell_dir(self, job: Job) -> Path:
        return self.out / "cells" / job.label_tag / direction_tag(job.source, job.target) / f"s{job.seed}"

    def cell_csv(self, job: Job, cell: Cell) -> Path:
        return self.cell_dir(job) / f"{cell.file_stem}.csv"

    def has_cell(self, job: Job, cell: Cell) -> bool:
        return self.cell_csv(job, cell).is_file()

    def lock(self, name: str) -> Path:
        """The lock file ``name`` for read-modify-writes that tasks share (a job's ``model.json`` and
        provenance, the sample pairs), kept apart from the results under ``.locks/``."""
        return self.out / ".locks" / f"{name}.lock"

    def segmenter_dir(self, contrast: str) -> Path:
        """The clinical segmenter of ``contrast`` (``segmenter.pt`` and ``.json``): trained once per
        results folder on the real training images, shared by every model and seed."""
        return self.out / "segmenters" / contrast

    def clinical_csv(self, job: Job, cell: Cell) -> Path:
        """The cell's clinical rows (one per test subject), beside the cells' tree."""
        return self.out / "clinical" / job.label_tag / direction_tag(job.source, job.target) / f"s{job.seed}" / f"{cell.file_stem}.csv"

    def write_clinical(self, job: Job, cell: Cell, scores: pd.DataFrame) -> None:
        """Write one cell's clinical rows (:func:`robustmri.clinical.clinical_frame`) atomically,
        before its results rows (which mark the cell done)."""
        frame = scores.copy()
        for i, (col, value) in enumerate((
            ("model", job.model.label), ("direction", job.direction), ("seed", job.seed),
            ("perturbation", cell.perturbation), ("family", cell.family), ("severity", cell.severity),
        )):
            frame.insert(i, col, value)
        with atomic_path(self.clinical_csv(job, cell)) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")

    # ------------------------------------------------------------------ provenance
    def check_provenance(self, job: Job, provenance: dict[str, Any], params: dict[str, Any]) -> None:
        """Compare the job's ``provenance.json`` with what its cells would be computed from now;
        raise naming the difference, or record the (merged) provenance. A folder without cells
        needs none."""
        cell_dir = self.cell_dir(job)
        path = cell_dir / "provenance.json"
        has_cells = cell_dir.is_dir() and any(cell_dir.glob("*.csv"))
        if path.is_file() and has_cells:
            try:
                saved = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise DataError(f"{path} is unreadable: delete {cell_dir} to recompute its cells") from None
            diff = [k for k in provenance if saved.get(k) != _json(provenance[k])]
            changed = [n for n, table in params.items() if n in saved.get("perturbations", {})
                       and saved["perturbations"][n] != _json(table)]
            if diff or changed:
                what = ", ".join([f"a different {k}" for k in diff] + [f"another severity table of {n}" for n in changed])
                raise ConfigError(
                    f"the cells in {cell_dir} were computed with {what}: use another --out, or delete "
                    "that folder to recompute them"
                )
            params = {**saved.get("perturbations", {}), **params}
        elif has_cells:
            raise ConfigError(f"{cell_dir} holds cells without provenance.json: use another --out, or delete that folder")
        cell_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**provenance, "perturbations": params})

    # ------------------------------------------------------------------ cells and samples
    def write_cell(self, job: Job, cell: Cell, scores: pd.DataFrame, sample: dict[str, np.ndarray]) -> None:
        """Write one cell: its sample slice, then its rows (the CSV marks the cell done)."""
        frame = result_rows(job, cell, scores)
        path = self.cell_csv(job, cell)
        with atomic_path(path.with_suffix(".npz")) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **sample)
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")

    def write_pair(self, job: Job, test: Any) -> None:
        """Record source, target and mask of the sample slice for the report's qualitative grid."""
        path = self.out / "samples" / f"{direction_tag(job.source, job.target)}.pair.npz"
        if path.is_file():
            return
        k = sample_index(test)
        arrays = {"source": test.source[k, 0].numpy(), "target": test.target[k, 0].numpy(), "mask": test.mask[k, 0].numpy()}
        if getattr(test, "labels", None) is not None:  # the lesion figure's outlines
            arrays["labels"] = test.labels[k, 0].numpy()
        if getattr(test, "spacing", None) is not None:
            arrays["spacing"] = np.asarray(float(test.spacing[k]))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

    def write_model_info(self, job: Job, info: dict[str, Any]) -> None:
        """Record what ``job``'s model is in ``cells/.../model.json`` (architecture, parameter count,
        oracle, and for an external model its entry, digest, gradients and the white-box attacks it
        was not scored on). Kept with the cells, so shards carry it into a merge."""
        from robustmri.atomic import write_json_if_changed

        write_json_if_changed(self.cell_dir(job) / "model.json", {"label": job.model.label, **info})

    def model_info(self) -> dict[str, dict[str, Any]]:
        """label -> the ``model.json`` of its first job (see :meth:`write_model_info` and
        :func:`robustmri.results.read_model_records`)."""
        return read_model_records(self.out)

    def _write_external(self) -> None:
        """``external.json`` (label -> external model info), from the models' ``model.json`` files."""
        from robustmri.atomic import write_json_if_changed

        info = self.model_info()
        external = {k: v["external"] for k, v in sorted(info.items()) if v.get("external")}
        if external:
            write_json_if_changed(self.out / "external.json", external)

    def collect(self) -> Path:
        """Concatenate every cell CSV into ``results.csv`` (sorted, atomic) and assemble the samples."""
        from robustmri.protocol import check_same_protocol

        files = sorted((self.out / "cells").rglob("*.csv"))
        if not files:
            raise DataError(f"no result cells under {self.out / 'cells'}: run `robustmri bench` first")
        frame = pd.concat([pd.read_csv(f, dtype={"subject": str}) for f in files], ignore_index=True)
        check_same_protocol(frame)
        frame = frame.sort_values(["model", "direction", "seed", "perturbation", "severity", "subject", "slice"], kind="stable")
        with atomic_path(self.out / "results.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        self._collect_clinical()
        self._assemble_samples()
        self._write_external()
        return self.out / "results.csv"

    def _collect_clinical(self) -> None:
        """Concatenate the cells' clinical rows into ``clinical.csv`` (sorted, atomic), if any."""
        files = sorted((self.out / "clinical").rglob("*.csv")) if (self.out / "clinical").is_dir() else []
        if not files:
            return
        frame = pd.concat([pd.read_csv(f, dtype={"subject": str}) for f in files], ignore_index=True)
        frame = frame.sort_values(["model", "direction", "seed", "perturbation", "severity", "subject"], kind="stable")
        with atomic_path(self.out / "clinical.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")

    def _assemble_samples(self) -> None:
        from robustmri.perturb import PERTURBATIONS

        crafted = {n for n, cls in PERTURBATIONS.items() if getattr(cls, "needs_model", False)}
        per_direction: dict[str, dict[str, np.ndarray]] = {}
        cells_root = self.out / "cells"
        for npz in sorted(cells_root.rglob("*.npz")):
            label, direction, seed = npz.relative_to(cells_root).parts[:3]
            if seed != sorted(p.name for p in (cells_root / label / direction).iterdir() if not p.name.startswith("."))[0]:
                continue  # the first seed's samples only
            pert, sev = npz.stem.rsplit("__", 1)
            csv = npz.with_suffix(".csv")
            if csv.is_file():  # the model's display label (the folder name is a path-safe form of it)
                label = str(pd.read_csv(csv, nrows=1, usecols=["model"])["model"].iloc[0])
            with np.load(npz) as z:
                if "input" not in z:
                    continue
                d = per_direction.setdefault(direction, {})
                # an attack's input is crafted against each model: keep one per model
                d[SampleKey("input", label if pert in crafted else None, pert, int(sev)).encode()] = z["input"]
                d[SampleKey("output", label, pert, int(sev)).encode()] = z["output"]
        for direction, arrays in per_direction.items():
            pair = self.out / "samples" / f"{direction}.pair.npz"
            if pair.is_file():
                with np.load(pair) as z:
                    arrays.update({k: z[k] for k in ("source", "target", "mask", "labels", "spacing") if k in z})
            with atomic_path(self.out / "samples" / f"{direction}.npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, **arrays)

    # ------------------------------------------------------------------ manifest
    def write_manifest(
        self, suite: Suite, dev: torch.device, shard: tuple[int, int], data: str, timings: dict[str, float],
        status: str, computed_cells: int | None = None,
    ) -> None:
        from robustmri.protocol import get_protocol

        manifest = {
            "suite": suite.name,
            "suite_hash": suite.hash,
            "suite_definition": suite.to_dict(),
            "reference_model": suite.reference_model,
            "ablation": suite.ablation,
            "models": [m.label for m in suite.models],
            "directions": [f"{s}->{t}" for s, t in suite.directions],
            "protocol": get_protocol(suite.protocol).id,
            "data": data,
            "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
            "shard": f"{shard[0]}/{shard[1]}",
            "versions": versions(),
            "git_commit": git_commit(),
            "timings_s": timings,
            "status": status,
        }
        if computed_cells is not None:
            manifest["cells_computed_this_run"] = computed_cells
        write_json_atomic(self.out / "manifest.json", manifest)


def mark_interrupted(out: str | os.PathLike[str], status: str = "interrupted", reason: str | None = None) -> None:
    """Set ``status`` in ``out/manifest.json``: ``"interrupted"`` (a run stopped by Ctrl-C or
    SIGTERM) or ``"failed"`` with the ``reason`` (e.g. a full disk). Best effort: on a full disk the
    manifest itself may not be writable, and then it is left as it was."""
    path = Path(out) / "manifest.json"
    try:
        manifest = read_manifest(path)
    except DataError:
        return
    if manifest:
        with contextlib.suppress(OSError):
            write_json_atomic(path, {**manifest, "status": status, **({"reason": reason} if reason else {})})


def merge_results(out: str | os.PathLike[str], shards: list[str | os.PathLike[str]]) -> Path:
    """Join the cells of ``--shard`` folders into ``out`` and rebuild its results and report.

    Everything is validated before anything is written: every shard holds a readable manifest of
    the same suite definition and readable cells, and no cell of ``out`` would be overwritten
    with different rows. A refused merge leaves ``out`` untouched.
    """
    out = Path(out)
    roots = [Path(s) for s in shards]
    manifests = []
    for shard in roots:
        if not (shard / "cells").is_dir():
            raise DataError(f"{shard} holds no cells/ folder: pass the --out folders of `robustmri bench --shard`")
        if not (shard / "manifest.json").is_file():
            raise DataError(f"{shard} has no manifest.json: it was not written by `robustmri bench`")
        manifests.append(read_manifest(shard / "manifest.json"))
    hashes = {m.get("suite_hash") for m in manifests}
    if len(hashes) > 1 or None in hashes:
        raise ConfigError(f"shards come from different suite definitions ({sorted(map(str, hashes))}): merge shards of one suite")
    if (out / "manifest.json").is_file() and read_manifest(out / "manifest.json").get("suite_hash") not in hashes:
        raise ConfigError(f"{out} holds results of another suite definition: merge into an empty folder")
    copies: list[tuple[Path, Path]] = []
    for shard in roots:
        for f in sorted((shard / "cells").rglob("*")):
            if not f.is_file() or f.name.startswith("."):
                continue
            if f.suffix == ".csv":
                read_table(f)  # a torn or foreign cell stops the merge before anything is written
            dest = out / "cells" / f.relative_to(shard / "cells")
            if f.suffix == ".csv" and dest.is_file() and not _same_bytes(f, dest):
                raise ConfigError(f"{dest} already holds other results than {f}: merge into an empty folder")
            copies.append((f, dest))
        copies += [(f, out / "samples" / f.name) for f in sorted((shard / "samples").glob("*.pair.npz"))]
        clinical = shard / "clinical"
        copies += [(f, out / "clinical" / f.relative_to(clinical)) for f in sorted(clinical.rglob("*.csv"))] if clinical.is_dir() else []
    for src, dest in copies:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    merged = dict(manifests[0])
    merged["shard"] = "merged"
    merged["merged_from"] = [str(s) for s in roots]
    write_json_atomic(out / "manifest.json", merged)
    ResultsStore(out).collect()
    return out


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
