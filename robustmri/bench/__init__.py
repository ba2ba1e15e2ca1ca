"""``robustmri bench``: suites, the grid runner with its incremental results store, and the drift check."""

from robustmri.bench.drift import check_drift, update_reference
from robustmri.bench.runner import merge_results, run_suite
from robustmri.bench.suite import Suite, load_suite

__all__ = ["Suite", "check_drift", "load_suite", "merge_results", "run_suite", "update_reference"]
