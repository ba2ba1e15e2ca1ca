"""``robustmri bench --executor slurm``: a suite's tasks as SLURM jobs, through submitit
(:class:`robustmri.bench.executors.SlurmExecutor` hands them over; the driver does the rest).

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
  needs accounting and is not used), and why a pending job waits (SLURM's reason: resources, a
  drained node, its dependency); a job that fails or disappears (killed, preempted, node lost)
  stops the wait with its log tail and command, after the others finished, and the evaluations
  that depended on a failed training are cancelled. So is an evaluation whose dependency SLURM
  says can never be met (``DependencyNeverSatisfied``: its training job was cancelled from
  outside): the wait never hangs on it. A training job whose every process returned (the run is
  saved) but that exited non-zero all the same (a crash at interpreter exit) has its scorings'
  dependency dropped (``scontrol update dependency=``), and they run;
- a re-run submits only what is missing (trained runs and written cells are kept: the task list
  is :func:`robustmri.bench.tasks.plan_tasks`'s, as for every executor), then ``results.csv`` is
  built locally as after a local run (the same bytes).

Each task sizes torch's thread pool to ``SLURM_CPUS_PER_TASK`` (:mod:`robustmri.threads`).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from robustmri.bench.resources import SlurmOptions
from robustmri.bench.tasks import ScoreTask, Task, TasksFailed, TrainTask, score, train
from robustmri.errors import DependencyError

__all__ = ["describe_resources", "run_on_slurm", "score_in_job", "train_in_job"]

_ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE")


def describe_resources(opts: SlurmOptions) -> str:
    """Every job's resources, in one line."""
    return (f"executor slurm: each job partition {opts.partition or '(default)'}, {opts.gpus} GPU(s), {opts.cpus} CPU(s), "
            f"{opts.mem_gb:g} GB, {opts.time_min} min; training: {opts.processes} process(es); "
            f"scoring: up to {opts.eval_tasks} array task(s) per model")


# ------------------------------------------------------------------------------- in the job


def train_in_job(task: TrainTask) -> str:
    """A SLURM training job: :func:`robustmri.bench.tasks.train`, as DDP when the job has several
    tasks (submitit's helper sets the rank, world size and master address, as torchrun would)."""
    from robustmri.threads import configure_threads

    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    configure_threads()
    return train(task)


def score_in_job(task: ScoreTask) -> int:
    """A SLURM array task: :func:`robustmri.bench.tasks.score`, torch sized to the job's CPUs."""
    from robustmri.threads import configure_threads

    configure_threads()
    return score(task)


# ------------------------------------------------------------------------------- the driver


_NEVER = "DependencyNeverSatisfied"


def _squeue(ids: list[str]) -> dict[str, tuple[str, str]]:
    """job id (array tasks as ``12_3``) -> (state, reason), for the jobs still known to the
    scheduler; ``reason`` is SLURM's for a pending job (``Resources``, ``Dependency``,
    ``DependencyNeverSatisfied``, ``ReqNodeNotAvail, ...``), ``None`` when it gives none."""
    if not ids:
        return {}
    base = sorted({i.split("_")[0] for i in ids})
    try:
        text = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ",".join(base)], capture_output=True,
                              text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {i: ("UNKNOWN", "None") for i in ids}  # scheduler unreachable for a moment: keep waiting
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2].strip())
    return states


def _status_line(pending: dict[str, Any], states: dict[str, tuple[str, str]], failed: int) -> str:
    """``slurm: 2 pending (Dependency), 1 running; 0 failed``: counts per state, with SLURM's
    reasons for the pending ones, so a wait on a drained node or a full partition says so."""
    counts: dict[str, int] = {}
    reasons: dict[str, set[str]] = {}
    for jid in pending:
        state, reason = states.get(jid, ("PENDING", "None"))
        counts[state] = counts.get(state, 0) + 1
        if state == "PENDING" and reason not in ("None", "(null)", ""):
            reasons.setdefault(state, set()).add(reason)
    parts = [f"{n} {s.lower()}" + (f" ({'; '.join(sorted(reasons[s]))})" if s in reasons else "")
             for s, n in sorted(counts.items())]
    return "slurm: " + ", ".join(parts) + f"; {failed} failed"


def _tail(path: Path, n: int = 12) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return "(no log)"


