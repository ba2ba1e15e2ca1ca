"""``robustmri bench --executor slurm``: a suite as SLURM jobs, through submitit.

Why submitit: it is what research groups already use to put Python calls on SLURM (directly or
through Hydra's launcher); it writes the sbatch script, pickles *our own* call (never a user's
file), keeps every job's stdout/stderr, and handles job arrays. robustmri adds what a benchmark
needs on top:

- one **training job** per (model, direction, seed) that is not trained yet, with the resources
  asked for (partition, GPUs, CPUs, memory, time limit); with several GPUs (or
  ``train_processes``) it runs one process per GPU, and submitit's environment helper sets what
  torchrun would (rank, world size, master address), so the engine trains with DDP;
- its **evaluation** as a job array of ``eval_tasks`` tasks (the missing cells split evenly),
  started only after the training job succeeded (``--dependency=afterok``); each task writes its
  cells atomically into the shared results folder and skips a cell that is already there, so a
  cell is computed once;
- the command waits, showing job states (from ``squeue``, which every cluster has; ``sacct``
  needs accounting and is not used); a job that fails or disappears (killed, preempted, node
  lost) stops the wait with its log tail and command, after the others finished, and the
  evaluations that depended on a failed training are cancelled;
- a re-run submits only what is missing (trained runs and written cells are kept), then
  ``results.csv`` is built locally as after a local run (the same bytes), and the caller
  publishes the report and the leaderboard entries from it (:func:`robustmri.publish.publish`).

Each task sizes torch's thread pool to ``SLURM_CPUS_PER_TASK`` (:mod:`robustmri.threads`).
"""

from __future__ import annotations

import fcntl
import math
import os
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustmri.bench.plan import Cell, Job, cells, jobs
from robustmri.bench.resources import SlurmOptions
from robustmri.bench.suite import Suite
from robustmri.errors import ConfigError, DataError, DependencyError

__all__ = ["SlurmOptions", "SlurmTask", "plan_slurm", "format_plan", "run_slurm"]


@dataclass
class SlurmTask:
    """One planned SLURM job: ``kind`` "train" (one job) or "eval" (``chunks``: one array task
    per list of cells); ``after_train``: the evaluation waits for this job's training."""

    kind: str
    job: Job
    chunks: list[list[Cell]] = field(default_factory=list)
    after_train: bool = False


def plan_slurm(suite: Suite, out: Path, opts: SlurmOptions) -> list[SlurmTask]:
    """What must still run: trainings without a finished run, evaluations of missing cells
    (every cell of a job that will be trained). Reads only the results folder (fast: no data).
    A finished run trained with another number of DDP processes than ``opts`` asks is refused
    here, before anything is submitted."""
    from robustmri.bench.runner import check_processes
    from robustmri.bench.store import ResultsStore
    from robustmri.train.engine import open_run

    from robustmri.models.registry import is_differentiable
    from robustmri.perturb import PERTURBATIONS

    store = ResultsStore(out)
    grid = cells(suite)
    plan: list[SlurmTask] = []
    for job in jobs(suite):
        trained = job.model.external is not None or (store.run_dir(job) / "summary.json").is_file()
        if trained and job.model.external is None:
            check_processes(open_run(store.run_dir(job)), opts.processes)
        if not trained:
            plan.append(SlurmTask("train", job))
        wanted = grid if job.model.external is not None or is_differentiable(job.model.name) else [
            c for c in grid if c.is_clean or not PERTURBATIONS[c.perturbation].white_box]  # a floor: no white-box attacks
        missing = [c for c in wanted if not store.has_cell(job, c)]
        if missing:
            n = min(opts.eval_tasks, len(missing))
            size = math.ceil(len(missing) / n)
            chunks = [missing[i : i + size] for i in range(0, len(missing), size)]
            plan.append(SlurmTask("eval", job, chunks, after_train=not trained))
    return plan


