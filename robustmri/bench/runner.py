"""The bench: plan -> train (or reuse) -> evaluate -> store, for one suite.

Orchestration only: the plan is :mod:`robustmri.bench.plan`, the scoring loop
:mod:`robustmri.bench.evaluate`, the results folder :mod:`robustmri.bench.store`, training
:mod:`robustmri.train.engine` (which hands back a :class:`~robustmri.train.engine.RunHandle`).

A cell is computed only if its CSV is missing, and is written atomically, so a second run computes
nothing, an added severity computes only its cells, and a killed run resumes where it stopped
(training resumes from its last checkpoint, exactly). ``shard=(i, n)`` runs only the (model,
direction, seed) jobs whose index is ``i`` modulo ``n``; :func:`robustmri.bench.store.merge_results`
joins shard folders.

One protocol drives the run: the data are prepared with its volume normalisation (a prepared
folder normalised otherwise is refused) and every prediction is scored in its I/O range.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from robustmri.bench.evaluate import EvalSettings, score_cell
from robustmri.bench.plan import Cell, Job, cells, shard_jobs
from robustmri.bench.store import ResultsStore, cell_provenance, mark_interrupted, perturbation_params, sample_index
from robustmri.bench.store import merge_results as _merge_cells
from robustmri.bench.suite import Suite
from robustmri.errors import ConfigError

__all__ = ["ExternalHandle", "cells_of_job", "check_processes", "merge_results", "model_info", "resolve_suite_data",
           "run_suite", "train_job"]


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


def resolve_suite_data(suite: Suite, cache: str | os.PathLike[str] | None = None, progress: bool = False) -> Any:
    """The suite's data, prepared (or checked) with its protocol's volume normalisation."""
    from robustmri.data.resolve import resolve_data
    from robustmri.protocol import get_protocol

    contrasts = tuple(sorted({c for d in suite.directions for c in d}))
    return resolve_data(
        suite.data_source, suite.image_size, contrasts, cache=cache, seed=0, progress=progress,
        embedded_options=suite.embedded_options, split=suite.split, norm=get_protocol(suite.protocol).volume_norm,
    )


def _data_identity(suite: Suite) -> dict[str, Any]:
    """How the suite's data were asked for, recorded in each run (``eval`` repeats it)."""
    return {"source": suite.data_source, "split": suite.split, "embedded_options": suite.embedded_options}


class ExternalHandle:
    """An external model's stand-in for a trained run (see :mod:`robustmri.models.external`):
    what its cells depend on (:meth:`identity`) and the model itself (:meth:`load`). The module
    is imported once, checked for gradients with a seeded probe batch and kept."""

    trained_steps = None

    def __init__(self, spec: Any, base_dir: Path | None, in_channels: int, image_size: int) -> None:
        import torch

        from robustmri.models.external import ExternalModel, external_digest, load_external_module

        module = load_external_module(spec.external, base_dir, spec.label)
        self.model = ExternalModel(module, spec.label, spec.io_range, in_channels, image_size)
        self.spec = spec
        self.digest = external_digest(module, spec.external, base_dir)
        probe = torch.rand(1, in_channels, image_size, image_size, generator=torch.Generator().manual_seed(0))
        self.gradients = self.model.has_gradients(probe)
        self.parameters = sum(p.numel() for p in module.parameters())

    def identity(self) -> dict[str, Any]:
        return {"external": self.spec.external, "io_range": self.spec.io_range, "digest": self.digest}

    def load(self, device: Any = "cpu") -> tuple[Any, None]:
        return self.model.to(device), None


def model_info(job: Job, run: Any, grid: list[Cell]) -> dict[str, Any]:
    """What the leaderboard and the report say about ``job``'s model: architecture, parameter
    count (the networks used at inference), oracle, and the external model's details."""
    from robustmri.perturb import PERTURBATIONS

    if isinstance(run, ExternalHandle):
        white = sorted({c.perturbation for c in grid if not c.is_clean and PERTURBATIONS[c.perturbation].white_box})
        return {
            "architecture": f"external {type(run.model.module).__name__} ({run.spec.external})",
            "parameters": int(run.parameters), "oracle": False,
            "gradients": bool(run.gradients),
            "external": {"entry": run.spec.external, "io_range": run.spec.io_range, "digest": run.digest,
                         "parameters": int(run.parameters), "gradients": bool(run.gradients),
                         "skipped_attacks": [] if run.gradients else white},
        }
    model, _ = run.load(device="cpu")
    params = sum(p.numel() for m in model.inference_modules() for p in m.parameters())
    options = "".join(f", {k}={v}" for k, v in sorted(job.model.options.items()))
    info = {"architecture": f"{job.model.name} ({job.model.size}{options})", "parameters": int(params),
            "oracle": bool(model.needs_target), "gradients": bool(model.differentiable),
            "model": {"name": job.model.name, "size": job.model.size, "options": dict(job.model.options)}}
    if not model.differentiable:  # a no-learning floor: black-box attacks only
        info["skipped_attacks"] = sorted({c.perturbation for c in grid if not c.is_clean and PERTURBATIONS[c.perturbation].white_box})
    return info


