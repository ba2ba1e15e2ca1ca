"""The grid runner: train each (model, direction, seed) once, then score every perturbation x severity.

Results store (``OUT``)::

    OUT/manifest.json                       suite, hash, versions, git commit, device, timings
    OUT/runs/<label>__<src>_to_<tgt>__s<seed>/   training runs (engine run folders; resumable)
    OUT/cells/<label>/<src>_to_<tgt>/s<seed>/<perturbation>__<severity>.csv   one file per cell
    OUT/cells/.../<perturbation>__<severity>.npz   the cell's sample slice (input and output)
    OUT/results.csv                         all cells, one row per (model, direction, seed,
                                            perturbation, severity, subject, slice)
    OUT/samples/<src>_to_<tgt>.npz          the qualitative sample of every cell, for the report

A cell is computed only if its CSV is missing, and is written atomically, so a second run computes
nothing, an added severity computes only its cells, and a killed run resumes where it stopped
(training resumes from its last checkpoint, exactly). ``shard=(i, n)`` runs only the (model,
direction, seed) jobs whose index is ``i`` modulo ``n``; :func:`merge_results` joins shard folders.

Corruptions are seeded by ``(eval seed, perturbation, batch index)`` and never by the model, so all
models see exactly the same corrupted inputs (paired comparisons). Attacks depend on the model by
nature; their generator is seeded the same way.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from robustmri import __version__
from robustmri.atomic import atomic_path, write_json_atomic
from robustmri.bench.suite import ModelSpec, Suite
from robustmri.errors import ConfigError, DataError

RESULT_COLUMNS = [
    "model", "direction", "seed", "perturbation", "family", "severity", "subject", "slice",
    "psnr", "ssim", "mae", "nmse", "protocol",
]


def direction_tag(source: str, target: str) -> str:
    return f"{source}_to_{target}"


@dataclass(frozen=True)
class Job:
    """One trained model of the grid."""

    model: ModelSpec
    source: str
    target: str
    seed: int

    @property
    def direction(self) -> str:
        return f"{self.source}->{self.target}"

    @property
    def run_name(self) -> str:
        return f"{self.model.label.replace(':', '-')}__{direction_tag(self.source, self.target)}__s{self.seed}"

    def cell_dir(self, out: Path) -> Path:
        return out / "cells" / self.model.label.replace(":", "-") / direction_tag(self.source, self.target) / f"s{self.seed}"


def jobs(suite: Suite) -> list[Job]:
    """All (model, direction, seed) jobs, in a fixed order."""
    return [Job(m, s, t, seed) for (s, t) in suite.directions for m in suite.models for seed in suite.seeds]


def cells(suite: Suite) -> list[tuple[str, str, int]]:
    """All (perturbation, family, severity) cells, clean first."""
    from robustmri.perturb import PERTURBATIONS

    out = [("clean", "clean", 0)]
    out += [(n, PERTURBATIONS[n].family, s) for n in suite.perturbations for s in suite.severities]
    out += [(n, PERTURBATIONS[n].family, s) for n in suite.attacks for s in suite.attack_severities]
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"bad --shard {text!r}: use i/n, e.g. 0/2 and 1/2") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"bad --shard {text!r}: need 0 <= i < n")
    return i, n


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"robustmri": __version__, "python": platform.python_version()}
    for pkg in ("torch", "numpy", "scipy", "pandas", "scikit-image", "nibabel", "nilearn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


class _Progress:
    """Progress over evaluation cells: a bar on a terminal, log lines otherwise, or nothing."""

    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        from robustmri.progress import progress_bar

        self.bar = progress_bar(total=total, desc=desc, unit="cell", enabled=enabled and total > 0)

    def update(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _batches(n: int, size: int) -> Iterator[tuple[int, slice]]:
    for b, start in enumerate(range(0, n, size)):
        yield b, slice(start, min(start + size, n))


def _model_fn(model: torch.nn.Module, target: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    if getattr(model, "needs_target", False):
        return lambda x: model.translate(x, target=target)  # type: ignore[operator]
    return lambda x: model.translate(x)  # type: ignore[operator]


def _perturbed(
    suite: Suite, name: str, severity: int, model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor,
    target: torch.Tensor, batch_index: int,
) -> torch.Tensor:
    from robustmri.perturb import PERTURBATIONS, apply_perturbation, attack, derive_seed

    if severity == 0 or name == "clean":
        return x
    if PERTURBATIONS[name].needs_model:
        gen = torch.Generator(device=x.device).manual_seed(derive_seed(suite.eval_seed, name, batch_index))
        with torch.enable_grad():
            return attack(
                _model_fn(model, target), x, name, severity, loss=suite.attack_loss,  # type: ignore[arg-type]
                eot_samples=suite.eot_samples, mask=mask, generator=gen, budget=suite.attack_budget.get(name),
            ).detach()
    return apply_perturbation(x, name, severity, seed=suite.eval_seed, mask=mask, key=batch_index)


def evaluate_cell(
    suite: Suite, job: Job, model: torch.nn.Module, test: Any, name: str, family: str, severity: int,
    device: torch.device, sample_index: int,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Score one (perturbation, severity) cell on the test split; returns rows and the sample slice."""
    from robustmri.protocol import get_protocol

    protocol = get_protocol(suite.protocol)
    frames = []
    sample: dict[str, np.ndarray] = {}
    gen_seed = suite.eval_seed
    for b, sl in _batches(len(test), suite.eval_batch_size):
        x = test.source[sl].to(device)
        y = test.target[sl].to(device)
        m = test.mask[sl].to(device)
        x_in = _perturbed(suite, name, severity, model, x, m, y, b)
        with torch.no_grad():
            gen = torch.Generator(device=device).manual_seed(gen_seed + b)
            kwargs: dict[str, Any] = {"generator": gen}
            if getattr(model, "needs_target", False):
                kwargs["target"] = y
            pred = model.translate(x_in, **kwargs).float()  # type: ignore[operator]
        scores = protocol.score(pred, y, mask=m, source=x_in[:, :1])
        frames.append(protocol.results_frame(scores, test.subject_labels(sl), test.slice[sl]))
        if sl.start <= sample_index < sl.stop:
            k = sample_index - sl.start
            sample = {"input": x_in[k, 0].float().cpu().numpy(), "output": pred[k, 0].cpu().numpy()}
    frame = pd.concat(frames, ignore_index=True)
    frame.insert(0, "model", job.model.label)
    frame.insert(1, "direction", job.direction)
    frame.insert(2, "seed", job.seed)
    frame.insert(3, "perturbation", name)
    frame.insert(4, "family", family)
    frame.insert(5, "severity", severity)
    frame["subject"] = frame["subject"].astype(str)
    return frame[RESULT_COLUMNS], sample


