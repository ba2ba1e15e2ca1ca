"""Executors: who runs a suite's tasks, chosen with ``robustmri bench --executor``.

An executor gets the task list of :func:`robustmri.bench.tasks.plan_tasks` (trainings, and scorings
that may wait for a training: ``task.after``) and runs every task once, respecting that order. It
does nothing else: data preparation, the provenance checks, the manifest, resume and
``results.csv`` belong to the driver (:func:`robustmri.bench.runner.run_suite`) and serve every
executor alike.

- ``local`` (the default): this process, one task after the other, with progress bars. With
  ``jobs=N`` (``--jobs N``) independent tasks run side by side in N worker processes, each pinned
  to its share of this process's CPUs (as benchopt's ``--n-jobs``); torch sizes its threads to
  that share, which changes the order of float sums and so, within the drift check's training
  tolerances, the trained weights (docs/drift.md).
- ``submitit-local``: submitit's local executor (every task a subprocess, as a SLURM job would run
  it, with its log under ``<out>/submitit-local/``); ``jobs`` at a time.
- ``slurm``: SLURM jobs through submitit (:mod:`robustmri.bench.slurm`).

Another back-end (a Ray or Dask cluster, a pool of GPUs) is a subclass of :class:`Executor` that
implements :meth:`Executor.run`, registered with :func:`register_executor` (docs/architecture.md).
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from robustmri.bench.resources import SlurmOptions
from robustmri.bench.tasks import ScoreTask, Task, TasksFailed, TrainTask, score, shared_inputs, train
from robustmri.errors import ConfigError, RobustMRIError

__all__ = [
    "EXECUTORS", "Executor", "ExecutorSettings", "LocalExecutor", "SlurmExecutor", "SubmititLocalExecutor", "TasksFailed",
    "dependency_order", "make_executor", "register_executor", "run_pinned", "run_task",
]


@dataclass(frozen=True)
class ExecutorSettings:
    """What the command line says about the executor: ``jobs`` tasks at a time (``local``,
    ``submitit-local``), ``slurm`` resources, ``echo`` where status lines go."""

    jobs: int = 1
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    echo: Callable[[str], Any] = print


def run_task(task: Task) -> Any:
    """Run one task in this process: :func:`~robustmri.bench.tasks.train` or
    :func:`~robustmri.bench.tasks.score`."""
    return train(task) if isinstance(task, TrainTask) else score(task)


def run_pinned(task: Task, cpus: Sequence[int] | None = None) -> Any:
    """Run ``task`` in this (worker) process, pinned to ``cpus`` (None: as it is), with torch's
    threads sized to them (:func:`robustmri.threads.configure_threads`)."""
    from robustmri.threads import configure_threads

    if cpus:
        os.sched_setaffinity(0, set(cpus))
    configure_threads()
    return run_task(task)


def dependency_order(tasks: Iterable[Task]) -> list[Task]:
    """``tasks`` in an order that runs every training before the scorings that wait for it
    (trainings first, each group in plan order)."""
    tasks = list(tasks)
    return [t for t in tasks if isinstance(t, TrainTask)] + [t for t in tasks if not isinstance(t, TrainTask)]


def cpu_slots(n: int) -> list[list[int]]:
    """This process's CPUs split into ``n`` disjoint, contiguous sets (round-robin single CPUs
    when there are fewer CPUs than ``n``)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    if n >= len(cpus):
        return [[cpus[i % len(cpus)]] for i in range(n)]
    base, extra = divmod(len(cpus), n)
    out, start = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        out.append(cpus[start : start + size])
        start += size
    return out


class Executor(ABC):
    """Runs a task list. Subclasses implement :meth:`run`; the class attributes say what the
    planner must know: ``processes`` (DDP processes per training), ``chunks`` (scoring tasks per
    job)."""

    name: ClassVar[str] = ""
    processes: int = 1
    chunks: int = 1

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or ExecutorSettings()
        #: seconds spent per kind of task, where the executor can tell (the manifest records them)
        self.timings: dict[str, float] = {}

    def task_device(self, asked: str) -> str:
        """The device the tasks run on, for the device the suite or ``--device`` asks."""
        return asked

    def manifest_device(self, task_device: str) -> torch.device:
        """The device the manifest records; resolving it refuses a device this machine lacks."""
        from robustmri.device import resolve_device

        return resolve_device(task_device)

    def describe(self) -> str:
        """The resources of every task, for the plan printed by ``--dry-run`` and before a run."""
        return f"executor {self.name}"

    @property
    def prints_plan(self) -> bool:
        """Whether the driver prints the task list before handing it over (through
        ``settings.echo``): yes for executors that run tasks out of sight."""
        return True

    @abstractmethod
    def run(self, tasks: Sequence[Task], folder: Path) -> int:
        """Run every task once (``folder``: where the executor may keep its logs, inside the
        results folder), a scoring only after the training it waits for (``task.after``);
        returns the number of cells computed. Raises :class:`TasksFailed` when some did not
        finish (after the others finished), or the failing task's own error."""


