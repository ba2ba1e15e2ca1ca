"""How much the evaluation layer of the drift check moves when only the float summation order does.

Scores the reference weights of a drift reference under the suite's whole grid once per process
setting (default, and each float-order variant of robustmri.bench.drift), one process at a time,
and prints the largest difference of any cell from the default per metric: the figures behind
EVALUATION_TOLERANCE (docs/drift.md).

    .venv/bin/python benchmarks/drift_spread.py reports/smoke --reference reports/reference/smoke.json
    .venv/bin/python benchmarks/drift_spread.py --quick     # seconds: a 2-step suite of its own (the tests run it)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from robustmri.bench.drift import ATTACK_EVALUATION_TOLERANCE, EVALUATION_TOLERANCE, FLOAT_ORDER_VARIANTS
from robustmri.results import CELL_KEY as KEY
from robustmri.results import cell_means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", help="a bench folder of the reference's suite")
    parser.add_argument("--reference", type=Path)
    parser.add_argument("--quick", action="store_true",
                        help="seconds: a 2-step suite and its own reference in a temporary folder, default and threads1 only (the tests run it)")
    args = parser.parse_args()
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            args.results, args.reference = _quick_reference(Path(tmp))
            spread(args.results, args.reference, {"default": {}, "threads1": FLOAT_ORDER_VARIANTS["threads1"]})
        return
    if args.results is None or args.reference is None:
        parser.error("give a bench folder and --reference (or --quick)")
    spread(args.results, args.reference, {"default": {}, **FLOAT_ORDER_VARIANTS,
                                          "threads1+aten-default": {**FLOAT_ORDER_VARIANTS["threads1"], **FLOAT_ORDER_VARIANTS["aten-default"]}})




def _quick_reference(tmp: Path) -> tuple[Path, Path]:
    from robustmri.bench import load_suite, run_suite, update_reference

    from _quick_suite import write_quick_suite

    suite = write_quick_suite(tmp, "drift-spread-quick", ("gaussian_noise",), severity=2)
    out = run_suite(load_suite(suite), tmp / "out", progress=False)
    ref = tmp / "ref" / "quick.json"
    update_reference(out, ref, variants=("threads1",), log=lambda _: None)
    return out, ref


def spread(results: Path, reference: Path, settings: dict[str, dict[str, str]]) -> None:
    """Score the reference weights under each float-order setting and print the largest cell differences."""
    args = argparse.Namespace(results=results, reference=reference)
    cells = {}
    for name, env in settings.items():
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "robustmri", "check", str(args.results), "--reference", str(args.reference), "--layer", "evaluation"],
            env={**os.environ, **env}, capture_output=True, text=True,
        )
        rows = pd.read_csv(args.results / "drift" / "evaluation.csv", dtype={"subject": str})
        shutil.copyfile(args.results / "drift" / "evaluation.csv", args.results / "drift" / f"evaluation-{name}.csv")
        cells[name] = cell_means(rows).set_index(list(KEY))["value"]
        status = "passes" if proc.returncode == 0 else f"exit {proc.returncode}"
        print(f"{name:>24}: {time.perf_counter() - start:6.1f} s, check {status}", flush=True)
    print("\nlargest |cell - default| per metric (tolerance in brackets: other cells / attack cells), and the cell "
          "where it occurs")
    for name in list(settings)[1:]:
        diff = (cells[name] - cells["default"]).abs()
        parts = []
        for metric in EVALUATION_TOLERANCE:
            d = diff[diff.index.get_level_values("metric") == metric]
            where = d.idxmax()
            tol = f"{EVALUATION_TOLERANCE[metric]:g} / {ATTACK_EVALUATION_TOLERANCE[metric]:g}"
            parts.append(f"{metric} {d.max():.2g} [{tol}] ({where[0]} {where[2]} s{where[3]})")
        exact = int((diff == 0).sum())
        print(f"{name:>24}: {'; '.join(parts)}; {exact}/{len(diff)} cells identical")


if __name__ == "__main__":
    main()
