"""A corpus of bad inputs across every command: each must end with exit status 2, exactly one line
on stderr starting with ``error:``, no traceback, and nothing created or changed on disk (not the
output folder, not the inputs, not the data cache).

Categories (the ids say which): ``opt-`` option syntax (click's own parsing), ``val-`` values out
of range, ``path-`` missing, misplaced or corrupt files, ``suite-`` bad suite files, ``run-``
damaged run folders, ``res-`` damaged results folders and references.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from robustmri.cli import main

SUITE_OK = """
name = "bad-input"
directions = ["t1->t2"]
device = "cpu"

[data]
source = "embedded:4"
image_size = 64
split = [2, 0, 2]

[train]
steps = 2
batch_size = 2

[[models]]
name = "pix2pix"
size = "tiny"

[perturbations]
names = ["gaussian_noise"]
severities = [2]

[attacks]
names = ["pgd_linf"]
severities = [1]

[eval]
batch_size = 8
"""

# (id, replacement of a line of SUITE_OK or an appended block): every one must be refused up front
SUITE_CASES = [
    ("suite-steps-text", ("steps = 2", 'steps = "ten"')),
    ("suite-steps-zero", ("steps = 2", "steps = 0")),
    ("suite-batch-zero", ("batch_size = 2", "batch_size = 0")),
    ("suite-eval-batch-zero", ("batch_size = 8", "batch_size = 0")),
    ("suite-eval-batch-text", ("batch_size = 8", 'batch_size = "big"')),
    ("suite-eval-seed-text", ("batch_size = 8", 'batch_size = 8\nseed = "abc"')),
    ("suite-eval-seed-negative", ("batch_size = 8", "batch_size = 8\nseed = -1")),
    ("suite-seed-text", ('device = "cpu"', 'device = "cpu"\nseeds = ["abc"]')),
    ("suite-options-text", ('size = "tiny"', 'size = "tiny"\noptions = "full"')),
    ("suite-model-unknown", ('name = "pix2pix"', 'name = "unet9000"')),
    ("suite-model-size", ('size = "tiny"', 'size = "gigantic"')),
    ("suite-model-steps-zero", ('size = "tiny"', 'size = "tiny"\nsteps = 0')),
    ("suite-model-batch-zero", ('size = "tiny"', 'size = "tiny"\nbatch_size = 0')),
    ("suite-direction-syntax", ('directions = ["t1->t2"]', 'directions = ["t1-t2"]')),
    ("suite-direction-same", ('directions = ["t1->t2"]', 'directions = ["t1->t1"]')),
    ("suite-direction-contrast", ('directions = ["t1->t2"]', 'directions = ["t1->dwi"]')),
    ("suite-severity-zero", ("severities = [2]", "severities = [0]")),
    ("suite-severity-six", ("severities = [2]", "severities = [6]")),
    ("suite-corruption-unknown", ('names = ["gaussian_noise"]', 'names = ["gaussian_noize"]')),
    ("suite-attack-unknown", ('names = ["pgd_linf"]', 'names = ["pgd_linf", "cw_l2"]')),
    ("suite-attack-severity", ("severities = [1]", "severities = [9]")),
    ("suite-attack-objective", ("severities = [1]", 'severities = [1]\nobjective = "confusion"')),
    ("suite-attack-loss", ("severities = [1]", 'severities = [1]\nloss = "ce"')),
    ("suite-attack-eot", ("severities = [1]", "severities = [1]\neot_samples = 0")),
    ("suite-budget-key", ("severities = [1]", "severities = [1]\nbudget = { pgd_linf = { queries = 5 } }")),
    ("suite-budget-negative", ("severities = [1]", "severities = [1]\nbudget = { pgd_linf = { steps = -1 } }")),
    ("suite-budget-other", ("severities = [1]", "severities = [1]\nbudget = { square_linf = { queries = 5 } }")),
    ("suite-protocol", ("[eval]", '[protocol]\nname = "nope"\n\n[eval]')),
    ("suite-image-size", ("image_size = 64", "image_size = 8")),
    ("suite-split", ("split = [2, 0, 2]", "split = [2, 2]")),
    ("suite-unknown-key", ('device = "cpu"', 'device = "cpu"\ncolour = "blue"')),
    ("suite-unknown-section-key", ("[eval]", "[eval]\nthreads = 4")),
    ("suite-reference-model", ('device = "cpu"', 'device = "cpu"\nreference_model = "resvit"')),
    ("suite-device", ('device = "cpu"', 'device = "tpu"')),
    ("suite-data-missing", ('source = "embedded:4"', 'source = "/nonexistent/ixi"')),
    ("suite-no-models", ('[[models]]\nname = "pix2pix"\nsize = "tiny"', "")),
    ("suite-toml-syntax", ("[eval]", "[eval\n")),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Inputs for the corpus: good ones (a tiny dataset, a trained run, a results folder) and
    damaged copies. Built once; every case must leave it exactly as it is."""
    root = tmp_path_factory.mktemp("bad-inputs")
    cache = root / "cache"
    patch = pytest.MonkeyPatch()
    patch.setenv("ROBUSTMRI_CACHE", str(cache))
    w = {"root": root, "cache": cache}
    w["file"] = root / "a-file.txt"
    w["file"].write_text("not a folder\n")
    w["empty"] = root / "empty"
    w["empty"].mkdir()
    w["bad_json"] = root / "bad.json"
    w["bad_json"].write_text("{not json")
    w["list_json"] = root / "list.json"
    w["list_json"].write_text("[1, 2]")
    # a small NIfTI dataset in the embedded layout, and a copy with a corrupt volume
    w["ds"] = root / "ds"
    assert main(["data", "synth", "--out", str(w["ds"]), "--subjects", "4", "--size", "64", "--slices", "4",
                 "--contrasts", "t1,t2"]) == 0
    w["corrupt_ds"] = root / "corrupt-ds"
    (w["corrupt_ds"] / "sub-000").mkdir(parents=True)
    (w["corrupt_ds"] / "sub-000" / "t1.nii.gz").write_bytes(b"not a nifti")
    (w["corrupt_ds"] / "sub-000" / "t2.nii.gz").write_bytes(b"not a nifti")
    # a trained run and damaged copies
    w["run"] = root / "run"
    assert main(["train", "--model", "pix2pix", "--size", "tiny", "--steps", "2", "--batch-size", "2",
                 "--data", str(w["ds"]), "--image-size", "64", "--out", str(w["run"])]) == 0
    for name, text in (("run_badjson", "{oops"), ("run_listjson", "[1]")):
        w[name] = root / name
        w[name].mkdir()
        (w[name] / "config.json").write_text(text)
    w["run_badckpt"] = root / "run-badckpt"
    w["run_badckpt"].mkdir()
    for f in w["run"].iterdir():
        if f.is_file():
            (w["run_badckpt"] / f.name).write_bytes(f.read_bytes())
    for ckpt in w["run_badckpt"].glob("*.pt"):
        ckpt.write_bytes(b"\x80\x04garbage")
    # results folders: a good one (a tiny bench) and damaged copies
    suite = root / "suite.toml"
    suite.write_text(SUITE_OK)
    w["suite"] = suite
    w["res"] = root / "res"
    assert main(["bench", "--suite", str(suite), "--out", str(w["res"]), "--no-report"]) == 0
    w["res_badcsv"] = root / "res-badcsv"
    w["res_badcsv"].mkdir()
    (w["res_badcsv"] / "results.csv").write_text("model,direction\npix2pix,t1->t2\n")
    w["res_badmanifest"] = root / "res-badmanifest"
    w["res_badmanifest"].mkdir()
    (w["res_badmanifest"] / "results.csv").write_bytes((w["res"] / "results.csv").read_bytes())
    (w["res_badmanifest"] / "manifest.json").write_text("{torn")
    for case_id, (old, new) in SUITE_CASES:
        text = SUITE_OK.replace(old, new, 1) if old else SUITE_OK + new
        assert text != SUITE_OK, case_id
        (root / f"{case_id}.toml").write_text(text)
    yield w
    patch.undo()


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


