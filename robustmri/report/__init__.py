"""Benchmark report: comparison tables, figures and a self-contained HTML page.

- :mod:`robustmri.report.table`: the table object, rendered as Markdown, LaTeX (booktabs), HTML and CSV;
- :mod:`robustmri.report.tables`: the clean-quality and robustness tables;
- :mod:`robustmri.report.design_tables`: the KD+attack ablation and the tuning trials;
- :mod:`robustmri.report.claims`: the paper's claims, tested in pairs, and the teacher's table.
- :mod:`robustmri.report.figures`: degradation curves, box plots, qualitative grid (PNG + PDF).
- :mod:`robustmri.report.html`: the HTML page template.
- :mod:`robustmri.report.build`: :func:`build_report`, results folder -> report folder.

Reads a finished results folder (``results.csv``, the manifest, ``cells/**/model.json``, samples)
through :mod:`robustmri.results`, with the statistics of :mod:`robustmri.analysis`. Never imports the
bench (an import-linter contract), the leaderboard (a sibling), :mod:`robustmri.publish`, the API or
the CLI (docs/architecture.md).
"""

from __future__ import annotations

from robustmri.report.build import build_report, load_results

__all__ = ["build_report", "load_results"]