def _train_job(suite: Suite, job: Job, out: Path, data_spec: Any, device: str, progress: bool) -> Path:
    from robustmri.data.resolve import load_split_tensors
    from robustmri.train.engine import TrainConfig, train

    run_dir = out / "runs" / job.run_name
    config = TrainConfig(
        model=job.model.name,
        size=job.model.size,
        source=job.source,
        target=job.target,
        steps=job.model.steps or suite.train_steps,
        batch_size=job.model.batch_size or suite.train_batch_size,
        seed=job.seed,
        checkpoint_every=max((job.model.steps or suite.train_steps) // 4, 1),
        device=device,
        model_options=dict(job.model.options),
    )
    summary = run_dir / "summary.json"
    if summary.is_file():  # finished: reuse it if it is this training, else say so (never extend it)
        _check_same_training(run_dir, config, suite.image_size)
        return run_dir
    data = load_split_tensors(data_spec, "train", job.source, job.target)
    train(config, data, run_dir, resume=True, progress=progress)
    return run_dir


def _check_same_training(run_dir: Path, config: Any, image_size: int) -> None:
    """A finished run is reused only if it was trained with this configuration and image size."""
    from robustmri.train.engine import config_differences

    extended = json.loads((run_dir / "summary.json").read_text()).get("extended_from")
    if extended:
        raise ConfigError(
            f"{run_dir} was extended past its planned total (from {extended} steps), so it is not the suite's training: "
            "use another --out, or delete that run"
        )
    saved = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    mine = {**config.to_dict(), "image_size": image_size}
    mine.pop("in_channels")  # filled from the data when training; the data is checked with the cells
    diff = config_differences(saved, mine)
    if diff:
        raise ConfigError(
            f"{run_dir} was trained with other settings ({', '.join(f'{k}={saved.get(k)!r}' for k in diff)}, "
            f"the suite now asks {', '.join(f'{k}={mine[k]!r}' for k in diff)}): use another --out, or delete that run"
        )


def _cell_provenance(suite: Suite, job: Job, run_dir: Path, data: str) -> dict[str, Any]:
    """What every cell of ``job`` depends on besides its perturbation: the trained model, the test
    data, the protocol and the evaluation settings (cached cells are valid only while it holds)."""
    from robustmri.protocol import get_protocol
    from robustmri.train.engine import RESUMABLE_KEYS

    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "train": {k: v for k, v in config.items() if k not in RESUMABLE_KEYS},
        "trained_steps": summary.get("steps"),
        "data": data,
        "split": list(suite.split) if suite.split is not None else None,
        "image_size": suite.image_size,
        "protocol": get_protocol(suite.protocol).id,
        "eval": {"seed": suite.eval_seed, "batch_size": suite.eval_batch_size, "attack_loss": suite.attack_loss,
                 "eot_samples": suite.eot_samples, **({"attack_budget": suite.attack_budget} if suite.attack_budget else {})},
    }