def format_plan(suite: Suite, plan: list[SlurmTask], opts: SlurmOptions) -> str:
    """The job plan as text: one line per job, then totals."""
    res = (f"partition {opts.partition or '(default)'}, {opts.gpus} GPU(s), {opts.cpus} CPU(s), {opts.mem_gb:g} GB, "
           f"{opts.time_min} min; training: {opts.processes} process(es)")
    lines = [f"suite {suite.name}: {len(jobs(suite))} (model, direction, seed) jobs x {len(cells(suite))} cells; "
             f"each SLURM job: {res}"]
    for t in plan:
        what = f"{t.job.model.label} {t.job.direction} seed {t.job.seed}"
        if t.kind == "train":
            lines.append(f"  train  {what}")
        else:
            n = sum(len(c) for c in t.chunks)
            dep = " after its training" if t.after_train else ""
            lines.append(f"  eval   {what}: {n} cells in an array of {len(t.chunks)} task(s){dep}")
    n_train = sum(t.kind == "train" for t in plan)
    n_tasks = sum(len(t.chunks) for t in plan if t.kind == "eval")
    n_cells = sum(len(c) for t in plan if t.kind == "eval" for c in t.chunks)
    lines.append(f"total: {n_train} training job(s), {n_tasks} evaluation task(s), {n_cells} cells to compute"
                 + ("" if plan else " (nothing to do: results complete)"))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ tasks


@contextmanager
def _locked(path: Path):  # type: ignore[no-untyped-def]
    """An exclusive advisory lock on ``path`` (created), for read-modify-write of shared files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _job(suite: Suite, run_name: str) -> Job:
    for j in jobs(suite):
        if j.run_name == run_name:
            return j
    raise ConfigError(f"no job {run_name!r} in suite {suite.name}")  # pragma: no cover - internal


def train_task(
    suite_dict: dict[str, Any], run_name: str, out: str, cache: str | None, device: str, processes: int = 1, compile: bool = False,
) -> str:
    """SLURM training job: train ``run_name`` of the suite into ``out`` (resumable) with ``processes``
    DDP processes (the job's tasks)."""
    from robustmri.bench.runner import train_job, resolve_suite_data
    from robustmri.bench.store import ResultsStore
    from robustmri.bench.suite import suite_from_dict
    from robustmri.threads import configure_threads

    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        import submitit

        # one process per task (per GPU): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT for the
        # engine's DDP path (robustmri.train.distributed), as torchrun would set them
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    configure_threads()
    suite = suite_from_dict(suite_dict)
    job = _job(suite, run_name)
    spec = resolve_suite_data(suite, cache)
    train_job(suite, job, ResultsStore(out), spec, device, progress=False, processes=processes, compile=compile)
    return run_name


def eval_task(
    suite_dict: dict[str, Any], run_name: str, stems: list[str], out: str, cache: str | None, device: str, processes: int = 1
) -> int:
    """SLURM evaluation task: score the cells ``stems`` of ``run_name`` (trained with ``processes``
    DDP processes); a cell already written (by an earlier attempt) is skipped. Returns the number
    of cells computed."""
    from robustmri.bench.evaluate import EvalSettings, score_cell
    from robustmri.bench.runner import ExternalHandle, train_job, cells_of_job, model_info, resolve_suite_data
    from robustmri.bench.store import ResultsStore, cell_provenance, perturbation_params, sample_index
    from robustmri.bench.suite import suite_from_dict
    from robustmri.data.resolve import load_split_tensors
    from robustmri.device import resolve_device
    from robustmri.threads import configure_threads

    configure_threads()
    suite = suite_from_dict(suite_dict)
    job = _job(suite, run_name)
    store = ResultsStore(out)
    grid = cells(suite)
    spec = resolve_suite_data(suite, cache)
    run = train_job(suite, job, store, spec, device, progress=False, processes=processes)  # trained already: reused, checked
    todo = [c for c in cells_of_job(job, run, grid) if c.file_stem in set(stems)]
    dev = resolve_device(device)
    params = perturbation_params({c.perturbation for c in grid if not c.is_clean})
    with _locked(store.cell_dir(job).parent / f".{store.cell_dir(job).name}.lock"):
        store.check_provenance(job, cell_provenance(suite, run.identity(), run.trained_steps, spec.description), params)
        store.write_model_info(job, model_info(job, run, grid))
    test = load_split_tensors(spec, suite.eval_split, job.source, job.target)
    with _locked(store.out / "samples" / ".lock"):
        store.write_pair(job, test)
    model, _ = run.load(device=dev)
    if isinstance(run, ExternalHandle):
        model.check_range(test.source[:32].to(dev))
    settings = EvalSettings.from_suite(suite)
    where = sample_index(test)
    clean: dict[int, Any] = {}
    computed = 0
    for cell in todo:
        if store.has_cell(job, cell):
            continue
        scores = score_cell(model, test, cell, settings, dev, sample_index=where, clean_cache=clean)
        store.write_cell(job, cell, scores.frame, scores.sample)
        computed += 1
    return computed


# ------------------------------------------------------------------------------------------ driver


def _squeue(ids: list[str]) -> dict[str, str]:
    """job id (array tasks as ``12_3``) -> state, for the jobs still known to the scheduler."""
    if not ids:
        return {}
    base = sorted({i.split("_")[0] for i in ids})
    try:
        text = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(base)], capture_output=True, text=True,
                              timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {i: "UNKNOWN" for i in ids}  # scheduler unreachable for a moment: keep waiting
    states = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def _tail(path: Path, n: int = 12) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return "(no log)"