def run_on_slurm(tasks: Sequence[Task], opts: SlurmOptions, logs: Path, echo: Callable[[str], Any] = print) -> int:
    """Submit ``tasks`` (a job per training; per model, its scorings as one job array that
    starts ``afterok`` its training), wait for them and return the cells computed. A job that
    fails or disappears raises :class:`~robustmri.bench.tasks.TasksFailed` once the others have
    ended (with its log tail), and the scorings that waited for a failed training are cancelled."""
    try:
        import submitit
    except ImportError:
        raise DependencyError("--executor slurm needs submitit: pip install submitit") from None
    opts.check()
    if not tasks:
        return 0
    name = f"rmri-{tasks[0].suite['name']}"
    executor = submitit.AutoExecutor(folder=logs / "%j", cluster="slurm")
    base = dict(timeout_min=opts.time_min, cpus_per_task=opts.cpus, mem_gb=opts.mem_gb, slurm_job_name=name)
    if opts.partition:
        base["slurm_partition"] = opts.partition
    if opts.gpus:
        base["gpus_per_node"] = opts.gpus
    submitted: list[tuple[Any, Task]] = []
    train_ids: dict[str, str] = {}
    for t in tasks:
        if isinstance(t, TrainTask):
            executor.update_parameters(**base, tasks_per_node=opts.processes, slurm_additional_parameters={})
            j = executor.submit(train_in_job, t)
            train_ids[t.run_name] = str(j.job_id)
            submitted.append((j, t))
    arrays: dict[tuple[str, str | None], list[ScoreTask]] = {}
    for t in tasks:
        if isinstance(t, ScoreTask):
            arrays.setdefault((t.run_name, t.after), []).append(t)
    dependents: dict[str, list[Any]] = {}
    for (run_name, after), parts in arrays.items():
        extra = {"dependency": f"afterok:{train_ids[after]}"} if after in train_ids else {}
        scoring = {**base, "gpus_per_node": min(1, opts.gpus)} if opts.gpus else base  # scoring uses one device
        executor.update_parameters(**scoring, tasks_per_node=1, slurm_additional_parameters=extra)
        with executor.batch():
            arr = [executor.submit(score_in_job, t) for t in parts]
        submitted.extend(zip(arr, parts))
        if after in train_ids:
            dependents.setdefault(train_ids[after], []).extend(arr)

    return _wait(submitted, dependents, opts.poll_s, echo)


def _wait(submitted: Sequence[tuple[Any, Task]], dependents: dict[str, list[Any]], poll_s: float,
          echo: Callable[[str], Any]) -> int:
    """Wait for submitit jobs ``submitted`` (``dependents``: training job id -> the scoring jobs
    that start ``afterok`` it) and return the cells computed; raise
    :class:`~robustmri.bench.tasks.TasksFailed` once every job has ended or been cancelled, if any
    failed, ended without a result or can never start."""
    failures: list[str] = []
    pending = {str(j.job_id): (j, t) for j, t in submitted}
    computed = 0
    last = ""
    saved: set[str] = set()  # training jobs whose every process returned: their runs are on disk
    released: set[str] = set()  # scoring arrays whose dependency was dropped for that reason
    waits_for = {dep: train_jid for train_jid, deps in dependents.items() for dep in (str(d.job_id) for d in deps)}
    while pending:
        states = _squeue(list(pending))
        for jid in list(pending):
            state, reason = states.get(jid, (None, None))
            if state == "PENDING" and reason == _NEVER and waits_for.get(jid) in saved:
                base_id = jid.split("_")[0]
                if base_id not in released:  # the whole array at once
                    subprocess.run(["scontrol", "update", f"jobid={base_id}", "dependency="], capture_output=True,
                                   check=False)
                    released.add(base_id)
                    echo(f"slurm: training job {waits_for[jid]} returned from every process (its run is saved) but "
                         f"exited non-zero; its scoring jobs {base_id} start without the dependency")
                continue
            if state == "PENDING" and reason == _NEVER:
                j, t = pending.pop(jid)
                subprocess.run(["scancel", jid], capture_output=True, check=False)
                train_jid = waits_for.get(jid, "?")
                failures.append(f"SLURM job {jid} ({t.name}) can never start: SLURM says its dependency (training job "
                                f"{train_jid}) was not met: that job failed or was cancelled; cancelled it")
                continue
            if state is not None and state not in _ENDED:
                continue
            j, t = pending.pop(jid)
            if state is None:
                time.sleep(0.5)  # the result file is written before the job leaves the queue; let it land
            if Path(j.paths.result_pickle).is_file():
                try:
                    values = j.results()  # our own pickles, written by our task (one per process of the job)
                    computed += sum(v for v in values[:1] if isinstance(v, int) and not isinstance(v, bool))
                    saved.add(jid)
                    continue
                except Exception as exc:  # noqa: BLE001 - the task's exception, re-raised by submitit
                    failures.append(f"SLURM job {jid} ({t.name}) failed: {str(exc).strip().splitlines()[-1][:300]}; "
                                    f"log {j.paths.stderr}")
            else:
                after = f"; it waited for training job {waits_for[jid]}" if jid in waits_for else ""
                failures.append(f"SLURM job {jid} ({t.name}) ended without a result ({state or 'gone from the queue'}: "
                                f"killed, preempted or its node lost{after}); log tail: {_tail(Path(j.paths.stderr))}")
            for dep in dependents.get(jid, []):  # scorings waiting for a failed training can never start
                subprocess.run(["scancel", str(dep.job_id)], capture_output=True, check=False)
        if pending:
            line = _status_line(pending, states, len(failures))
            if line != last:
                echo(line)
                last = line
            time.sleep(poll_s)
    if failures:
        raise TasksFailed(f"{len(failures)} SLURM job(s) did not finish; rerun the same command to compute only what is "
                          f"missing. First: {failures[0]}")
    return computed