def _perturbation_params(names: set[str]) -> dict[str, Any]:
    """The severity tables of ``names`` (a cached cell is stale once its table changes)."""
    from robustmri.perturb import PERTURBATIONS

    return {n: {str(k): v for k, v in sorted(PERTURBATIONS[n].severities.items())} for n in sorted(names)}


def _check_cached_cells(cell_dir: Path, provenance: dict[str, Any], params: dict[str, Any]) -> None:
    """Compare ``cell_dir/provenance.json`` with what the cells would be computed from now; raise
    naming the difference, or record the (merged) provenance. A folder without cells needs none."""
    path = cell_dir / "provenance.json"
    has_cells = cell_dir.is_dir() and any(cell_dir.glob("*.csv"))
    if path.is_file() and has_cells:
        saved = json.loads(path.read_text())
        diff = [k for k in provenance if saved.get(k) != json.loads(json.dumps(provenance[k]))]
        changed = [n for n, table in params.items() if n in saved.get("perturbations", {})
                   and saved["perturbations"][n] != json.loads(json.dumps(table))]
        if diff or changed:
            what = ", ".join(diff + [f"the severity table of {n}" for n in changed])
            raise ConfigError(
                f"the cells in {cell_dir} were computed with a different {what}: use another --out, or delete "
                "that folder to recompute them"
            )
        params = {**saved.get("perturbations", {}), **params}
    elif has_cells:
        raise ConfigError(f"{cell_dir} holds cells without provenance.json: use another --out, or delete that folder")
    cell_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {**provenance, "perturbations": params})


