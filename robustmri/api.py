"""``robustmri.benchmark(model, ...)``: score your own trained model in one call.

RobustBench's habit for image-to-image translation: the model is scored as given (never trained)
on a suite's test data under its whole perturbation and attack grid, next to the suite's own
trained baselines if asked, and the results table comes back as a DataFrame (one row per test
slice and cell; the same ``results.csv`` and report are written under ``out``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pandas as pd
from torch import nn

from robustmri.errors import ConfigError

__all__ = ["benchmark"]


def benchmark(
    model: nn.Module | str,
    out: str | os.PathLike[str],
    suite: str | os.PathLike[str] = "smoke",
    data: str | None = None,
    label: str = "mymodel",
    io_range: str = "unit",
    direction: str | None = None,
    baselines: bool = False,
    floors: bool = True,
    device: str | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
    report: bool = True,
) -> pd.DataFrame:
    """Score ``model`` on ``suite``'s grid and return the results table.

    ``model``: a ``torch.nn.Module`` mapping (B, C, H, W) to (B, 1, H, W) in ``io_range``
    ("unit": [0, 1]; "symmetric": [-1, 1]), or an entry string (``"module:callable"``,
    ``"file.py:callable"``, a TorchScript path; see :mod:`robustmri.models.external`).
    ``suite``: a built-in suite name or a TOML path; its data, protocol, perturbations, attacks
    and evaluation settings apply. ``data``: replaces the suite's data (``embedded``,
    ``embedded:N``, a prepared folder or a raw IXI/BraTS folder). ``direction``: the one direction
    the model translates (``"t1->t2"``); needed when the suite has several. ``baselines``: also
    train and score the suite's own models (the first of them is then the reference for tests).
    ``floors``: also score the no-learning ``lookup`` floor (fitted in seconds on the suite's
    training slices), so that a lone model is compared with something and the report says whether
    it learned more than a mapping of intensities; the user's model stays the reference.
    ``out``: results folder (resumable, as ``robustmri bench --out``). ``progress``: progress lines
    while it runs and the summary table (:mod:`robustmri.report.summary`) when it ends, on stderr
    and stdout as the CLI prints them; ``False`` keeps it silent.

    Returns the rows of ``out/results.csv`` (all models in it) as a DataFrame.
    """
    from robustmri.bench.runner import run_suite
    from robustmri.bench.suite import ModelSpec, load_suite
    from robustmri.data.contrasts import canonical_contrast
    from robustmri.models.external import IO_RANGES, register_object
    from robustmri.publish import publish
    from robustmri.results import read_table

    s = load_suite(suite)
    if io_range not in IO_RANGES:
        raise ConfigError(f"io_range must be one of {', '.join(IO_RANGES)}, got {io_range!r}")
    if any(m.label == label for m in s.models) and baselines:
        raise ConfigError(f"label {label!r} is already a model of suite {s.name}: pass another label=")
    directions = s.directions
    if direction is not None:
        if "->" not in direction:
            raise ConfigError(f"direction {direction!r} must look like 't1->t2'")
        pair = tuple(canonical_contrast(p) for p in direction.split("->", 1))
        if pair not in s.directions:
            raise ConfigError(f"direction {direction!r} is not one of suite {s.name}'s directions")
        direction = f"{pair[0]}->{pair[1]}"
        if not baselines:
            directions = (pair,)
    elif len(s.directions) > 1:
        raise ConfigError(f"suite {s.name} has {len(s.directions)} directions: pass direction='t1->t2' (the one your model translates)")
    entry = register_object(label, model) if isinstance(model, nn.Module) else str(model)
    spec = ModelSpec("external", "tiny", label, external=entry, io_range=io_range, direction=direction)
    models = (*s.models, spec) if baselines else (spec,)
    if floors and not any(m.name == "lookup" for m in models):
        if label == "lookup":
            raise ConfigError("label 'lookup' is the floor's name: pass another label=, or floors=False")
        models = (*models, ModelSpec("lookup", "tiny", "lookup"))
    s = replace(
        s,
        models=models,
        directions=directions,
        reference_model=s.reference_model if baselines else label,
        data_source=data if data is not None else s.data_source,
    )
    path = run_suite(s, Path(out), device=device, progress=progress, cache=cache)
    publish(path, report=report)
    if progress:
        from robustmri.report.summary import bench_summary

        page = path / "report" / "report.html"
        print(bench_summary(path, report=page if page.is_file() else None), flush=True)
    return read_table(path / "results.csv")
