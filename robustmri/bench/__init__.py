"""``robustmri bench``: suites, the grid runner with its incremental results store, and the drift check.

Owns suites, the plan, the tasks (``tasks.train``, ``tasks.score``) and their list, the driver
(``run_suite``), the executors, the results store and the drift check. May import every layer
below it (translate, analysis, results, kd, train, baselines, perturb, data, models, protocol,
...); never the report, the leaderboard, :mod:`robustmri.publish`,
the API or the CLI: a run stops at ``results.csv`` (docs/architecture.md).
"""

from robustmri.bench.drift import check_drift, update_reference
from robustmri.bench.runner import merge_results, run_suite
from robustmri.bench.suite import Suite, load_suite

__all__ = ["Suite", "check_drift", "load_suite", "merge_results", "run_suite", "update_reference"]
