"""The plan of a suite: its jobs (one trained model per model, direction and seed), its cells
(perturbation x severity, clean first) and shards of the jobs."""

from __future__ import annotations

from dataclasses import dataclass

from robustmri.bench.suite import ModelSpec, Suite
from robustmri.errors import ConfigError
from robustmri.results import CLEAN, label_tag  # label_tag: re-exported (it names run and cell folders)


def direction_tag(source: str, target: str) -> str:
    """Path-safe form of a direction: ``t1_to_t2``."""
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
    def label_tag(self) -> str:
        """Path-safe form of the model label (see :func:`label_tag`)."""
        return label_tag(self.model.label)

    @property
    def run_name(self) -> str:
        return f"{self.label_tag}__{direction_tag(self.source, self.target)}__s{self.seed}"


@dataclass(frozen=True)
class Cell:
    """One (perturbation, severity) of the grid; ``clean`` is severity 0."""

    perturbation: str
    family: str
    severity: int

    @property
    def is_clean(self) -> bool:
        return self.severity == 0 or self.perturbation == CLEAN

    @property
    def file_stem(self) -> str:
        return f"{self.perturbation}__{self.severity}"


CLEAN_CELL = Cell(CLEAN, CLEAN, 0)


def jobs(suite: Suite) -> list[Job]:
    """All (model, direction, seed) jobs, in a fixed order. An external model (never trained) has
    one job: its direction (every suite direction if it names none) at the first seed, since its
    weights do not depend on the seed."""
    out = []
    for s, t in suite.directions:
        for m in suite.models:
            if m.external is not None:
                if m.direction is None or m.direction == f"{s}->{t}":
                    out.append(Job(m, s, t, suite.seeds[0]))
                continue
            out.extend(Job(m, s, t, seed) for seed in suite.seeds)
    return out


def cells(suite: Suite) -> list[Cell]:
    """All cells, clean first, then corruptions, then attacks, each by severity."""
    from robustmri.perturb import PERTURBATIONS

    out = [CLEAN_CELL]
    out += [Cell(n, PERTURBATIONS[n].family, s) for n in suite.perturbations for s in suite.severities]
    out += [Cell(n, PERTURBATIONS[n].family, s) for n in suite.attacks for s in suite.attack_severities]
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


def shard_jobs(suite: Suite, shard: tuple[int, int] = (0, 1)) -> list[Job]:
    """The jobs of part ``shard = (i, n)``: every n-th job starting at i."""
    return [j for k, j in enumerate(jobs(suite)) if k % shard[1] == shard[0]]
