"""CLI: --version, help, `data synth` and `data show`, and one-line errors with exit status 2."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from robustmri import __version__
from robustmri.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"robustmri {__version__}"


def test_help_lists_commands(capsys):
    assert main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert "synth" in out and "show" in out


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "robustmri", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_synth_and_show(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["data", "synth", "--out", str(out), "--subjects", "2", "--size", "32", "--slices", "4", "--seed", "1", "--lesions", "1"])
    assert rc == 0
    assert sorted(p.name for p in (out / "sub-001").iterdir()) == [
        "flair.nii.gz", "params.json", "pd.nii.gz", "seg.nii.gz", "t1.nii.gz", "t2.nii.gz"
    ]
    png = tmp_path / "montage.png"
    assert main(["data", "show", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second synth into the same folder refuses unless --overwrite
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(out), "--subjects", "1", "--size", "32", "--slices", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(out), "--subjects", "1", "--size", "32", "--slices", "2", "--overwrite"]) == 0
    assert not (out / "sub-001").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--contrasts", "t1,dwi"], "unknown contrast 'dwi'"),
        (["--size", "0"], "size must be"),
        (["--subjects", "0"], "number of subjects"),
        (["--slices", "0"], "n_slices"),
    ],
)
def test_synth_bad_input(tmp_path, capsys, args, fragment):
    rc = main(["data", "synth", "--out", str(tmp_path / "x"), "--size", "32", "--slices", "2", "--subjects", "1", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []


def test_synth_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc = main(["data", "synth", "--out", str(blocker / "ds"), "--subjects", "1", "--size", "32", "--slices", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and str(blocker) in err and "writable" in err


def test_show_missing_folder(tmp_path, capsys):
    rc = main(["data", "show", str(tmp_path / "nope"), "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope" in err and "robustmri data synth" in err


def test_missing_nilearn_is_one_line_error(tmp_path, capsys, monkeypatch):
    import robustmri.data.anatomy as anatomy

    anatomy._load_full_template.cache_clear()
    anatomy._template_tissues_cached.cache_clear()
    monkeypatch.setitem(sys.modules, "nilearn", None)  # import nilearn -> ImportError
    try:
        rc = main(["data", "synth", "--out", str(tmp_path / "ds"), "--subjects", "1", "--size", "32", "--slices", "2"])
        err = capsys.readouterr().err
        assert rc == 2 and "nilearn" in err and "pip install nilearn" in err
        assert not (tmp_path / "ds").exists()
    finally:
        anatomy._load_full_template.cache_clear()
        anatomy._template_tissues_cached.cache_clear()


def test_help_lists_every_builtin_suite_and_reads_as_written(capsys):
    """`bench --help` names every built-in suite, shows "[slurm]" literally (no markup eaten: it read
    "the suite's , else"), no `<bool>` beside flags, and rejoins hard-wrapped help lines."""
    from robustmri.bench.suite import builtin_suites

    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    unwrapped = re.sub(r"(?<=[a-z])-\n\s+", "-", out)  # the help wrapper may break a name after a hyphen
    for name in builtin_suites():
        assert name in " ".join(unwrapped.split()), name
    assert "the suite's [slurm], else" in flat
    assert "<bool>" not in out
    assert main(["eval", "--help"]) == 0
    eval_help = " ".join(capsys.readouterr().out.split())
    assert "with no options, a bench run gives the bench's clean numbers" in eval_help


def test_unknown_names_suggest_the_nearest_allowed_one(capsys):
    from robustmri.bench.suite import parse_suite
    from robustmri.errors import ConfigError, did_you_mean

    assert did_you_mean("perturbation", ["perturbations", "attacks"]) == " (did you mean 'perturbations'?)"
    assert did_you_mean("zzz", ["perturbations", "attacks"]) == ""
    assert did_you_mean({"modles", "seedz"}, ["models", "seeds"]).count("->") == 2
    base = {"name": "x", "models": [{"name": "pix2pix"}]}
    for raw, hint in [
        ({**base, "perturbation": {}}, "did you mean 'perturbations'?"),
        ({**base, "models": [{"name": "pix2pixx"}]}, "did you mean 'pix2pix'?"),
        ({**base, "perturbations": {"names": ["gaussian_nois"]}}, "did you mean 'gaussian_noise'?"),
        ({**base, "eval": {"batchsize": 4}}, "did you mean 'batch_size'?"),
    ]:
        with pytest.raises(ConfigError, match=hint.replace("?", r"\?")):
            parse_suite(raw, "s.toml")
    assert main(["bench", "--suite", "smok"]) == 2
    assert "did you mean 'smoke'?" in capsys.readouterr().err