NEW = "{root}/new-out"

CASES: list[tuple[str, list[str]]] = [
    # data synth
    ("val-synth-subjects-0", ["data", "synth", "--out", NEW, "--subjects", "0"]),
    ("val-synth-subjects-neg", ["data", "synth", "--out", NEW, "--subjects", "-3"]),
    ("val-synth-size-8", ["data", "synth", "--out", NEW, "--size", "8"]),
    ("val-synth-size-huge", ["data", "synth", "--out", NEW, "--size", "100000"]),
    ("val-synth-slices-0", ["data", "synth", "--out", NEW, "--slices", "0"]),
    ("val-synth-lesions", ["data", "synth", "--out", NEW, "--lesions", "1.5"]),
    ("val-synth-snr", ["data", "synth", "--out", NEW, "--snr", "-1"]),
    ("val-synth-bias", ["data", "synth", "--out", NEW, "--bias", "-1"]),
    ("val-synth-misreg", ["data", "synth", "--out", NEW, "--misregistration", "-2"]),
    ("val-synth-field", ["data", "synth", "--out", NEW, "--field", "7T"]),
    ("val-synth-field-varied", ["data", "synth", "--out", NEW, "--field", "3T"]),
    ("val-synth-snr-varied", ["data", "synth", "--out", NEW, "--snr", "20"]),
    ("val-synth-variety", ["data", "synth", "--out", NEW, "--variety", "wild"]),
    ("val-synth-acquisition", ["data", "synth", "--out", NEW, "--acquisition", "mixed"]),
    ("val-synth-contrast", ["data", "synth", "--out", NEW, "--contrasts", "t1,dwi"]),
    ("val-synth-contrast-empty", ["data", "synth", "--out", NEW, "--contrasts", ""]),
    ("path-synth-out-file", ["data", "synth", "--out", "{file}"]),
    ("path-synth-out-under-file", ["data", "synth", "--out", "{file}/sub"]),
    ("opt-synth-size-text", ["data", "synth", "--out", NEW, "--size", "abc"]),
    ("opt-synth-no-out", ["data", "synth"]),
    ("opt-synth-unknown", ["data", "synth", "--out", NEW, "--colour", "blue"]),
    # data show
    ("path-show-missing", ["data", "show", "{root}/missing", "--out", NEW + "/x.png"]),
    ("path-show-empty", ["data", "show", "{empty}", "--out", NEW + "/x.png"]),
    ("path-show-corrupt", ["data", "show", "{corrupt_ds}", "--out", NEW + "/x.png"]),
    ("val-show-subjects-0", ["data", "show", "{ds}", "--out", NEW + "/x.png", "--subjects", "0"]),
    # data prepare
    ("path-prepare-missing", ["data", "prepare", "{root}/missing", "--out", NEW]),
    ("path-prepare-empty", ["data", "prepare", "{empty}", "--out", NEW]),
    ("path-prepare-out-file", ["data", "prepare", "{ds}", "--out", "{file}"]),
    ("path-prepare-corrupt", ["data", "prepare", "{corrupt_ds}", "--out", NEW]),
    ("val-prepare-size-2", ["data", "prepare", "{ds}", "--out", NEW, "--size", "2"]),
    ("val-prepare-size-huge", ["data", "prepare", "{ds}", "--out", NEW, "--size", "100000"]),
    ("val-prepare-central-0", ["data", "prepare", "{ds}", "--out", NEW, "--slices", "central:0"]),
    ("val-prepare-brain-2", ["data", "prepare", "{ds}", "--out", NEW, "--slices", "brain:2"]),
    ("val-prepare-slices", ["data", "prepare", "{ds}", "--out", NEW, "--slices", "bogus"]),
    ("val-prepare-norm", ["data", "prepare", "{ds}", "--out", NEW, "--norm", "bogus"]),
    ("val-prepare-split-2", ["data", "prepare", "{ds}", "--out", NEW, "--split", "1,2"]),
    ("val-prepare-split-text", ["data", "prepare", "{ds}", "--out", NEW, "--split", "a,b,c"]),
    ("val-prepare-axis", ["data", "prepare", "{ds}", "--out", NEW, "--axis", "diagonal"]),
    ("val-prepare-fit", ["data", "prepare", "{ds}", "--out", NEW, "--fit", "stretch"]),
    ("val-prepare-layout", ["data", "prepare", "{ds}", "--out", NEW, "--layout", "bogus"]),
    ("val-prepare-contrast", ["data", "prepare", "{ds}", "--out", NEW, "--contrasts", "dwi"]),
    ("val-prepare-reference", ["data", "prepare", "{ds}", "--out", NEW, "--reference", "dwi"]),
    ("path-prepare-split-missing", ["data", "prepare", "{ds}", "--out", NEW, "--split-file", "{root}/none.json"]),
    ("path-prepare-split-corrupt", ["data", "prepare", "{ds}", "--out", NEW, "--split-file", "{bad_json}"]),
    ("path-prepare-split-list", ["data", "prepare", "{ds}", "--out", NEW, "--split-file", "{list_json}"]),
    ("opt-prepare-size-text", ["data", "prepare", "{ds}", "--out", NEW, "--size", "big"]),
    # perturb
    ("val-perturb-family", ["perturb", "list", "--family", "bogus"]),
    ("path-perturb-missing", ["perturb", "show", "--data", "{root}/missing", "--out", NEW + "/g.png"]),
    ("val-perturb-suffix", ["perturb", "show", "--data", "{ds}", "--out", NEW + "/g.jpg"]),
    ("val-perturb-slice", ["perturb", "show", "--data", "{ds}", "--out", NEW + "/g.png", "--slice", "999"]),
    ("val-perturb-contrast", ["perturb", "show", "--data", "{ds}", "--out", NEW + "/g.png", "--contrast", "dwi"]),
    ("val-perturb-subject", ["perturb", "show", "--data", "{ds}", "--out", NEW + "/g.png", "--subject", "sub-999"]),
    ("path-perturb-corrupt", ["perturb", "show", "--data", "{corrupt_ds}", "--out", NEW + "/g.png"]),
    ("opt-perturb-unknown", ["perturb", "shuffle"]),
    # train
    ("val-train-model", ["train", "--model", "bogus", "--out", NEW]),
    ("val-train-size", ["train", "--model", "pix2pix", "--size", "huge", "--out", NEW]),
    ("val-train-steps-0", ["train", "--model", "pix2pix", "--steps", "0", "--out", NEW]),
    ("val-train-steps-neg", ["train", "--model", "pix2pix", "--steps", "-5", "--out", NEW]),
    ("val-train-batch-0", ["train", "--model", "pix2pix", "--batch-size", "0", "--out", NEW]),
    ("val-train-same", ["train", "--model", "pix2pix", "--source", "t1", "--target", "t1", "--out", NEW]),
    ("val-train-contrast", ["train", "--model", "pix2pix", "--source", "dwi", "--out", NEW]),
    ("val-train-device", ["train", "--model", "pix2pix", "--device", "tpu", "--out", NEW]),
    ("val-train-amp", ["train", "--model", "pix2pix", "--amp", "fp8", "--out", NEW]),
    ("val-train-ckpt-0", ["train", "--model", "pix2pix", "--checkpoint-every", "0", "--out", NEW]),
    ("val-train-image-size", ["train", "--model", "pix2pix", "--image-size", "7", "--out", NEW]),
    ("val-train-generator", ["train", "--model", "kd_attack", "--generator", "bogus", "--out", NEW]),
    ("val-train-variant", ["train", "--model", "kd_attack", "--variant", "bogus", "--out", NEW]),
    ("path-train-out-file", ["train", "--model", "pix2pix", "--out", "{file}"]),
    ("path-train-data-missing", ["train", "--model", "pix2pix", "--data", "{root}/missing", "--out", NEW]),
    ("path-train-data-corrupt", ["train", "--model", "pix2pix", "--data", "{corrupt_ds}", "--out", NEW]),
    ("opt-train-steps-text", ["train", "--model", "pix2pix", "--steps", "abc", "--out", NEW]),
    ("opt-train-no-model", ["train", "--out", NEW]),
    # eval
    ("run-eval-missing", ["eval", "{root}/missing"]),
    ("run-eval-no-config", ["eval", "{empty}"]),
    ("run-eval-config-corrupt", ["eval", "{run_badjson}"]),
    ("run-eval-config-list", ["eval", "{run_listjson}"]),
    ("run-eval-checkpoint-garbage", ["eval", "{run_badckpt}", "--data", "{ds}"]),
    ("val-eval-batch-0", ["eval", "{run}", "--data", "{ds}", "--batch-size", "0"]),
    ("val-eval-split", ["eval", "{run}", "--data", "{ds}", "--split", "bogus"]),
    ("val-eval-protocol", ["eval", "{run}", "--data", "{ds}", "--protocol", "bogus"]),
    ("val-eval-device", ["eval", "{run}", "--data", "{ds}", "--device", "tpu"]),
    ("path-eval-data-missing", ["eval", "{run}", "--data", "{root}/missing"]),
    ("path-eval-save-under-file", ["eval", "{run}", "--data", "{ds}", "--save-predictions", "{file}/p.npz"]),
    ("opt-eval-batch-text", ["eval", "{run}", "--batch-size", "many"]),
    # bench
    ("val-bench-suite-name", ["bench", "--suite", "bogus", "--out", NEW]),
    ("path-bench-suite-missing", ["bench", "--suite", "{root}/missing.toml", "--out", NEW]),
    ("path-bench-out-file", ["bench", "--suite", "{suite}", "--out", "{file}"]),
    ("val-bench-shard-range", ["bench", "--suite", "{suite}", "--out", NEW, "--shard", "3/2"]),
    ("val-bench-shard-text", ["bench", "--suite", "{suite}", "--out", NEW, "--shard", "x"]),
    ("val-bench-device", ["bench", "--suite", "{suite}", "--out", NEW, "--device", "tpu"]),
    ("val-bench-executor", ["bench", "--suite", "{suite}", "--out", NEW, "--executor", "pbs"]),
    ("val-bench-slurm-cpus", ["bench", "--suite", "{suite}", "--out", NEW, "--executor", "slurm", "--cpus", "0"]),
    ("val-bench-slurm-shard", ["bench", "--suite", "{suite}", "--out", NEW, "--executor", "slurm", "--shard", "0/2"]),
    # translate, leaderboard
    ("path-translate-missing", ["translate", "-i", "{root}/missing.nii.gz", "-o", NEW, "--run", "{run}"]),
    ("path-translate-run-not-a-run", ["translate", "-i", "{root}", "-o", NEW, "--run", "{empty}"]),
    ("res-leaderboard-empty", ["leaderboard", "{empty}", "--out", NEW + ".md"]),
    ("val-leaderboard-suffix", ["leaderboard", "{empty}", "--out", NEW + ".txt"]),
    *[(case_id, ["bench", "--suite", "{root}/" + case_id + ".toml", "--out", NEW]) for case_id, _ in SUITE_CASES],
    # merge
    ("res-merge-missing", ["merge", NEW, "{root}/missing"]),
    ("res-merge-empty", ["merge", NEW, "{empty}"]),
    ("res-merge-bad-manifest", ["merge", NEW, "{res_badmanifest}"]),
    ("res-merge-out-file", ["merge", "{file}", "{res}"]),
    # check
    ("res-check-missing", ["check", "{root}/missing", "--reference", "{bad_json}"]),
    ("res-check-ref-missing", ["check", "{res}", "--reference", "{root}/none.json"]),
    ("res-check-ref-corrupt", ["check", "{res}", "--reference", "{bad_json}"]),
    ("res-check-ref-list", ["check", "{res}", "--reference", "{list_json}"]),
    ("val-check-layer", ["check", "{res}", "--reference", "{bad_json}", "--layer", "bogus"]),
    ("val-check-tolerance", ["check", "{res}", "--reference", "{bad_json}", "--tolerance", "psnr"]),
    ("val-check-tolerance-metric", ["check", "{res}", "--reference", "{bad_json}", "--tolerance", "foo=1"]),
    ("val-check-variants", ["check", "{res}", "--reference", "{bad_json}", "--variants", "bogus"]),
    # report
    ("res-report-missing", ["report", "{root}/missing"]),
    ("res-report-empty", ["report", "{empty}"]),
    ("res-report-bad-csv", ["report", "{res_badcsv}"]),
    ("res-report-bad-manifest", ["report", "{res_badmanifest}"]),
    ("val-report-error", ["report", "{res}", "--error", "bogus"]),
    ("path-report-out-file", ["report", "{res}", "--out", "{file}"]),
    ("opt-unknown-command", ["frobnicate"]),
]


