"""Statistics and robustness scores over a benchmark's results table.

- :mod:`robustmri.analysis.stats`: per-subject values, summaries, paired Wilcoxon tests against a
  reference model with Holm correction.
- :mod:`robustmri.analysis.intervals`: the one confidence-interval method of every reported interval
  (t with a jackknife standard error over subjects, seeds as a level).
- :mod:`robustmri.analysis.robustness`: degradation vs the clean value, the area under the
  degradation curve and an ImageNet-C-style mean corruption error (mCE).

Both work on the *subject frame* that :func:`robustmri.analysis.stats.subject_means` builds from a
``results.csv`` (one row per model, direction, perturbation, severity and subject).

Owns the statistics of a results table. May import :mod:`robustmri.results`, the protocol, the metrics
and the bottom layer (errors, atomic); never the bench, the report or the CLI (docs/architecture.md).
"""

from __future__ import annotations

from robustmri.analysis.intervals import Interval, interval
from robustmri.analysis.robustness import (
    corruption_errors,
    degradation,
    degradation_auc,
    mean_corruption_error,
    with_clean_curves,
)
from robustmri.analysis.stats import (
    BETTER,
    RESULT_COLUMNS,
    compare_to_reference,
    interval_summary,
    holm,
    subject_means,
    summarize,
    wilcoxon_paired,
)

__all__ = [
    "BETTER",
    "RESULT_COLUMNS",
    "Interval",
    "compare_to_reference",
    "corruption_errors",
    "degradation",
    "degradation_auc",
    "holm",
    "interval",
    "interval_summary",
    "mean_corruption_error",
    "subject_means",
    "summarize",
    "wilcoxon_paired",
    "with_clean_curves",
]