def run_suite(
    suite: Suite,
    out: str | os.PathLike[str],
    device: str | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    cache: str | os.PathLike[str] | None = None,
    report: bool = True,
) -> Path:
    """Run ``suite`` into ``out`` (resumable, incremental); returns the results folder."""
    from robustmri.data.resolve import load_split_tensors, resolve_data
    from robustmri.train.engine import load_trained, resolve_device

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev_name = device or suite.device
    dev = resolve_device(dev_name)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    contrasts = tuple(sorted({c for d in suite.directions for c in d}))
    spec = resolve_data(
        suite.data_source, suite.image_size, contrasts, cache=cache, seed=0, progress=progress,
        embedded_options=suite.embedded_options, split=suite.split,
    )
    timings["data_s"] = round(time.perf_counter() - t0, 3)
    my_jobs = [j for k, j in enumerate(jobs(suite)) if k % shard[1] == shard[0]]
    grid = cells(suite)
    _write_manifest(out, suite, dev, shard, spec.description, timings, status="running")

    t_train = time.perf_counter()
    runs: dict[str, Path] = {}
    for job in my_jobs:
        runs[job.run_name] = _train_job(suite, job, out, spec, dev_name, progress)
    timings["train_s"] = round(time.perf_counter() - t_train, 3)

    t_eval = time.perf_counter()
    names = {c[0] for c in grid if c[0] != "clean"}
    for job in my_jobs:  # cached cells must come from this model, data, protocol and these tables
        _check_cached_cells(job.cell_dir(out), _cell_provenance(suite, job, runs[job.run_name], spec.description),
                            _perturbation_params(names))
    todo = [(job, c) for job in my_jobs for c in grid if not (job.cell_dir(out) / f"{c[0]}__{c[2]}.csv").is_file()]
    bar = _Progress(len(todo), progress, f"bench {suite.name}")
    tests: dict[tuple[str, str], Any] = {}
    by_job: dict[str, tuple[Job, list[tuple[str, str, int]]]] = {}
    for job, c in todo:
        by_job.setdefault(job.run_name, (job, []))[1].append(c)
    for job, job_cells in by_job.values():
        key = (job.source, job.target)
        if key not in tests:
            tests[key] = load_split_tensors(spec, "test", job.source, job.target)
            _write_pair(out, job, tests[key])
        test = tests[key]
        model, _ = load_trained(runs[job.run_name], device=dev)
        sample_index = _sample_index(test)
        for name, family, severity in job_cells:
            frame, sample = evaluate_cell(suite, job, model, test, name, family, severity, dev, sample_index)
            cell = job.cell_dir(out) / f"{name}__{severity}.csv"
            with atomic_path(cell.with_suffix(".npz")) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, **sample)
            with atomic_path(cell) as tmp:
                frame.to_csv(tmp, index=False, float_format="%.6g")
            bar.update(f"{job.model.label} {name} {severity}")
    bar.close()
    timings["eval_s"] = round(time.perf_counter() - t_eval, 3)
    collect_results(out, suite)
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    _write_manifest(out, suite, dev, shard, spec.description, timings, status="complete", computed_cells=len(todo))
    if report:
        _build_report(out)
    return out


