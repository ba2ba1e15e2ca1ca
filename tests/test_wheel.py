"""A wheel built from this tree, installed into a fresh virtual environment, runs the smoke suite
from another folder: the built-in suites ship inside the package (slow: about 6 minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_smoke_suite(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, timeout=600)
    (wheel,) = wheels.glob("robustmri-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q"]
    constraints = ["-c", str(ROOT / "constraints-cpu.txt")]
    subprocess.run([*pip, *constraints, "torch==2.13.0"], check=True, timeout=900)
    subprocess.run([*pip, *constraints, str(wheel)], check=True, timeout=900)
    subprocess.run([*pip, "--no-deps", "torchattacks==3.5.1"], check=True, timeout=600)
    work = tmp_path / "elsewhere"  # not the source tree: nothing can be read from the checkout
    work.mkdir()
    env = {**os.environ, "HOME": str(tmp_path / "home"), "MPLBACKEND": "Agg"}
    run = subprocess.run([str(env_dir / "bin" / "robustmri"), "bench", "--suite", "smoke", "--out", "smoke"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    frame = pd.read_csv(work / "smoke" / "results.csv")
    from robustmri.bench import load_suite

    assert set(frame["model"]) == {m.label for m in load_suite("smoke").models}  # the trained models and the floors
    assert {"pix2pix", "kd_attack:full", "lookup"} <= set(frame["model"])
    assert (work / "smoke" / "report" / "report.html").is_file()
    where = subprocess.run([str(py), "-c", "import robustmri; print(robustmri.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert str(env_dir) in where.stdout  # outside the checkout, the installed package is what runs