def run_slurm(
    suite: Suite,
    out: str | os.PathLike[str],
    opts: SlurmOptions,
    device: str | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], Any] = print,
    compile: bool = False,
) -> Path:
    """Run ``suite`` on SLURM into ``out`` (see the module docstring) and return the folder.
    ``compile``: the training jobs compile their networks (as :func:`robustmri.bench.run_suite`)."""
    try:
        import submitit
    except ImportError:
        raise DependencyError("--executor slurm needs submitit: pip install submitit") from None
    from robustmri.bench.runner import resolve_suite_data
    from robustmri.bench.store import ResultsStore

    import torch

    opts.check()
    store = ResultsStore(out)
    # the jobs' device: the suite's (or --device) when GPUs are asked for, else the CPU; the
    # submitting node need not have a GPU, so the manifest records the CPU
    task_device = (device or suite.device) if opts.gpus > 0 else "cpu"
    if opts.gpus == 0 and (device or "cpu").startswith("cuda"):
        raise ConfigError(f"--device {device} asks for a GPU but --gpus is 0: pass --gpus 1")
    manifest_dev = torch.device("cpu")
    spec = resolve_suite_data(suite, cache, progress)  # once, here: the tasks find it in the shared cache
    store.out.mkdir(parents=True, exist_ok=True)
    store.clean_stale_temporaries()
    store.write_manifest(suite, manifest_dev, (0, 1), spec.description, {}, status="running")
    plan = plan_slurm(suite, store.out, opts)
    echo(format_plan(suite, plan, opts))
    cache_s = str(cache) if cache is not None else None
    logs = store.out / "slurm"
    executor = submitit.AutoExecutor(folder=logs / "%j", cluster="slurm")
    base = dict(timeout_min=opts.time_min, cpus_per_task=opts.cpus, mem_gb=opts.mem_gb, slurm_job_name=f"rmri-{suite.name}")
    if opts.partition:
        base["slurm_partition"] = opts.partition
    if opts.gpus:
        base["gpus_per_node"] = opts.gpus
    submitted: list[tuple[Any, str, str]] = []  # (submitit job, description, command)
    train_ids: dict[str, str] = {}
    suite_dict = suite.to_dict()
    for t in plan:
        if t.kind != "train":
            continue
        executor.update_parameters(**base, tasks_per_node=opts.processes, slurm_additional_parameters={})
        j = executor.submit(train_task, suite_dict, t.job.run_name, str(store.out), cache_s, task_device, opts.processes, compile)
        train_ids[t.job.run_name] = str(j.job_id)
        submitted.append((j, f"train {t.job.run_name}", f"train_task(..., {t.job.run_name!r})"))
    dependents: dict[str, list[Any]] = {}
    for t in plan:
        if t.kind != "eval":
            continue
        extra = {"dependency": f"afterok:{train_ids[t.job.run_name]}"} if t.job.run_name in train_ids else {}
        evaluation = {**base, "gpus_per_node": min(1, opts.gpus)} if opts.gpus else base  # scoring uses one device
        executor.update_parameters(**evaluation, tasks_per_node=1, slurm_additional_parameters=extra)
        with executor.batch():
            arr = [executor.submit(eval_task, suite_dict, t.job.run_name, [c.file_stem for c in chunk], str(store.out),
                                   cache_s, task_device, opts.processes) for chunk in t.chunks]
        for j, chunk in zip(arr, t.chunks):
            desc = f"eval {t.job.run_name} ({len(chunk)} cells: {chunk[0].file_stem} .. {chunk[-1].file_stem})"
            submitted.append((j, desc, f"eval_task(..., {t.job.run_name!r}, {[c.file_stem for c in chunk]!r})"))
        if t.job.run_name in train_ids:
            dependents.setdefault(train_ids[t.job.run_name], []).extend(arr)

    failures: list[str] = []
    pending = {str(j.job_id): (j, desc, cmd) for j, desc, cmd in submitted}
    computed = 0
    last = ""
    while pending:
        states = _squeue(list(pending))
        for jid in list(pending):
            state = states.get(jid)
            if state is not None and state not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                                                   "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"):
                continue
            j, desc, cmd = pending.pop(jid)
            if state is None:
                time.sleep(0.5)  # the result file is written before the job leaves the queue; let it land
            result_file = Path(j.paths.result_pickle)
            if result_file.is_file():
                try:
                    values = j.results()  # our own pickles, written by our task (one per process of the job)
                    computed += sum(v for v in values[:1] if isinstance(v, int) and not isinstance(v, bool))
                    continue
                except Exception as exc:  # noqa: BLE001 - the task's exception, re-raised by submitit
                    failures.append(f"SLURM job {jid} ({desc}) failed: {str(exc).strip().splitlines()[-1][:300]}; "
                                    f"log {j.paths.stderr}")
            else:
                failures.append(f"SLURM job {jid} ({desc}) ended without a result ({state or 'gone from the queue'}: "
                                f"killed, preempted or its node lost); command {cmd}; log tail: {_tail(Path(j.paths.stderr))}")
            for dep in dependents.get(jid, []):  # evaluations waiting for a failed training can never start
                subprocess.run(["scancel", str(dep.job_id)], capture_output=True, check=False)
        if progress and pending:
            counts: dict[str, int] = {}
            for jid in pending:
                counts[states.get(jid, "PENDING")] = counts.get(states.get(jid, "PENDING"), 0) + 1
            line = "slurm: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) + f"; {len(failures)} failed"
            if line != last:
                echo(line)
                last = line
        if pending:
            time.sleep(opts.poll_s)
    if failures:
        from robustmri.bench.store import mark_interrupted

        mark_interrupted(store.out)
        raise DataError(f"{len(failures)} SLURM job(s) did not finish; rerun the same command to compute only what is "
                        f"missing. First: {failures[0]}")
    store.collect()
    store.write_manifest(suite, manifest_dev, (0, 1), spec.description, {}, status="complete",
                         computed_cells=computed)
    return store.out

