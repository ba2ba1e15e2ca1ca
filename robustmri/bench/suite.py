"""Benchmark suites: TOML files validated against a schema; the built-in ones ship inside the
package (``robustmri/suites/<name>.toml``, read with :mod:`importlib.resources`, so they work from a
wheel install too).

A suite is data + threat model + models (RobustBench's recipe), nothing hidden::

    name = "smoke"
    description = "..."
    directions = ["t1->t2"]          # source->target contrast pairs
    seeds = [0]                      # one trained model per (model, direction, seed)
    reference_model = "pix2pix"      # label of the model others are tested against (default: the first)
    ablation = false                 # true: the report adds the ablation table
    device = "auto"                  # auto | cpu | cuda | cuda:N

    [data]
    source = "embedded:8"            # embedded[:N] | prepared folder | NIfTI root
    image_size = 64
    embedded = { misregistration_mm = 2.0 }   # optional SynthConfig fields of the embedded data;
                                     # misregistration_splits = ["train"]: only training subjects misregistered;
                                     # lesion_types = ["tumour", "wmh"], lesion_splits = ["test"]: lesions in
                                     # the test subjects only, the types in turn
    split = [6, 0, 6]                # optional subject counts or fractions (train, val, test);
                                     # default 25:5:10 (not for an already prepared folder)

    [protocol]
    name = "robustmri"               # scoring protocol preset

    [train]                          # defaults for every model
    steps = 300
    batch_size = 4

    [[models]]
    name = "pix2pix"                 # registry name
    size = "tiny"
    label = "pix2pix"                # optional display name (default: name, or name:variant)
    options = {}                     # builder options, e.g. {variant = "full", generator = "pix2pix"}
    steps = 300                      # optional override of [train]

    [perturbations]
    names = "all"                    # or a list of corruption names
    severities = [1, 2, 3, 4, 5]

    [attacks]
    names = ["random_linf", "fgsm_linf", "pgd_linf", "square_linf"]   # random_linf: the control
    severities = [1, 3]
    objective = "target"             # target: the reported error (masked, to the real target) | stability: to the clean output
    loss = "mse"                     # mse | l1
    eot_samples = 4                  # noise draws per loss evaluation, for stochastic models only
    budget = { square_linf = { queries = 1000 }, pgd_linf = { steps = 50, restarts = 2 } }   # optional, every severity

    [eval]
    batch_size = "auto"              # slices per batch: "auto" (CPU 32, GPU sized from free memory) or an integer; scores do not depend on it
    seed = 0                         # seeds the corruptions (same draws for every model)
    split = "test"                   # test (default: report) | val (tuning: needs data.split with val > 0)
    clinical = false                 # true: also score lesions per test subject (clinical.csv; needs tissue labels)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robustmri.data.contrasts import canonical_contrast
from robustmri.errors import ConfigError, did_you_mean

SUITES_PACKAGE = "robustmri.suites"
"""Package holding the built-in suites."""


def builtin_suites() -> list[str]:
    """Names of the built-in suites."""
    from importlib.resources import files

    return sorted(p.name[: -len(".toml")] for p in files(SUITES_PACKAGE).iterdir() if p.name.endswith(".toml"))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    size: str = "tiny"
    label: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    batch_size: int | None = None
    #: an external model (never trained): its entry, see :mod:`robustmri.models.external`
    external: str | None = None
    #: what an external model takes and returns: "unit" ([0, 1]) or "symmetric" ([-1, 1])
    io_range: str = "unit"
    #: the one direction an external model translates ("t1->t2"); None: every suite direction
    direction: str | None = None


_EXTERNAL_DEFAULTS = {"external": None, "io_range": "unit", "direction": None}
"""ModelSpec fields dropped from the suite hash while at their defaults (suites written before
external models existed keep their hash)."""


@dataclass(frozen=True)
class Suite:
    """A validated suite; :attr:`hash` identifies its content (recorded in the manifest)."""

    name: str
    description: str
    directions: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...]
    models: tuple[ModelSpec, ...]
    data_source: str = "embedded"
    image_size: int = 64
    embedded_options: dict[str, Any] = field(default_factory=dict)
    #: subject split (train, val, test) as counts or fractions; None = the 25:5:10 default
    split: tuple[float, float, float] | None = None
    protocol: str = "robustmri"
    train_steps: int = 300
    train_batch_size: int = 4
    perturbations: tuple[str, ...] = ()
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    attacks: tuple[str, ...] = ()
    attack_severities: tuple[int, ...] = (1, 3)
    attack_loss: str = "mse"
    eot_samples: int = 4
    #: "target": attacks maximise the reported (masked) error to the target; "stability": the
    #: distance to the clean output
    attack_objective: str = "target"
    #: per attack, budget parameters (steps, restarts, queries) that replace the severity table's at every severity
    attack_budget: dict[str, dict[str, int]] = field(default_factory=dict)
    #: slices per scoring batch, or "auto" (robustmri.bench.batching): a speed setting, not in :attr:`hash`
    eval_batch_size: int | str = "auto"
    eval_seed: int = 0
    #: the subjects scored: ``"test"`` (report) or ``"val"`` (choosing options: a tuning suite)
    eval_split: str = "test"
    #: also score lesions per test subject (robustmri.clinical): needs tissue labels in the data
    clinical: bool = False
    #: label of the model others are tested against; parse_suite defaults it to the first model's
    reference_model: str = ""
    ablation: bool = False
    device: str = "auto"
    #: resources for ``--executor slurm`` (keys of :class:`robustmri.bench.slurm.SlurmOptions`);
    #: the command line overrides them; not part of :attr:`hash` (they do not change results)
    slurm: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def hash(self) -> str:
        d = asdict(self)
        d.pop("path")
        d.pop("slurm")
        d.pop("eval_batch_size")  # scores do not depend on it (robustmri.bench.scoring: keyed streams)
        if not d["attack_budget"]:  # suites written before budgets existed keep their hash
            d.pop("attack_budget")
        if d.get("eval_split") == "test":  # likewise suites written before eval.split existed
            d.pop("eval_split")
        if not d.get("clinical"):  # and before clinical scores existed
            d.pop("clinical", None)
        for m in d["models"]:
            for key, default in _EXTERNAL_DEFAULTS.items():
                if m.get(key) == default:
                    m.pop(key)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TOP_KEYS = {
    "name", "description", "directions", "seeds", "reference_model", "ablation", "device",
    "data", "protocol", "train", "models", "perturbations", "attacks", "eval", "slurm",
}
_SECTIONS = {
    "data": {"source", "image_size", "embedded", "split"},
    "protocol": {"name"},
    "train": {"steps", "batch_size"},
    "perturbations": {"names", "severities"},
    "attacks": {"names", "severities", "objective", "loss", "eot_samples", "budget"},
    "eval": {"batch_size", "seed", "split", "clinical"},
    "slurm": {"partition", "gpus", "cpus", "mem_gb", "time_min", "eval_tasks", "train_processes"},
}
_MODEL_KEYS = {"name", "size", "label", "options", "steps", "batch_size"}
_EXTERNAL_KEYS = {"external", "label", "io_range", "direction"}


def _err(path: str, msg: str) -> ConfigError:
    return ConfigError(f"suite {path}: {msg}")


def _int_list(path: str, key: str, value: Any, lo: int, hi: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _err(path, f"{key} must be a list of integers, got {value!r}")
    for v in value:
        if not lo <= v <= hi:
            raise _err(path, f"{key} values must be within {lo}..{hi}, got {v}")
    return tuple(value)


def _embedded_options(path: str, options: Any) -> dict[str, Any]:
    from dataclasses import fields as dc_fields

    from robustmri.data.simulator import SynthConfig

    if not isinstance(options, dict):
        raise _err(path, "[data] embedded must be a table of SynthConfig fields, e.g. { misregistration_mm = 2.0 }")
    from robustmri.data.resolve import LESION_SPLITS_KEY, MISREGISTRATION_SPLITS_KEY, check_split_options

    internal = {"size", "seed", "sequences", "contrasts", "misregistered_subjects", "lesioned_subjects"}
    allowed = {f.name for f in dc_fields(SynthConfig)} - internal | {MISREGISTRATION_SPLITS_KEY, LESION_SPLITS_KEY}
    bad = set(options) - allowed
    if bad:
        raise _err(path, f"unknown embedded option(s) {sorted(bad)}{did_you_mean(bad, allowed)}; allowed: {sorted(allowed)}")
    try:
        check_split_options(options)
    except ConfigError as exc:
        raise _err(path, f"[data] embedded: {exc}") from None
    return dict(options)


def _split(path: str, value: Any) -> tuple[float, float, float] | None:
    """``data.split``: three non-negative numbers (train, val, test), counts or fractions."""
    if value is None:
        return None
    if (
        not isinstance(value, list) or len(value) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)
        or value[0] <= 0 or value[2] <= 0
    ):
        raise _err(path, f"data.split must be [train, val, test] counts or fractions with train, test > 0, got {value!r}")
    return (value[0], value[1], value[2])


def _clinical(path: str, value: Any) -> bool:
    """``eval.clinical``: a boolean; clinical scores need tissue labels, which the embedded data have
    (a prepared folder or NIfTI root needs a seg file per subject, checked when its data are read)."""
    if not isinstance(value, bool):
        raise _err(path, f"eval.clinical must be true or false, got {value!r}")
    return value


def _eval_split(path: str, value: Any, split: tuple[float, float, float] | None) -> str:
    """``eval.split``: ``test`` or ``val``; scoring the validation subjects needs some (``split``: the
    parsed ``data.split``)."""
    if value not in ("test", "val"):
        raise _err(path, f"eval.split must be 'test' (report) or 'val' (tuning), got {value!r}")
    if value == "val" and not (split is not None and split[1] > 0):
        raise _err(path, "eval.split = 'val' needs validation subjects: set data.split = [train, val, test] with val > 0")
    return str(value)


def _external_spec(path: str, m: dict[str, Any], directions: list[tuple[str, str]]) -> ModelSpec:
    """A ``[[models]]`` entry with ``external = ...`` (see :mod:`robustmri.models.external`)."""
    from robustmri.models.external import IO_RANGES

    entry = m["external"]
    bad = set(m) - _EXTERNAL_KEYS
    if bad:
        raise _err(path, f"external model {entry!r}: {sorted(bad)} do not apply to a model robustmri does not train; "
                         f"allowed: {sorted(_EXTERNAL_KEYS)}")
    if not isinstance(entry, str) or not entry.strip():
        raise _err(path, "external must be 'module:callable', 'file.py:callable' or a TorchScript file path")
    label = m.get("label")
    if not isinstance(label, str) or not label:
        raise _err(path, f"external model {entry!r} needs a `label` (its name in the results)")
    io_range = m.get("io_range", "unit")
    if io_range not in IO_RANGES:
        raise _err(path, f"model {label}: io_range must be one of {', '.join(IO_RANGES)}, got {io_range!r}")
    direction = m.get("direction")
    if direction is None:
        if len(directions) > 1:
            raise _err(path, f"model {label}: the suite has {len(directions)} directions; say which one this external "
                             "model translates, e.g. direction = \"t1->t2\"")
    else:
        if not isinstance(direction, str) or "->" not in direction:
            raise _err(path, f"model {label}: direction {direction!r} must look like 't1->t2'")
        pair = tuple(canonical_contrast(p) for p in direction.split("->", 1))
        if pair not in directions:
            raise _err(path, f"model {label}: direction {direction!r} is not one of the suite's directions")
        direction = f"{pair[0]}->{pair[1]}"
    return ModelSpec("external", "tiny", label, external=entry.strip(), io_range=io_range, direction=direction)


def _slurm_section(path: str, section: dict[str, Any]) -> dict[str, Any]:
    """``[slurm]``: resources of ``--executor slurm`` (validated as the command line's)."""
    from robustmri.bench.resources import SlurmOptions

    for key, value in section.items():
        ok = isinstance(value, str) if key == "partition" else (
            isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok:
            raise _err(path, f"slurm.{key} must be {'a string' if key == 'partition' else 'a number'}, got {value!r}")
    try:
        SlurmOptions(**section).check()
    except ConfigError as exc:
        raise _err(path, f"[slurm]: {exc}") from None
    return dict(section)


def parse_suite(raw: dict[str, Any], path: str = "<suite>") -> Suite:
    """Validate a suite dictionary (as read from TOML) and return a :class:`Suite`."""
    from robustmri.models.registry import SIZES, list_models
    from robustmri.perturb import PERTURBATIONS, list_perturbations
    from robustmri.protocol import list_protocols

    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise _err(path, f"unknown key(s) {sorted(unknown)}{did_you_mean(unknown, _TOP_KEYS)}; allowed: {sorted(_TOP_KEYS)}")
    for section, keys in _SECTIONS.items():
        if section in raw:
            if not isinstance(raw[section], dict):
                raise _err(path, f"[{section}] must be a table")
            bad = set(raw[section]) - keys
            if bad:
                raise _err(path, f"unknown key(s) {sorted(bad)} in [{section}]{did_you_mean(bad, keys)}; allowed: {sorted(keys)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _err(path, "needs a non-empty string `name`")
    for where, value, kind, what in (
        ("description", raw.get("description", ""), str, "a string"),
        ("ablation", raw.get("ablation", False), bool, "true or false"),
        ("device", raw.get("device", "auto"), str, 'a string: "auto", "cpu", "cuda" or "cuda:N"'),
        ("data.source", (raw.get("data") or {}).get("source", "embedded"), str, 'a string: "embedded[:N]", a prepared folder or a NIfTI root'),
    ):
        if not isinstance(value, kind):
            raise _err(path, f"`{where}` must be {what}, got {value!r}")
    device = raw.get("device", "auto")
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise _err(path, f'`device` must be "auto", "cpu", "cuda" or "cuda:N", got {device!r}')
    directions = []
    for d in raw.get("directions", ["t1->t2"]):
        if not isinstance(d, str) or "->" not in d:
            raise _err(path, f"direction {d!r} must look like 't1->t2'")
        s, t = (canonical_contrast(p) for p in d.split("->", 1))
        if s == t:
            raise _err(path, f"direction {d!r} maps a contrast to itself")
        directions.append((s, t))
    seeds = _int_list(path, "seeds", raw.get("seeds", [0]), 0, 2**31 - 1)
    data = raw.get("data", {})
    train = raw.get("train", {})
    models: list[ModelSpec] = []
    raw_models = raw.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise _err(path, "needs at least one [[models]] entry")
    known = list_models()
    for m in raw_models:
        if isinstance(m, dict) and "external" in m:
            models.append(_external_spec(path, m, directions))
            continue
        if not isinstance(m, dict) or set(m) - _MODEL_KEYS:
            bad = set(m) - _MODEL_KEYS if isinstance(m, dict) else set()
            raise _err(path, f"[[models]] entry {m!r} has unknown keys{did_you_mean(bad, _MODEL_KEYS)}; allowed: "
                             f"{sorted(_MODEL_KEYS)}")
        if m.get("name") not in known:
            raise _err(path, f"unknown model {m.get('name')!r}{did_you_mean(m.get('name'), known)}; registered: {', '.join(known)}")
        if m.get("size", "tiny") not in SIZES:
            raise _err(path, f"model {m['name']}: size must be one of {', '.join(SIZES)}")
        options = m.get("options", {})
        if not isinstance(options, dict):
            raise _err(path, f"model {m['name']}: options must be a table, e.g. {{ variant = \"full\" }}, got {options!r}")
        for key in ("steps", "batch_size"):
            value = m.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise _err(path, f"model {m['name']}: {key} must be a positive integer, got {value!r}")
        if "label" in m and (not isinstance(m["label"], str) or not m["label"]):
            raise _err(path, f"model {m['name']}: `label` must be a non-empty string, got {m['label']!r}")
        label = m.get("label") or (f"{m['name']}:{options['variant']}" if "variant" in options else m["name"])
        models.append(ModelSpec(m["name"], m.get("size", "tiny"), label, dict(options), m.get("steps"), m.get("batch_size")))
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise _err(path, f"model labels must be unique, got {labels}; set `label` on the duplicates")
    reference = raw.get("reference_model", labels[0])
    if reference not in labels:
        raise _err(path, f"reference_model {reference!r} is not one of the model labels {labels}")
    pert = raw.get("perturbations", {})
    names = pert.get("names", "all")
    corruptions = list_perturbations(include_adversarial=False)
    if names == "all":
        names = corruptions
    if not isinstance(names, list):
        raise _err(path, "perturbations.names must be 'all' or a list")
    for n in names:
        if n not in corruptions:
            raise _err(path, f"unknown corruption {n!r}{did_you_mean(n, corruptions)}; use one of {', '.join(corruptions)}")
    att = raw.get("attacks", {})
    attack_names = att.get("names", [])
    for n in attack_names:
        if n not in PERTURBATIONS or PERTURBATIONS[n].family != "adversarial":
            raise _err(path, f"unknown attack {n!r}{did_you_mean(n, list_perturbations('adversarial'))}; use one of {', '.join(list_perturbations('adversarial'))}")
    budget = att.get("budget", {})
    if not isinstance(budget, dict) or not all(isinstance(v, dict) for v in budget.values()):
        raise _err(path, "attacks.budget must be a table of tables, e.g. { square_linf = { queries = 100 } }")
    for n, b in budget.items():
        if n not in attack_names:
            raise _err(path, f"attacks.budget names {n!r}, which is not in attacks.names {attack_names}")
        from robustmri.perturb.adversarial import check_budget

        try:
            check_budget(n, b)
        except ConfigError as exc:
            raise _err(path, f"attacks.budget: {exc}") from None
    protocol = raw.get("protocol", {}).get("name", "robustmri")
    if protocol not in list_protocols():
        raise _err(path, f"unknown protocol {protocol!r}{did_you_mean(protocol, list_protocols())}; use one of {', '.join(list_protocols())}")
    if att.get("loss", "mse") not in ("mse", "l1"):
        raise _err(path, "attacks.loss must be mse or l1")
    if att.get("objective", "target") not in ("target", "stability"):
        raise _err(path, "attacks.objective must be target (the reported error) or stability (distance to the clean output)")
    eot = att.get("eot_samples", 4)
    if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
        raise _err(path, f"attacks.eot_samples must be a positive integer, got {eot!r}")
    ev = raw.get("eval", {})
    size = data.get("image_size", 64)
    if not isinstance(size, int) or size < 16:
        raise _err(path, f"data.image_size must be an integer >= 16, got {size!r}")
    for key, value in (("train.steps", train.get("steps", 300)), ("train.batch_size", train.get("batch_size", 4))):
        if not isinstance(value, int) or value < 1:
            raise _err(path, f"{key} must be a positive integer, got {value!r}")
    eval_seed = ev.get("seed", 0)
    if isinstance(eval_seed, bool) or not isinstance(eval_seed, int) or eval_seed < 0:
        raise _err(path, f"eval.seed must be a non-negative integer, got {eval_seed!r}")
    eval_batch = ev.get("batch_size", "auto")
    if eval_batch != "auto" and (isinstance(eval_batch, bool) or not isinstance(eval_batch, int) or eval_batch < 1):
        raise _err(path, f'eval.batch_size must be a positive integer or "auto", got {eval_batch!r}')
    split = _split(path, data.get("split"))
    return Suite(
        name=name,
        description=str(raw.get("description", "")),
        directions=tuple(directions),
        seeds=seeds,
        models=tuple(models),
        data_source=str(data.get("source", "embedded")),
        embedded_options=_embedded_options(path, data.get("embedded", {})),
        split=split,
        image_size=size,
        protocol=protocol,
        train_steps=int(train.get("steps", 300)),
        train_batch_size=int(train.get("batch_size", 4)),
        perturbations=tuple(names),
        severities=_int_list(path, "perturbations.severities", pert.get("severities", [1, 2, 3, 4, 5]), 1, 5),
        attacks=tuple(attack_names),
        attack_severities=_int_list(path, "attacks.severities", att.get("severities", [1, 3]), 1, 5),
        attack_loss=att.get("loss", "mse"),
        eot_samples=int(eot),
        attack_objective=str(att.get("objective", "target")),
        attack_budget={n: dict(b) for n, b in sorted(budget.items())},
        eval_batch_size=eval_batch,
        eval_seed=eval_seed,
        eval_split=_eval_split(path, ev.get("split", "test"), split),
        clinical=_clinical(path, ev.get("clinical", False)),
        reference_model=reference,
        ablation=bool(raw.get("ablation", False)),
        device=str(raw.get("device", "auto")),
        slurm=_slurm_section(path, raw.get("slurm", {})),
        path=path,
    )


def suite_from_dict(d: dict[str, Any]) -> Suite:
    """The :class:`Suite` that :meth:`Suite.to_dict` described (e.g. a manifest's ``suite_definition``);
    its :attr:`Suite.hash` equals the original's."""
    try:
        values = dict(d)
        values["models"] = tuple(ModelSpec(**m) for m in values["models"])
        values["directions"] = tuple(tuple(p) for p in values["directions"])
        for key in ("seeds", "perturbations", "severities", "attacks", "attack_severities"):
            values[key] = tuple(values[key])
        if values.get("split") is not None:
            values["split"] = tuple(values["split"])
        return Suite(**values)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"not a suite definition ({type(exc).__name__}: {exc}): pass what Suite.to_dict() wrote") from None


def load_suite(name_or_path: str | os.PathLike[str]) -> Suite:
    """Load a built-in suite by name (``smoke``, ``quick``, ``full``, ``paper``, ...) or a TOML path."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as the package tomli
        import tomli as tomllib  # type: ignore[no-redef]

    p = Path(name_or_path)
    if not p.suffix:
        from importlib.resources import files

        resource = files(SUITES_PACKAGE) / f"{name_or_path}.toml"
        if not resource.is_file():
            raise ConfigError(f"suite {name_or_path!r} is not a built-in suite{did_you_mean(str(name_or_path), builtin_suites())}: use one of {', '.join(builtin_suites())} or a .toml path")
        text, where = resource.read_text(encoding="utf-8"), f"{name_or_path} (built in)"
    else:
        if not p.is_file():
            raise ConfigError(f"suite file {p} not found: pass an existing .toml, or a built-in suite ({', '.join(builtin_suites())})")
        try:
            text, where = p.read_text(encoding="utf-8"), str(p)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read suite {p} ({type(exc).__name__}): fix the file") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"suite {where} is not valid TOML ({exc}): fix the file") from None
    return parse_suite(raw, where)
