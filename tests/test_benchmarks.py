"""Every benchmark runs: each script under benchmarks/ has a ``--quick`` mode of a few seconds, and
this test calls each one (a new script without ``--quick`` fails here). Figures are printed, never
asserted: speed is measured by running the scripts on purpose, not in tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))  # _*: helpers

#: arguments besides --quick, per script
EXTRA: dict[str, list[str]] = {
    "gpu_check.py": ["--device", "cpu"],  # the output folder is added below
}


def test_the_list_of_benchmarks_is_not_empty():
    assert len(SCRIPTS) >= 14


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_runs_in_quick_mode(script, tmp_path):
    args = [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *EXTRA.get(script, [])]
    if script == "gpu_check.py":
        args += ["--out-dir", str(tmp_path / "measured")]
    env = {**os.environ, "MPLBACKEND": "Agg", "HOME": str(tmp_path / "home")}  # a cache of its own: nothing leaks out
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, f"{script} --quick failed:\n{tail}"
    assert proc.stdout.strip(), f"{script} --quick printed nothing"
    if script == "gpu_check.py":
        written = sorted(p.suffix for p in (tmp_path / "measured").iterdir())
        assert written == [".json", ".md"]


def test_a_failing_gpu_check_stage_is_recorded_and_the_others_go_on(tmp_path):
    """A device is lent for minutes: one stage that fails (here the scoring stage, on an unknown
    model) must not lose the figures of the others."""
    import json

    args = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--quick", "--device", "cpu",
            "--eval-model", "no_such_model", "--out-dir", str(tmp_path / "measured")]
    env = {**os.environ, "MPLBACKEND": "Agg", "HOME": str(tmp_path / "home")}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-3000:]
    (written,) = (tmp_path / "measured").glob("*.json")
    fig = json.loads(written.read_text())
    assert list(fig["errors"]) == ["eval"] and "no_such_model" in fig["errors"]["eval"]
    assert {r["model"] for r in fig["train"]} == {"pix2pix", "kd_attack"}  # the stages before it kept their rows
    assert fig["quick"]["status"] == "complete"  # and the one after it ran
    assert "Stage `eval` failed" in written.with_suffix(".md").read_text()