def test_the_corpus_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 100
    commands = {args[0] if args[0] != "data" else f"data {args[1]}" for _, args in CASES}
    assert {"data synth", "data show", "data prepare", "perturb", "train", "eval", "bench", "merge", "check",
            "report"} <= commands
    assert len({case_id for case_id, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("case_id", "args"), CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case_id, args, world, capsys, monkeypatch) -> None:
    monkeypatch.chdir(world["root"])
    argv = [a.format(**{k: str(v) for k, v in world.items()}) for a in args]
    before = _snapshot(world["root"], world["cache"])
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, f"{case_id}: exit {code}\n{err[-2000:]}"
    assert "Traceback" not in out + err, f"{case_id}: {err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case_id}: stderr is\n{err}"
    after = _snapshot(world["root"], world["cache"])
    created = sorted(set(after) - set(before))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k] and not Path(k).is_dir())
    removed = sorted(set(before) - set(after))
    assert not created and not changed and not removed, f"{case_id}: created {created[:5]}, changed {changed[:5]}, removed {removed[:5]}"


def test_the_world_is_valid_input(world) -> None:
    """The corpus means something only if the good inputs it damages are good."""
    assert json.loads((world["run"] / "config.json").read_text())["model"] == "pix2pix"
    assert (world["res"] / "results.csv").is_file()