def _write_pair(out: Path, job: Job, test: Any) -> None:
    """Record source, target and mask of the sample slice for the report's qualitative grid."""
    path = out / "samples" / f"{direction_tag(job.source, job.target)}.pair.npz"
    if path.is_file():
        return
    k = _sample_index(test)
    arrays = {"source": test.source[k, 0].numpy(), "target": test.target[k, 0].numpy(), "mask": test.mask[k, 0].numpy()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def _sample_index(test: Any) -> int:
    """The qualitative sample: the middle slice of the first test subject."""
    first = test.subject[0]
    rows = torch.nonzero(test.subject == first).flatten()
    return int(rows[len(rows) // 2])


def collect_results(out: Path, suite: Suite | None = None) -> Path:
    """Concatenate every cell CSV under ``out/cells`` into ``out/results.csv`` (sorted, atomic) and
    assemble ``out/samples/<direction>.npz``."""
    from robustmri.protocol import check_same_protocol

    files = sorted((out / "cells").rglob("*.csv"))
    if not files:
        raise DataError(f"no result cells under {out / 'cells'}: run `robustmri bench` first")
    frame = pd.concat([pd.read_csv(f, dtype={"subject": str}) for f in files], ignore_index=True)
    check_same_protocol(frame)
    frame = frame.sort_values(["model", "direction", "seed", "perturbation", "severity", "subject", "slice"], kind="stable")
    with atomic_path(out / "results.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    _assemble_samples(out)
    return out / "results.csv"


def _assemble_samples(out: Path) -> None:
    per_direction: dict[str, dict[str, np.ndarray]] = {}
    for npz in sorted((out / "cells").rglob("*.npz")):
        rel = npz.relative_to(out / "cells").parts  # label, direction, seed, file
        label, direction, seed = rel[0], rel[1], rel[2]
        if seed != sorted(p.name for p in (out / "cells" / label / direction).iterdir())[0]:
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
            key = f"input|{label}|{pert}|{sev}" if pert in _model_dependent() else f"input|{pert}|{sev}"
            d[key] = z["input"]
            d[f"output|{label}|{pert}|{sev}"] = z["output"]
    for direction, arrays in per_direction.items():
        src, tgt = direction.split("_to_")
        arrays.update(_clean_pair(out, src, tgt))
        with atomic_path(out / "samples" / f"{direction}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)


def _model_dependent() -> set[str]:
    """Names of the perturbations whose input depends on the model (the adversarial attacks)."""
    from robustmri.perturb import PERTURBATIONS

    return {name for name, cls in PERTURBATIONS.items() if getattr(cls, "family", "") == "adversarial"}


def _clean_pair(out: Path, src: str, tgt: str) -> dict[str, np.ndarray]:
    """Source, target and mask of the sample slice (recorded by the runner in samples/<dir>.pair.npz)."""
    path = out / "samples" / f"{src}_to_{tgt}.pair.npz"
    if not path.is_file():
        return {}
    with np.load(path) as z:
        return {k: z[k] for k in ("source", "target", "mask")}


def _write_manifest(out: Path, suite: Suite, dev: torch.device, shard: tuple[int, int], data: str, timings: dict[str, float], status: str, computed_cells: int | None = None) -> None:
    from robustmri.protocol import get_protocol

    path = out / "manifest.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    if previous and previous.get("suite_hash") not in (None, suite.hash) and previous.get("suite") == suite.name:
        pass  # the suite changed (e.g. an added severity): cells already computed stay valid
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
        "versions": _versions(),
        "git_commit": _git_commit(),
        "timings_s": timings,
        "status": status,
    }
    if computed_cells is not None:
        manifest["cells_computed_this_run"] = computed_cells
    write_json_atomic(path, manifest)


def _build_report(out: Path) -> None:
    try:
        from robustmri.report.build import build_report
    except ImportError:  # the report package is optional at this layer
        return
    build_report(out)


def merge_results(out: str | os.PathLike[str], shards: list[str | os.PathLike[str]]) -> Path:
    """Copy the cells of every shard folder into ``out`` and rebuild ``out/results.csv``."""
    out = Path(out)
    manifests = []
    for shard in map(Path, shards):
        if not (shard / "cells").is_dir():
            raise DataError(f"{shard} holds no cells/ folder: pass the --out folders of `robustmri bench --shard`")
        manifests.append(json.loads((shard / "manifest.json").read_text()))
        for f in (shard / "cells").rglob("*"):
            if f.is_file() and not f.name.startswith("."):
                dest = out / "cells" / f.relative_to(shard / "cells")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dest) as tmp:
                    shutil.copyfile(f, tmp)
        for f in (shard / "samples").glob("*.pair.npz"):
            (out / "samples").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out / "samples" / f.name)
    hashes = {m.get("suite_hash") for m in manifests}
    if len(hashes) > 1:
        raise ConfigError(f"shards come from different suite definitions ({sorted(map(str, hashes))}): merge shards of one suite")
    merged = dict(manifests[0])
    merged["shard"] = "merged"
    merged["merged_from"] = [str(s) for s in shards]
    write_json_atomic(out / "manifest.json", merged)
    collect_results(out)
    _build_report(out)
    return out