def suite_folder(suite: Suite) -> Path | None:
    """The folder of the suite's TOML file (relative external entries resolve there), if any."""
    p = Path(suite.path) if suite.path else None
    return p.parent if p is not None and p.is_file() else None


def cells_of_job(job: Job, run: Any, grid: list[Cell]) -> list[Cell]:
    """The cells ``job`` is scored on: all of ``grid``, less white-box attacks for a model without
    gradients, an external one or a no-learning floor (it gets black-box attacks only, and the
    report says so)."""
    from robustmri.models.registry import is_differentiable
    from robustmri.perturb import PERTURBATIONS

    external = isinstance(run, ExternalHandle)
    if (external and not run.gradients) or (not external and not is_differentiable(job.model.name)):
        return [c for c in grid if c.is_clean or not PERTURBATIONS[c.perturbation].white_box]
    return grid


def train_job(
    suite: Suite, job: Job, store: ResultsStore, data_spec: Any, device: str, progress: bool, processes: int = 1,
    compile: bool = False,
) -> Any:
    """Train ``job`` (or reuse its finished run, if it is this training); returns its RunHandle
    (an :class:`ExternalHandle` for an external model, which is never trained). ``processes``: the
    DDP processes this training runs with (a SLURM job's tasks; 1 locally); a finished run trained
    with another number is another training (``processes`` x the batch per step) and is refused.
    ``compile``: train with compiled networks (a speed setting, not part of the run's identity)."""
    if job.model.external is not None:
        return ExternalHandle(job.model, suite_folder(suite), in_channels=1, image_size=suite.image_size)
    from robustmri.data.resolve import load_split_tensors
    from robustmri.train.engine import TrainConfig, open_run, train

    run_dir = store.run_dir(job)
    steps = job.model.steps if job.model.steps is not None else suite.train_steps
    config = TrainConfig(
        model=job.model.name,
        size=job.model.size,
        source=job.source,
        target=job.target,
        steps=steps,
        batch_size=job.model.batch_size if job.model.batch_size is not None else suite.train_batch_size,
        seed=job.seed,
        checkpoint_every=max(steps // 4, 1),
        device=device,
        compile=compile,
        model_options=dict(job.model.options),
    )
    from robustmri.translate import record_preparation

    if (run_dir / "summary.json").is_file():  # finished: reuse it if it is this training, else say so
        handle = open_run(run_dir)
        _check_same_training(handle, config, suite.image_size, processes)
        record_preparation(run_dir, data_spec.prepared, data_spec.description, **_data_identity(suite))
        return handle
    data = load_split_tensors(data_spec, "train", job.source, job.target)
    train(config, data, run_dir, resume=True, progress=progress)
    record_preparation(run_dir, data_spec.prepared, data_spec.description, **_data_identity(suite))  # what `translate` must repeat
    return open_run(run_dir)


def check_processes(run: Any, processes: int) -> None:
    """Refuse a finished run trained with another number of DDP processes than ``processes``."""
    trained_with = int((run.summary or {}).get("processes", 1))
    if trained_with != processes:
        raise ConfigError(
            f"{run.run_dir} was trained with {trained_with} DDP process(es) ({trained_with} x the batch per step), this "
            f"bench trains with {processes}: run it with `--executor slurm --train-processes {trained_with}`, "
            "or use another --out, or delete that run"
        )


def _check_same_training(run: Any, config: Any, image_size: int, processes: int = 1) -> None:
    """A finished run is reused only if it was trained with this configuration, image size and
    number of DDP processes (never one extended past its planned total)."""
    from robustmri.train.engine import config_differences

    check_processes(run, processes)
    if run.extended_from:
        raise ConfigError(
            f"{run.run_dir} was extended past its planned total (from {run.extended_from} steps), so it is not the "
            "suite's training: use another --out, or delete that run"
        )
    mine = {**config.to_dict(), "image_size": image_size}
    mine.pop("in_channels")  # filled from the data when training; the data is checked with the cells
    diff = config_differences(run.config, mine)
    if diff:
        raise ConfigError(
            f"{run.run_dir} was trained with other settings ({', '.join(f'{k}={run.config.get(k)!r}' for k in diff)}, "
            f"the suite now asks {', '.join(f'{k}={mine[k]!r}' for k in diff)}): use another --out, or delete that run"
        )


def run_suite(
    suite: Suite,
    out: str | os.PathLike[str],
    device: str | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    cache: str | os.PathLike[str] | None = None,
    compile: bool = False,
) -> Path:
    """Run ``suite`` into ``out`` (resumable, incremental); returns the results folder with its
    ``results.csv`` and manifest. The report and the leaderboard entries are composed from that
    folder afterwards (:func:`robustmri.publish.publish`): the runner never builds them. Interrupted
    (Ctrl-C), it leaves every finished checkpoint and cell and marks the manifest ``interrupted``.
    ``compile``: train with compiled networks (torch.compile; same results to float precision)."""
    try:
        return _run_suite(suite, out, device, shard, progress, cache, compile)
    except KeyboardInterrupt:
        mark_interrupted(out)
        raise
    except OSError as exc:  # a full disk, a read-only folder, ...: the manifest says why it stopped
        from robustmri.errors import os_error_message

        mark_interrupted(out, "failed", os_error_message(exc))
        raise


def _run_suite(
    suite: Suite, out: str | os.PathLike[str], device: str | None, shard: tuple[int, int], progress: bool,
    cache: str | os.PathLike[str] | None, compile: bool = False,
) -> Path:
    from robustmri.data.resolve import load_split_tensors
    from robustmri.device import resolve_device

    store = ResultsStore(out)
    if store.out.exists() and not store.out.is_dir():
        raise ConfigError(f"--out {store.out} is a file: pass a folder for the results")
    blocking = next((p for p in store.out.resolve().parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ConfigError(f"--out {store.out}: {blocking} is a file, not a folder: choose another --out")
    dev_name = device or suite.device
    dev = resolve_device(dev_name)  # a bad device or bad data is refused before --out is created
    settings = EvalSettings.from_suite(suite)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    spec = resolve_suite_data(suite, cache, progress)
    timings["data_s"] = round(time.perf_counter() - t0, 3)
    store.out.mkdir(parents=True, exist_ok=True)
    store.clean_stale_temporaries()
    my_jobs = shard_jobs(suite, shard)
    grid = cells(suite)
    store.write_manifest(suite, dev, shard, spec.description, timings, status="running")

    t_train = time.perf_counter()
    # external models first: a bad one is refused before anything is trained
    ordered = sorted(my_jobs, key=lambda j: j.model.external is None)
    runs = {job.run_name: train_job(suite, job, store, spec, dev_name, progress, compile=compile) for job in ordered}
    timings["train_s"] = round(time.perf_counter() - t_train, 3)

    t_eval = time.perf_counter()
    params = perturbation_params({c.perturbation for c in grid if not c.is_clean})
    for job in my_jobs:  # cached cells must come from this model, data, protocol and these tables
        run = runs[job.run_name]
        store.check_provenance(job, cell_provenance(suite, run.identity(), run.trained_steps, spec.description), params)
    todo: dict[str, tuple[Job, list[Cell]]] = {}
    for job in my_jobs:
        store.write_model_info(job, model_info(job, runs[job.run_name], grid))
    for job in my_jobs:
        missing = [c for c in cells_of_job(job, runs[job.run_name], grid) if not store.has_cell(job, c)]
        if missing:
            todo[job.run_name] = (job, missing)
    n_todo = sum(len(c) for _, c in todo.values())
    bar = _Progress(n_todo, progress, f"bench {suite.name}")
    tests: dict[tuple[str, str], Any] = {}
    for job, job_cells in todo.values():
        key = (job.source, job.target)
        if key not in tests:
            tests[key] = load_split_tensors(spec, suite.eval_split, job.source, job.target)
            store.write_pair(job, tests[key])
        test = tests[key]
        model, _ = runs[job.run_name].load(device=dev)
        if isinstance(runs[job.run_name], ExternalHandle):
            model.check_range(test.source[:32].to(dev))
        where = sample_index(test)
        clean_outputs: dict[int, Any] = {}  # shared by this model's cells (output stability)
        for cell in job_cells:
            scores = score_cell(model, test, cell, settings, dev, sample_index=where, clean_cache=clean_outputs)
            store.write_cell(job, cell, scores.frame, scores.sample)
            bar.update(f"{job.model.label} {cell.perturbation} {cell.severity}")
    bar.close()
    timings["eval_s"] = round(time.perf_counter() - t_eval, 3)
    store.collect()
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    store.write_manifest(suite, dev, shard, spec.description, timings, status="complete", computed_cells=n_todo)
    return store.out


def merge_results(out: str | os.PathLike[str], shards: list[str | os.PathLike[str]]) -> Path:
    """Join the results of ``--shard`` folders into ``out`` (validated before anything is written,
    see :func:`robustmri.bench.store.merge_results`); publish its report afterwards."""
    return _merge_cells(out, shards)