EXECUTORS: dict[str, Callable[[ExecutorSettings], Executor]] = {}


def register_executor(name: str) -> Callable[[type[Executor]], type[Executor]]:
    """Class decorator: make ``robustmri bench --executor <name>`` build this executor class
    (constructed with the command line's :class:`ExecutorSettings`)."""

    def deco(cls: type[Executor]) -> type[Executor]:
        cls.name = name
        EXECUTORS[name] = cls
        return cls

    return deco


def make_executor(name: str, settings: ExecutorSettings | None = None) -> Executor:
    """The executor registered as ``name``, built from ``settings``."""
    from robustmri.plugins import load_plugins

    load_plugins()
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r}: use one of {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name](settings or ExecutorSettings())


# ------------------------------------------------------------------- running a graph of handles


class _Graph:
    """The bookkeeping every out-of-process executor shares: which tasks may start (their
    training finished), which failed, and the scorings dropped because their training failed."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.waiting = list(dependency_order(tasks))
        self.finished: set[str] = set()  # run names of finished trainings
        self.failed_runs: set[str] = set()
        self.failures: list[tuple[Task, BaseException | str]] = []
        self.computed = 0

    def ready(self) -> list[Task]:
        out = [t for t in self.waiting if t.after is None or t.after in self.finished]
        for t in out:
            self.waiting.remove(t)
        dropped = [t for t in self.waiting if t.after in self.failed_runs]
        for t in dropped:
            self.waiting.remove(t)
        return out

    def done(self, task: Task, result: Any) -> None:
        if isinstance(task, TrainTask):
            self.finished.add(task.run_name)
        elif isinstance(result, int):
            self.computed += result

    def fail(self, task: Task, error: BaseException | str) -> None:
        self.failures.append((task, error))
        if isinstance(task, TrainTask):
            self.failed_runs.add(task.run_name)

    def raise_failures(self) -> None:
        if not self.failures:
            return
        task, error = self.failures[0]
        if isinstance(error, RobustMRIError) and len(self.failures) == 1:
            raise error  # one task refused its input: its own one-line message
        text = error if isinstance(error, str) else f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
        raise TasksFailed(f"{len(self.failures)} task(s) did not finish; rerun the same command to compute only what is "
                          f"missing. First: {task.name}: {text}")


@register_executor("local")
class LocalExecutor(Executor):
    """This process (``jobs`` 1, the default), or ``jobs`` worker processes, each pinned to its
    share of the CPUs (:func:`cpu_slots`)."""

    @property
    def prints_plan(self) -> bool:
        return self.settings.jobs > 1  # in this process, the progress bars say it

    def describe(self) -> str:
        jobs = self.settings.jobs
        return "executor local: this process" if jobs == 1 else f"executor local: {jobs} worker processes, CPUs {cpu_slots(jobs)}"

    def run(self, tasks: Sequence[Task], folder: Path) -> int:
        if self.settings.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.settings.jobs}")
        if self.settings.jobs == 1:
            return self._in_process(tasks)
        return self._in_workers(tasks)

    def _in_process(self, tasks: Sequence[Task]) -> int:
        computed = 0
        self.timings = {"train_s": 0.0, "eval_s": 0.0}
        with shared_inputs():
            for task in dependency_order(tasks):
                t0 = time.perf_counter()
                result = run_task(task)
                self.timings["train_s" if isinstance(task, TrainTask) else "eval_s"] += time.perf_counter() - t0
                computed += result if isinstance(task, ScoreTask) else 0
        self.timings = {k: round(v, 3) for k, v in self.timings.items()}
        return computed

    def _in_workers(self, tasks: Sequence[Task]) -> int:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

        n = self.settings.jobs
        slots = cpu_slots(n)
        free = list(range(n))
        graph = _Graph([_quiet(t) for t in tasks])
        echo = self.settings.echo
        pending: list[Task] = []
        running: dict[Future, tuple[Task, int]] = {}
        total, ended = len(tasks), 0
        # spawn, not fork: a forked child inherits this process's torch thread pool and locks
        with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn")) as pool:
            while True:
                pending += graph.ready()
                while free and pending:
                    task, slot = pending.pop(0), free.pop(0)
                    running[pool.submit(run_pinned, task, slots[slot])] = (task, slot)
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    task, slot = running.pop(fut)
                    free.append(slot)
                    ended += 1
                    try:
                        graph.done(task, fut.result())
                        echo(f"local: {ended}/{total} done: {task.name}")
                    except Exception as exc:  # noqa: BLE001 - collected, raised once the others end
                        graph.fail(task, exc)
                        echo(f"local: {ended}/{total} failed: {task.name}: {exc}")
        graph.raise_failures()
        return graph.computed


def _quiet(task: Task) -> Task:
    """``task`` without a progress bar (a worker's bar would garble the parent's terminal)."""
    from dataclasses import replace

    return replace(task, progress=False)


@register_executor("submitit-local")
class SubmititLocalExecutor(Executor):
    """submitit's local executor: every task a subprocess (``jobs`` at a time; pinned to its
    share of the CPUs when ``jobs`` > 1), logs and pickles under ``<out>/submitit-local/<id>/``."""

    timeout_min = 7 * 24 * 60  # submitit's local default (2 min) would kill any training

    def describe(self) -> str:
        return f"executor submitit-local: {self.settings.jobs} subprocess(es) at a time"

    def run(self, tasks: Sequence[Task], folder: Path) -> int:
        try:
            import submitit
        except ImportError:
            raise ConfigError("--executor submitit-local needs submitit: pip install submitit") from None
        n = self.settings.jobs
        if n < 1:
            raise ConfigError(f"--jobs must be >= 1, got {n}")
        executor = submitit.LocalExecutor(folder=Path(folder) / "%j")
        executor.update_parameters(timeout_min=self.timeout_min)
        slots = cpu_slots(n) if n > 1 else [None]
        free = list(range(len(slots)))
        graph = _Graph([_quiet(t) for t in tasks])
        pending: list[Task] = []
        running: list[tuple[Any, Task, int]] = []
        echo = self.settings.echo
        total, ended = len(tasks), 0
        while True:
            pending += graph.ready()
            while free and pending:
                task, slot = pending.pop(0), free.pop(0)
                running.append((executor.submit(run_pinned, task, slots[slot]), task, slot))
            if not running:
                break
            time.sleep(0.2)
            for entry in [r for r in running if r[0].done()]:
                job, task, slot = entry
                running.remove(entry)
                free.append(slot)
                ended += 1
                try:
                    graph.done(task, job.result())
                    echo(f"submitit-local: {ended}/{total} done: {task.name}")
                except Exception as exc:  # noqa: BLE001 - submitit re-raises the task's error with its traceback
                    graph.fail(task, f"{str(exc).strip().splitlines()[-1][:300]}; log {job.paths.stderr}")
                    echo(f"submitit-local: {ended}/{total} failed: {task.name} (log {job.paths.stderr})")
        graph.raise_failures()
        return graph.computed


@register_executor("slurm")
class SlurmExecutor(Executor):
    """SLURM jobs through submitit (:mod:`robustmri.bench.slurm`): a job per training (DDP with
    several processes), a job array per model's scoring, ``afterok`` on its training."""

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        super().__init__(settings)
        self.options = self.settings.slurm
        self.options.check()
        self.processes = self.options.processes
        self.chunks = self.options.eval_tasks

    def task_device(self, asked: str) -> str:
        # the jobs' device: the one asked when GPUs are asked for, else the CPU
        if self.options.gpus == 0 and asked.startswith("cuda"):
            raise ConfigError(f"--device {asked} asks for a GPU but --gpus is 0: pass --gpus 1")
        return asked if self.options.gpus > 0 else "cpu"

    def manifest_device(self, task_device: str) -> torch.device:
        return torch.device("cpu")  # the submitting node need not have a GPU

    def describe(self) -> str:
        from robustmri.bench.slurm import describe_resources

        return describe_resources(self.options)

    def run(self, tasks: Sequence[Task], folder: Path) -> int:
        from robustmri.bench.slurm import run_on_slurm

        return run_on_slurm(tasks, self.options, Path(folder), echo=self.settings.echo)