def _toml_value(v) -> str:  # type: ignore[no-untyped-def]
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"


def _toml(doc: dict) -> str:  # type: ignore[type-arg]
    """A suite dict as TOML: scalars first, then one [section] per table, then [[models]]."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict) and k != "models"]
    if isinstance(doc.get("models"), list) and all(isinstance(m, dict) for m in doc["models"]):
        for m in doc["models"]:
            lines += ["", "[[models]]"] + [f"{k} = {_toml_value(v)}" for k, v in m.items()]
    elif "models" in doc:
        lines.append(f"models = {_toml_value(doc['models'])}")
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def _wrong_type(value):  # type: ignore[no-untyped-def]
    """A value of a type the field never takes: a table for a scalar or a list, a number for a
    string or a table."""
    return 7 if isinstance(value, (dict, str)) else {"wrong": 1}


def test_every_field_of_the_suite_schema_refuses_a_wrong_type(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every key the suite parser knows (top level, each section, a model entry, an external model
    entry), given a value of
    a type it never takes, is refused up front with one line naming the suite file: the corpus
    covers the whole schema by construction, so a new field cannot be left unchecked."""
    import tomllib

    from robustmri.bench.suite import _EXTERNAL_KEYS, _MODEL_KEYS, _SECTIONS, _TOP_KEYS, load_suite
    from robustmri.errors import ConfigError

    base = tomllib.loads(SUITE_OK)
    example = {  # a valid value for every key SUITE_OK leaves out, so each can be made wrong
        "description": "d", "seeds": [0], "reference_model": "pix2pix", "ablation": False, "protocol": {"name": "robustmri"},
        "slurm": {"partition": "p", "gpus": 1, "cpus": 2, "mem_gb": 8, "time_min": 10, "eval_tasks": 1, "train_processes": 1},
    }
    section_example = {
        ("data", "embedded"): {"n_slices": 4}, ("attacks", "objective"): "target", ("attacks", "loss"): "mse",
        ("attacks", "eot_samples"): 2, ("attacks", "budget"): {"pgd_linf": {"steps": 5}}, ("eval", "seed"): 0,
        ("eval", "split"): "test",
    }
    model_example = {"label": "pix2pix", "options": {}, "steps": 2, "batch_size": 2}
    cases: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    for key in sorted(_TOP_KEYS):
        doc = json.loads(json.dumps({**base, **{k: v for k, v in example.items() if k == key}}))
        doc[key] = _wrong_type(doc.get(key, example.get(key)))
        cases.append((key, doc))
    for section, keys in sorted(_SECTIONS.items()):
        for key in sorted(keys):
            doc = json.loads(json.dumps({**base, **({section: example[section]} if section in example and section not in base else {})}))
            table = doc.setdefault(section, {})
            value = table.get(key, section_example.get((section, key), (example.get(section) or {}).get(key)))
            table[key] = _wrong_type(value)
            cases.append((f"{section}.{key}", doc))
    for key in sorted(_MODEL_KEYS):
        doc = json.loads(json.dumps(base))
        model = doc["models"][0]
        model[key] = _wrong_type(model.get(key, model_example.get(key)))
        cases.append((f"models.{key}", doc))
    external = {"external": "mine.py:build", "label": "mine", "io_range": "unit", "direction": "t1->t2"}
    for key in sorted(_EXTERNAL_KEYS):
        doc = json.loads(json.dumps(base))
        doc["models"].append({**external, key: _wrong_type(external[key])})
        cases.append((f"models.external.{key}", doc))
    valid = json.loads(json.dumps({**base, **example}))
    valid["models"].append(external)
    for (section, key), value in section_example.items():
        valid[section][key] = value
    for key, value in model_example.items():
        valid["models"][0][key] = value
    (tmp_path / "valid.toml").write_text(_toml(valid))
    load_suite(tmp_path / "valid.toml")  # every example value is valid: each case below fails for its own field
    escaped = []
    for name, doc in cases:
        path = tmp_path / f"{name}.toml"
        path.write_text(_toml(doc))
        try:
            load_suite(path)
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), (name, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            escaped.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        escaped.append(f"{name}: accepted")
    assert not escaped, escaped
    assert len(cases) == len(_TOP_KEYS) + sum(len(k) for k in _SECTIONS.values()) + len(_MODEL_KEYS) + len(_EXTERNAL_KEYS)
