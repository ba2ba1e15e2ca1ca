"""The tiny suite the benchmarks' ``--quick`` modes run on (a helper module, not a benchmark):
4 embedded subjects at 64x64 with 2 slices each, a 2-step tiny pix2pix, on the CPU."""

from __future__ import annotations

from pathlib import Path


def quick_suite(name: str, perturbations: tuple[str, ...] = (), severity: int = 1) -> str:
    """The suite's TOML text: ``perturbations`` at ``severity`` (none: the clean cell only)."""
    names = ", ".join(f'"{p}"' for p in perturbations)
    return f"""
name = "{name}"
directions = ["t1->t2"]
seeds = [0]
device = "cpu"
[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]
embedded = {{ n_slices = 2 }}
[train]
steps = 2
batch_size = 2
[[models]]
name = "pix2pix"
size = "tiny"
[perturbations]
names = [{names}]
severities = [{int(severity)}]
"""


def write_quick_suite(folder: Path, name: str, perturbations: tuple[str, ...] = (), severity: int = 1) -> Path:
    """Write :func:`quick_suite` to ``folder/<name>.toml`` and return the path."""
    path = Path(folder) / f"{name}.toml"
    path.write_text(quick_suite(name, perturbations, severity))
    return path
