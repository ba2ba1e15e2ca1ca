"""The bench's driver: prepare -> plan the tasks -> hand them to an executor -> collect, for one suite.

The driver owns what every executor shares: the data (prepared once, here), the task list
(:func:`robustmri.bench.tasks.plan_tasks`: trainings, and scorings that wait for them), the
provenance checks of runs trained before, the manifest (``running``, then ``complete``,
``interrupted`` or ``failed``) and ``results.csv``. The executor
(:mod:`robustmri.bench.executors`: ``local``, ``local --jobs N``, ``submitit-local``, ``slurm``)
only runs the tasks.

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

from robustmri.bench.executors import Executor, make_executor
from robustmri.bench.plan import shard_jobs
from robustmri.bench.store import ResultsStore, mark_interrupted
from robustmri.bench.store import merge_results as _merge_cells
from robustmri.bench.suite import Suite
from robustmri.bench.tasks import TasksFailed, TrainTask, check_job, plan_tasks, shared_inputs, suite_data
from robustmri.errors import ConfigError

__all__ = ["merge_results", "run_suite"]


def run_suite(
    suite: Suite,
    out: str | os.PathLike[str],
    device: str | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    cache: str | os.PathLike[str] | None = None,
    compile: bool = False,
    executor: Executor | None = None,
) -> Path:
    """Run ``suite`` into ``out`` (resumable, incremental) with ``executor`` (default: ``local``,
    this process); returns the results folder with its ``results.csv`` and manifest. The report and
    the leaderboard entries are composed from that folder afterwards
    (:func:`robustmri.publish.publish`): the runner never builds them. Interrupted (Ctrl-C), it
    leaves every finished checkpoint and cell and marks the manifest ``interrupted``.
    ``compile``: train with compiled networks (torch.compile; same results to float precision)."""
    try:
        with shared_inputs():  # the data are resolved once, here, for the tasks run in this process
            return _run_suite(suite, out, device, shard, progress, cache, compile, executor or make_executor("local"))
    except (KeyboardInterrupt, TasksFailed):
        mark_interrupted(out)
        raise
    except OSError as exc:  # a full disk, a read-only folder, ...: the manifest says why it stopped
        from robustmri.errors import os_error_message

        mark_interrupted(out, "failed", os_error_message(exc))
        raise


def _run_suite(
    suite: Suite, out: str | os.PathLike[str], device: str | None, shard: tuple[int, int], progress: bool,
    cache: str | os.PathLike[str] | None, compile: bool, executor: Executor,
) -> Path:
    store = ResultsStore(out)
    if store.out.exists() and not store.out.is_dir():
        raise ConfigError(f"--out {store.out} is a file: pass a folder for the results")
    blocking = next((p for p in store.out.resolve().parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ConfigError(f"--out {store.out}: {blocking} is a file, not a folder: choose another --out")
    task_device = executor.task_device(device or suite.device)
    dev = executor.manifest_device(task_device)  # a bad device or bad data is refused before --out is created
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    spec = suite_data(suite, cache, progress)
    timings["data_s"] = round(time.perf_counter() - t0, 3)
    store.out.mkdir(parents=True, exist_ok=True)
    store.clean_stale_temporaries()
    my_jobs = shard_jobs(suite, shard)
    store.write_manifest(suite, dev, shard, spec.description, timings, status="running")
    tasks = plan_tasks(suite, store.out, my_jobs, processes=executor.processes, chunks=executor.chunks,
                       device=task_device, cache=cache, compile=compile, progress=progress)
    to_train = {t.run_name for t in tasks if isinstance(t, TrainTask)}
    # runs trained before (and external models, imported and probed here, so that a bad one is
    # refused before anything is trained): cached cells must come from this model, data, protocol
    # and these tables, checked before any task runs
    for job in sorted(my_jobs, key=lambda j: j.model.external is None):
        if job.run_name not in to_train:
            check_job(suite, job, store, spec, task_device, executor.processes)
    if executor.prints_plan:
        from robustmri.bench.tasks import format_plan

        executor.settings.echo(format_plan(suite, tasks, executor.describe()))
    t_run = time.perf_counter()
    computed = executor.run(tasks, store.out / executor.name)
    for job in my_jobs:  # trained by this run and scored by no task (its cells were all there)
        if job.run_name in to_train and not any(t.run_name == job.run_name and t.kind == "score" for t in tasks):
            check_job(suite, job, store, spec, task_device, executor.processes)
    timings.update(executor.timings or {"run_s": round(time.perf_counter() - t_run, 3)})
    store.collect()
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    store.write_manifest(suite, dev, shard, spec.description, timings, status="complete", computed_cells=computed)
    return store.out


def merge_results(out: str | os.PathLike[str], shards: list[str | os.PathLike[str]]) -> Path:
    """Join the results of ``--shard`` folders into ``out`` (validated before anything is written,
    see :func:`robustmri.bench.store.merge_results`); publish its report afterwards."""
    return _merge_cells(out, shards)
