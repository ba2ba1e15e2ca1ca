"""The drift reference file and its reference weights: format, validation, reading and writing.

A reference (``reports/reference/smoke.json``) holds two layers (see :mod:`robustmri.bench.drift`)::

    {"format": "robustmri-drift-reference", "version": 2,
     "suite": "smoke", "suite_hash": "...", "protocol": "...", "created": {...},
     "evaluation": {"weights": {RUN: {"file": "smoke-weights/RUN.pt", "sha256": "...", "model": LABEL,
                                      "direction": "t1->t2", "seed": 0}},
                    "tolerance": {"psnr": ..., ...}, "tolerance_basis": "...", "cells": [CELL, ...]},
     "training": {"tolerance_rule": "...", "factor": ..., "floor": {...}, "variants": [...],
                  "cells": [CELL + {"spread_sd": ..., "tolerance": ...}, ...]}}

with ``CELL = {"model", "direction", "perturbation", "severity", "metric", "value"}`` (the mean over
test subjects of the per-subject means). Reference weights are the inference modules of a trained
run (``TranslationModel.inference_modules``), stored as float16 in a torch file together with the
run's ``TrainConfig`` and loaded with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from robustmri.atomic import write_bytes_atomic, write_json_atomic
from robustmri.errors import DataError

FORMAT = "robustmri-drift-reference"
VERSION = 2
WEIGHTS_FORMAT = "robustmri-reference-weights"
CELL_KEYS = ("model", "direction", "perturbation", "severity", "metric", "value")


def _bad(path: Path, why: str) -> DataError:
    return DataError(
        f"{path} {why}: restore it (git checkout -- {path}) or write a new one with "
        f"`robustmri check RESULTS --reference {path} --update`"
    )


def read_reference(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a reference; a missing, truncated or foreign file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"reference {path} not found: create it with `robustmri check RESULTS --reference {path} --update`")
    try:
        ref = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _bad(path, "is not valid JSON (truncated or not a reference)") from None
    if not isinstance(ref, dict) or ref.get("format") != FORMAT:
        raise _bad(path, f"is not a robustmri drift reference (no \"format\": \"{FORMAT}\")")
    if ref.get("version") != VERSION:
        raise _bad(path, f"is a drift reference of version {ref.get('version')!r}, this robustmri reads version {VERSION}")
    for layer in ("evaluation", "training"):
        section = ref.get(layer)
        if not isinstance(section, dict) or not isinstance(section.get("cells"), list):
            raise _bad(path, f"has no valid {layer!r} layer")
        for cell in section["cells"]:
            if not isinstance(cell, dict) or any(k not in cell for k in CELL_KEYS):
                raise _bad(path, f"has a malformed {layer} cell {cell!r}")
    if not isinstance(ref["evaluation"].get("weights"), dict) or not isinstance(ref["evaluation"].get("tolerance"), dict):
        raise _bad(path, "has no evaluation weights or tolerance")
    if any("tolerance" not in c for c in ref["training"]["cells"]):
        raise _bad(path, "has training cells without a tolerance")
    return ref


def write_reference_file(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    write_json_atomic(path, {"format": FORMAT, "version": VERSION, **payload})


def weights_dir(reference: str | os.PathLike[str]) -> Path:
    """Folder of a reference's weights: ``smoke.json`` -> ``smoke-weights/``."""
    reference = Path(reference)
    return reference.with_name(f"{reference.stem}-weights")


def _inference_prefixes(model: torch.nn.Module) -> list[str]:
    names = {id(m): name for name, m in model.named_modules()}
    prefixes = []
    for module in model.inference_modules():  # type: ignore[operator]
        name = names.get(id(module))
        if name is None:
            raise DataError(f"{type(model).__name__}.inference_modules() returns a module that is not one of its submodules")
        prefixes.append(name)
    return prefixes


def _under(key: str, prefixes: list[str]) -> bool:
    return any(p == "" or key == p or key.startswith(p + ".") for p in prefixes)


def export_weights(run_dir: str | os.PathLike[str], dest: str | os.PathLike[str]) -> str:
    """Write the inference weights of the trained run ``run_dir`` to ``dest`` (float16); returns the
    file's sha256."""
    from robustmri.train.engine import load_trained

    model, config = load_trained(run_dir)
    prefixes = _inference_prefixes(model)
    state = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).clone()
        for k, v in model.state_dict().items() if _under(k, prefixes)
    }
    buffer = io.BytesIO()
    torch.save({"format": WEIGHTS_FORMAT, "version": 1, "config": config.to_dict(), "state": state}, buffer)
    data = buffer.getvalue()
    write_bytes_atomic(dest, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_weights(path: str | os.PathLike[str], sha256: str | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model stored by :func:`export_weights` (eval mode, float32 on ``device``); the file must
    have ``sha256`` when given."""
    from robustmri.train.engine import TrainConfig, build_from_config

    path = Path(path)
    if not path.is_file():
        raise DataError(f"reference weights {path} not found: restore them (git checkout -- {path.parent}) or --update")
    if sha256 is not None and sha256_file(path) != sha256:
        raise DataError(f"reference weights {path} differ from the ones the reference was made with (sha256): restore them or --update")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read reference weights {path} ({type(exc).__name__}): restore them or --update") from None
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise DataError(f"{path} is not a robustmri reference-weights file: restore it or --update")
    model = build_from_config(TrainConfig.from_dict(payload["config"]))
    prefixes = _inference_prefixes(model)
    wanted = {k for k in model.state_dict() if _under(k, prefixes)}
    state = payload["state"]
    if set(state) != wanted:
        raise DataError(
            f"{path} does not fit the {payload['config'].get('model')} model of this code "
            f"({len(wanted ^ set(state))} tensors differ): the architecture changed; --update the reference on purpose"
        )
    current = model.state_dict()
    try:
        model.load_state_dict({k: v.to(current[k].dtype) for k, v in state.items()}, strict=False)
    except RuntimeError:
        raise DataError(f"{path} does not fit the model of this code (tensor shapes differ): --update the reference on purpose") from None
    return model.to(device).eval()
