"""Resources of a cluster executor's jobs (``--executor slurm`` and a suite's ``[slurm]`` table):
plain settings, validated here so that the suite parser and the executor share one definition."""

from __future__ import annotations

from dataclasses import dataclass

from robustmri.errors import ConfigError

__all__ = ["SlurmOptions"]


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of every job: ``partition`` (None: the cluster's default), ``gpus`` per job,
    ``cpus`` per task, ``mem_gb`` per task, ``time_min`` limit per job, ``eval_tasks`` array tasks
    per model's evaluation, ``poll_s`` seconds between state checks."""

    partition: str | None = None
    gpus: int = 0
    cpus: int = 2
    mem_gb: float = 8.0
    time_min: int = 240
    eval_tasks: int = 4
    poll_s: float = 5.0
    #: processes of a training job (DDP, one per GPU); None: ``max(1, gpus)``
    train_processes: int | None = None

    @property
    def processes(self) -> int:
        return self.train_processes if self.train_processes is not None else max(1, self.gpus)

    def check(self) -> None:
        for name in ("cpus", "eval_tasks", "time_min"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.train_processes is not None and self.train_processes < 1:
            raise ConfigError(f"--train-processes must be >= 1, got {self.train_processes}")
        if self.gpus > 0 and self.processes not in (1, self.gpus):
            raise ConfigError(f"--train-processes {self.processes} with --gpus {self.gpus}: use one process per GPU")
        if self.gpus < 0 or self.mem_gb <= 0:
            raise ConfigError(f"--gpus must be >= 0 and --mem-gb > 0, got {self.gpus} and {self.mem_gb}")
