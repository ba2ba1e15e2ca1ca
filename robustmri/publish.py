"""What a finished results folder publishes: its leaderboard entries and its report.

The bench (:func:`robustmri.bench.run_suite`, whichever executor ran its tasks, and
:func:`robustmri.bench.merge_results`) stops at ``results.csv`` and ``manifest.json``; the callers
(the CLI, :func:`robustmri.benchmark`) call :func:`publish` on the folder they return. So the
bench never imports the report or the leaderboard, and both read only what the folder holds.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["publish"]


def publish(results_dir: str | os.PathLike[str], *, report: bool = True) -> Path | None:
    """Write ``results_dir/leaderboard/<label>__<direction>.json`` (one entry per model and
    direction, see :mod:`robustmri.leaderboard`) and, with ``report``, the report folder
    (:func:`robustmri.report.build_report`). Returns the path of ``report.html``, or None."""
    from robustmri.leaderboard import write_run_entries

    write_run_entries(results_dir)
    if not report:
        return None
    from robustmri.report.build import build_report

    return build_report(results_dir)
