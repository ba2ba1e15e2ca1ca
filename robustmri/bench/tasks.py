"""The bench's two tasks, as public functions of plain, picklable data that any executor runs.

- :func:`train` (a :class:`TrainTask`): one model of the suite, one training (or the reuse of a
  finished run whose configuration matches);
- :func:`score` (a :class:`ScoreTask`): one trained model, a list of cells; a cell already written
  (by an earlier attempt, or by another task) is skipped, so a cell is computed once.

A task carries the suite as the dict that :meth:`~robustmri.bench.suite.Suite.to_dict` writes, the
results folder and the names it works on: it can run in this process, in a worker process of
``--executor local --jobs N``, under submitit's local executor or on a SLURM node, and gives the
same bytes everywhere. Tasks write only through :class:`~robustmri.bench.store.ResultsStore`
(atomic files; the shared ``model.json`` and sample files under a file lock).

Also here: what a task needs to know about a job's model (:func:`train_job`, which returns a
run handle; :class:`ExternalHandle` for a user's model that is never trained; :func:`model_info`;
:func:`cells_of_job`) and :func:`check_job`, the provenance check of a job whose model is trained.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from robustmri.bench.plan import Cell, Job, cells, jobs
from robustmri.bench.store import ResultsStore
from robustmri.bench.suite import Suite, suite_from_dict
from robustmri.errors import ConfigError, DataError

__all__ = [
    "ExternalHandle", "ScoreTask", "Task", "TasksFailed", "TrainTask", "cells_of_job", "check_job", "check_processes", "find_job",
    "format_plan", "model_info", "plan_tasks", "resolve_suite_data", "score", "shared_inputs", "suite_data", "train", "train_job",
    "wanted_cells",
]


@dataclass(frozen=True)
class TrainTask:
    """Train the job ``run_name`` of ``suite`` (a ``Suite.to_dict()``) into the results folder ``out``.

    ``device``: where it trains; ``processes``: DDP processes (a SLURM job's tasks; 1 elsewhere);
    ``compile``: compiled networks (a speed setting, not part of the run's identity); ``progress``:
    a progress bar (in this process only)."""

    suite: dict[str, Any]
    run_name: str
    out: str
    cache: str | None = None
    device: str = "cpu"
    processes: int = 1
    compile: bool = False
    progress: bool = False

    kind: ClassVar[str] = "train"

    @property
    def after(self) -> str | None:
        """A training waits for nothing."""
        return None

    @property
    def name(self) -> str:
        return f"train {self.run_name}"


@dataclass(frozen=True)
class ScoreTask:
    """Score the job ``run_name`` of ``suite`` on the cells whose file stems are ``stems``.

    ``after``: the run name of the training this task waits for (None: trained already);
    ``processes``: the DDP processes its model was trained with (a finished run trained otherwise
    is refused)."""

    suite: dict[str, Any]
    run_name: str
    stems: tuple[str, ...]
    out: str
    cache: str | None = None
    device: str = "cpu"
    processes: int = 1
    progress: bool = False
    after: str | None = None

    kind: ClassVar[str] = "score"

    @property
    def name(self) -> str:
        return f"score {self.run_name} ({len(self.stems)} cells: {self.stems[0]} .. {self.stems[-1]})"


Task = TrainTask | ScoreTask


class TasksFailed(DataError):
    """Some tasks did not finish (the others did); a re-run computes only what is missing."""


# ----------------------------------------------------------------------------- inputs of a task

_shared: dict[tuple[Any, ...], Any] | None = None


@contextlib.contextmanager
def shared_inputs() -> Iterator[None]:
    """Within this block, tasks run in this process share their prepared data and test tensors
    (resolved and loaded once per suite, split and direction); outside it, every task loads its own."""
    global _shared
    outer = _shared
    _shared = {} if outer is None else outer
    try:
        yield
    finally:
        _shared = outer


def _memo(key: tuple[Any, ...], make: Any) -> Any:
    if _shared is None:
        return make()
    if key not in _shared:
        _shared[key] = make()
    return _shared[key]


def resolve_suite_data(suite: Suite, cache: str | os.PathLike[str] | None = None, progress: bool = False) -> Any:
    """The suite's data, prepared (or checked) with its protocol's volume normalisation."""
    from robustmri.data.resolve import resolve_data
    from robustmri.protocol import get_protocol

    contrasts = tuple(sorted({c for d in suite.directions for c in d}))
    return resolve_data(
        suite.data_source, suite.image_size, contrasts, cache=cache, seed=0, progress=progress,
        embedded_options=suite.embedded_options, split=suite.split, norm=get_protocol(suite.protocol).volume_norm,
    )


def _data_key(suite: Suite, cache: str | os.PathLike[str] | None) -> tuple[Any, ...]:
    what = (suite.data_source, suite.image_size, tuple(suite.directions), suite.split, suite.protocol,
            json.dumps(suite.embedded_options, sort_keys=True, default=str))
    return ("data", what, None if cache is None else str(cache))


def suite_data(suite: Suite, cache: str | os.PathLike[str] | None = None, progress: bool = False) -> Any:
    """:func:`resolve_suite_data`, once per suite data within a :func:`shared_inputs` block."""
    return _memo(_data_key(suite, cache), lambda: resolve_suite_data(suite, cache, progress))


def _test_tensors(suite: Suite, cache: str | None, spec: Any, job: Job) -> Any:
    from robustmri.data.resolve import load_split_tensors

    key = ("test", _data_key(suite, cache), suite.eval_split, job.source, job.target)
    return _memo(key, lambda: load_split_tensors(spec, suite.eval_split, job.source, job.target))


def _segmenter(suite: Suite, cache: str | None, store: ResultsStore, spec: Any, job: Job, device: Any) -> Any:
    """The clinical segmenter of the job's target contrast (:mod:`robustmri.clinical.segmenter`):
    loaded from the results folder, or trained there by the first task that needs it (under a
    lock, so one trains and the others load); kept per process."""
    from robustmri.atomic import locked
    from robustmri.clinical import load_or_train_segmenter
    from robustmri.data.resolve import load_split_tensors

    identity = {**_data_identity(suite), "image_size": suite.image_size, "contrast": job.target}

    def training_data() -> tuple[Any, Any]:
        train = load_split_tensors(spec, "train", job.source, job.target)
        return train.target, train.labels

    def make() -> Any:
        with locked(store.lock(f"segmenter-{job.target}")):
            return load_or_train_segmenter(store.segmenter_dir(job.target), training_data, identity, device=device)

    return _memo(("segmenter", str(store.out), _data_key(suite, cache), job.target, str(device)), make)


def find_job(suite: Suite, run_name: str) -> Job:
    """The job of ``suite`` named ``run_name``."""
    for j in jobs(suite):
        if j.run_name == run_name:
            return j
    raise ConfigError(f"no job {run_name!r} in suite {suite.name}")


# ------------------------------------------------------------------------------- a job's model


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


def _white_box(grid: list[Cell]) -> list[str]:
    from robustmri.perturb import PERTURBATIONS

    return sorted({c.perturbation for c in grid if not c.is_clean and PERTURBATIONS[c.perturbation].white_box})


def model_info(job: Job, run: Any, grid: list[Cell]) -> dict[str, Any]:
    """What the leaderboard and the report say about ``job``'s model: architecture, parameter
    count (the networks used at inference), oracle, and the external model's details."""
    if isinstance(run, ExternalHandle):
        white = _white_box(grid)
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
        info["skipped_attacks"] = _white_box(grid)
    return info


def suite_folder(suite: Suite) -> Path | None:
    """The folder of the suite's TOML file (relative external entries resolve there), if any."""
    p = Path(suite.path) if suite.path else None
    return p.parent if p is not None and p.is_file() else None


def wanted_cells(job: Job, grid: list[Cell], store: ResultsStore | None = None) -> list[Cell]:
    """The cells ``job`` is scored on, from its specification alone: all of ``grid``, less the
    white-box attacks for a model of the registry without gradients (a no-learning floor). An
    external model's gradients are known once it is imported (:func:`cells_of_job`): here from
    the ``model.json`` an earlier scoring recorded in ``store``, if any (so that a re-run does not
    plan its white-box cells, which are never written)."""
    from robustmri.models.registry import is_differentiable
    from robustmri.perturb import PERTURBATIONS

    if job.model.external is not None:
        recorded = _recorded_info(store, job) if store is not None else {}
        if recorded.get("gradients", True):
            return grid
    elif is_differentiable(job.model.name):
        return grid
    return [c for c in grid if c.is_clean or not PERTURBATIONS[c.perturbation].white_box]


def _recorded_info(store: ResultsStore, job: Job) -> dict[str, Any]:
    """What an earlier scoring recorded about ``job``'s external model (its ``model.json``, through
    :meth:`ResultsStore.model_info`) when it is this entry, else {} (the digest is checked at
    scoring time; the entry is enough for a plan)."""
    info = store.model_info().get(job.model.label, {})
    return info if (info.get("external") or {}).get("entry") == job.model.external else {}


def cells_of_job(job: Job, run: Any, grid: list[Cell]) -> list[Cell]:
    """The cells ``job`` is scored on: all of ``grid``, less white-box attacks for a model without
    gradients, an external one or a no-learning floor (it gets black-box attacks only, and the
    report says so)."""
    from robustmri.perturb import PERTURBATIONS

    if isinstance(run, ExternalHandle) and not run.gradients:
        return [c for c in grid if c.is_clean or not PERTURBATIONS[c.perturbation].white_box]
    return wanted_cells(job, grid)


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
    from robustmri.train.engine import TrainConfig, open_run, train as train_model
    from robustmri.translate import record_preparation

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
    if (run_dir / "summary.json").is_file():  # finished: reuse it if it is this training, else say so
        handle = open_run(run_dir)
        _check_same_training(handle, config, suite.image_size, processes)
        record_preparation(run_dir, data_spec.prepared, data_spec.description, **_data_identity(suite))
        return handle
    data = load_split_tensors(data_spec, "train", job.source, job.target)
    train_model(config, data, run_dir, resume=True, progress=progress)
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


def check_job(suite: Suite, job: Job, store: ResultsStore, spec: Any, device: str, processes: int = 1) -> Any:
    """For a job whose model is trained (or external): reuse the run (refused if it is another
    training), check that its cached cells come from this model, data, protocol and perturbation
    tables, and record what the model is (``model.json``). Returns the run handle."""
    from robustmri.atomic import locked
    from robustmri.bench.store import cell_provenance, perturbation_params

    grid = cells(suite)
    run = train_job(suite, job, store, spec, device, progress=False, processes=processes)
    params = perturbation_params({c.perturbation for c in grid if not c.is_clean})
    with locked(store.lock(job.run_name)):
        store.check_provenance(job, cell_provenance(suite, run.identity(), run.trained_steps, spec.description), params)
        store.write_model_info(job, model_info(job, run, grid))
    return run


# --------------------------------------------------------------------------------------- tasks


def train(task: TrainTask) -> str:
    """Run ``task``: train its model (resumable from the last checkpoint) or reuse the finished
    run. Returns the run name."""
    suite = suite_from_dict(task.suite)
    job = find_job(suite, task.run_name)
    spec = suite_data(suite, task.cache)
    train_job(suite, job, ResultsStore(task.out), spec, task.device, progress=task.progress,
              processes=task.processes, compile=task.compile)
    return task.run_name


def score(task: ScoreTask) -> int:
    """Run ``task``: score its model on its cells, writing each cell atomically; a cell already
    written is skipped. Returns the number of cells computed."""
    from robustmri.atomic import locked
    from robustmri.bench.scoring import EvalSettings, score_cell
    from robustmri.bench.store import sample_index
    from robustmri.clinical import clinical_frame
    from robustmri.device import resolve_device
    from robustmri.progress import progress_bar

    suite = suite_from_dict(task.suite)
    job = find_job(suite, task.run_name)
    store = ResultsStore(task.out)
    spec = suite_data(suite, task.cache)
    run = check_job(suite, job, store, spec, task.device, task.processes)
    wanted = set(task.stems)
    todo = [c for c in cells_of_job(job, run, cells(suite)) if c.file_stem in wanted and not store.has_cell(job, c)]
    if not todo:
        return 0
    dev = resolve_device(task.device)
    test = _test_tensors(suite, task.cache, spec, job)
    with locked(store.lock("samples")):
        store.write_pair(job, test)
    model, _ = run.load(device=dev)
    if isinstance(run, ExternalHandle):
        model.check_range(test.source[:32].to(dev))
    settings = EvalSettings.from_suite(suite)
    where = sample_index(test)
    clean: dict[int, Any] = {}  # the clean outputs, shared by this model's cells (output stability)
    if suite.clinical and test.labels is None:
        raise DataError(f"suite {suite.name} asks for clinical scores (eval.clinical) but {spec.prepared} has no tissue "
                        "labels (a seg file per subject): use data that have them, or set eval.clinical = false")
    segmenter = _segmenter(suite, task.cache, store, spec, job, dev) if suite.clinical else None
    bar = progress_bar(total=len(todo), desc=f"bench {suite.name}: {job.model.label} {job.direction} s{job.seed}", unit="cell",
                       enabled=task.progress)
    computed = 0
    for cell in todo:
        if store.has_cell(job, cell):  # written meanwhile by another task
            bar.update(1)
            continue
        scores = score_cell(model, test, cell, settings, dev, sample_index=where, clean_cache=clean, keep=suite.clinical)
        if suite.clinical:
            store.write_clinical(job, cell, clinical_frame(scores.predictions, test, segmenter))
        store.write_cell(job, cell, scores.frame, scores.sample)
        computed += 1
        bar.set_postfix_str(f"{cell.perturbation} {cell.severity}", refresh=False)
        bar.update(1)
    bar.close()
    return computed


# ------------------------------------------------------------------------------ the task graph


def plan_tasks(
    suite: Suite,
    out: str | os.PathLike[str],
    job_list: list[Job] | None = None,
    *,
    processes: int = 1,
    chunks: int = 1,
    device: str = "cpu",
    cache: str | os.PathLike[str] | None = None,
    compile: bool = False,
    progress: bool = False,
) -> list[Task]:
    """What must still run for ``job_list`` (default: every job of ``suite``) into ``out``: a
    :class:`TrainTask` per job without a finished run, then the :class:`ScoreTask` s of the cells
    not written yet, split into at most ``chunks`` tasks per job; a job's scoring waits for its
    training (``after``). This is the one place where that dependency is stated: every executor
    runs this list. Reads only the results folder (fast: no data, no model). A finished run
    trained with another number of DDP processes than ``processes`` is refused here, before
    anything runs."""
    import math

    from robustmri.train.engine import open_run

    store = ResultsStore(out)
    grid = cells(suite)
    definition = suite.to_dict()
    common = dict(suite=definition, out=str(store.out), cache=str(cache) if cache is not None else None, device=device,
                  processes=processes, progress=progress)
    trainings: list[Task] = []
    scorings: list[Task] = []
    for job in jobs(suite) if job_list is None else job_list:
        trained = job.model.external is not None or (store.run_dir(job) / "summary.json").is_file()
        if trained and job.model.external is None:
            check_processes(open_run(store.run_dir(job)), processes)
        if not trained:
            trainings.append(TrainTask(run_name=job.run_name, compile=compile, **common))
        missing = [c.file_stem for c in wanted_cells(job, grid, store) if not store.has_cell(job, c)]
        if missing:
            size = math.ceil(len(missing) / min(max(chunks, 1), len(missing)))
            for i in range(0, len(missing), size):
                scorings.append(ScoreTask(run_name=job.run_name, stems=tuple(missing[i : i + size]),
                                          after=None if trained else job.run_name, **common))
    return trainings + scorings


def format_plan(suite: Suite, tasks: list[Task], resources: str = "") -> str:
    """The task list as text: one line per training, one per job's scoring, then totals."""
    lines = [f"suite {suite.name}: {len(jobs(suite))} (model, direction, seed) jobs x {len(cells(suite))} cells"
             + (f"; {resources}" if resources else "")]
    scoring: dict[str, list[ScoreTask]] = {}
    for t in tasks:
        if isinstance(t, TrainTask):
            lines.append(f"  train  {_describe(suite, t.run_name)}")
        else:
            scoring.setdefault(t.run_name, []).append(t)
    for run_name, parts in scoring.items():
        n = sum(len(t.stems) for t in parts)
        dep = " after its training" if parts[0].after else ""
        lines.append(f"  score  {_describe(suite, run_name)}: {n} cells in {len(parts)} task(s){dep}")
    n_train = sum(isinstance(t, TrainTask) for t in tasks)
    n_score = sum(isinstance(t, ScoreTask) for t in tasks)
    n_cells = sum(len(t.stems) for t in tasks if isinstance(t, ScoreTask))
    lines.append(f"total: {n_train} training task(s), {n_score} scoring task(s), {n_cells} cells to compute"
                 + ("" if tasks else " (nothing to do: results complete)"))
    return "\n".join(lines)


def _describe(suite: Suite, run_name: str) -> str:
    job = find_job(suite, run_name)
    return f"{job.model.label} {job.direction} seed {job.seed}"
