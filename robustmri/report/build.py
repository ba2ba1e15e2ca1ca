"""``build_report``: RESULTS_DIR/results.csv -> RESULTS_DIR/report/ (tables, figures, report.html).

Layout of the report folder (replaced as a whole, atomically, on every build)::

    report/report.html                self-contained page (inline CSS, base64 figures)
    report/summary.csv                every model x direction x perturbation x severity x metric:
                                      mean, std, median, n, 95% CI, Wilcoxon p and Holm p
    report/tables/<name>.md|.tex|.csv clean_quality, robustness_psnr, robustness_ssim, auc_psnr,
                                      corruption_error, ablation (when the manifest says so),
                                      claims (paired differences behind the KD+attack claims, when
                                      such pairs were run), teacher (when a run logged a teacher)
    report/figures/<name>.png|.pdf    degradation_psnr_<direction> (PSNR lost, shared axis),
                                      heatmap_psnr_<direction>, clean_psnr_box,
                                      samples_<direction> (when RESULTS_DIR/samples/*.npz exist)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from robustmri.analysis.robustness import CLEAN
from robustmri.analysis.stats import compare_to_reference, interval_summary, summarize
from robustmri.atomic import atomic_dir, write_text_atomic
from robustmri.errors import ConfigError, DataError
from robustmri.results import (
    FLOOR_MODELS, STABILITY_METRICS, read_clinical, read_manifest, read_model_records, read_table, registered_metrics,
    subject_means, value_columns,
)

__all__ = ["ReportInputs", "build_report", "load_results", "summary_frame"]


@dataclass
class ReportInputs:
    """A validated results table, its manifest and what the report derives from them."""

    frame: pd.DataFrame
    manifest: dict[str, Any]
    protocol: str
    suite: str
    reference: str
    models: list[str]
    ablation: bool
    warnings: list[str] = field(default_factory=list)
    #: models that see the real target at test time (``model.json`` says ``oracle``, or a
    #: ``:teacher_oracle`` variant): labelled, never bolded, ranked or given an mCE
    oracles: set[str] = field(default_factory=set)


ORACLE_SUFFIXES = (":teacher_oracle",)


def oracle_models(root: Path, models: list[str]) -> set[str]:
    """The oracle models of a results folder: those whose ``cells/**/model.json`` says so, and any
    ``kd_attack:teacher_oracle`` (results written before model.json recorded it)."""
    recorded = {label for label, info in read_model_records(root).items() if info.get("oracle")}
    return {m for m in models if m.endswith(ORACLE_SUFFIXES) or m in recorded}


FLOOR_MARGIN_DB = 1.0
"""A model whose clean PSNR is not this far above the lookup floor's is flagged at the report's top."""


def floor_labels(info: dict[str, dict[str, Any]]) -> dict[str, str]:
    """label -> registry name of every no-learning floor among ``info`` (label -> model.json)."""
    names = {label: str((i.get("model") or {}).get("name", "")) for label, i in info.items()}
    return {label: n for label, n in names.items() if n in FLOOR_MODELS}


def floor_findings(root: Path, frame: pd.DataFrame, oracles: set[str]) -> tuple[str | None, list[str]]:
    """(one warning line naming every model whose clean PSNR is not :data:`FLOOR_MARGIN_DB` above
    the ``lookup`` floor's in its direction, or None; a note per floor on the attacks it skipped)."""
    info = read_model_records(root)
    name = floor_labels(info)
    floors = set(name)
    notes = [f"{label} is a no-learning floor without gradients: the white-box attacks {', '.join(info[label].get('skipped_attacks', []))} "
             "were not run on it (black-box attacks and corruptions only)." for label in sorted(floors) if not info[label].get("gradients", True)]
    lookups = [label for label in floors if name[label] == "lookup"]
    clean = frame[frame["perturbation"] == CLEAN]
    if not lookups or clean.empty:
        return None, notes
    psnr = clean.groupby(["model", "direction", "subject"])["psnr"].mean().groupby(["model", "direction"]).mean()
    below, floor_text = [], []
    for direction in sorted(set(clean["direction"])):
        lookup = next((label for label in lookups if (label, direction) in psnr.index), None)
        if lookup is None:
            continue
        ref = float(psnr[(lookup, direction)])
        floor_text.append(f"{direction} {ref:.2f} dB")
        for model in sorted(set(clean["model"]) - floors - oracles):
            if (model, direction) in psnr.index and float(psnr[(model, direction)]) < ref + FLOOR_MARGIN_DB:
                below.append(f"{model} ({direction}, {float(psnr[(model, direction)]) - ref:+.2f} dB)")
    if not below:
        return None, notes
    return (f"Below the no-learning floor: {', '.join(below)} {'is' if len(below) == 1 else 'are'} not at least "
            f"{FLOOR_MARGIN_DB:g} dB above the intensity "
            f"lookup's clean PSNR ({'; '.join(floor_text)}): such a model has learned little beyond a mapping of "
            "intensities, and its robustness scores say little about its method."), notes


def external_notes(path: Path) -> list[str]:
    """One line per external model recorded in ``external.json``: what it is, and the white-box
    attacks it was not scored on for lack of gradients."""
    import json

    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return [f"Could not read {path.name}; the external models' notes are omitted."]
    notes = []
    for label, e in sorted(entries.items()):
        if not isinstance(e, dict):
            continue
        text = (f"{label} is an external model ({e.get('entry')}, io_range {e.get('io_range')}, "
                f"{e.get('parameters', 0):,} parameters, weights {e.get('digest')}), scored as given, never trained")
        if not e.get("gradients", True):
            text += (f"; no gradients flow through it, so the white-box attacks {', '.join(e.get('skipped_attacks', []))} "
                     "were not run on it (black-box attacks only) and its adversarial scores cover those alone")
        notes.append(text + ".")
    return notes


def load_results(results_dir: str | Path) -> ReportInputs:
    """Read and validate ``results_dir/results.csv`` and ``manifest.json`` (optional).

    Raises DataError (one line naming the file and the fix) when the folder or results.csv is
    missing, empty or lacks columns, when it mixes protocols or has no clean rows.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(f"results folder {root} does not exist; pass the RESULTS_DIR written by `robustmri bench`")
    path = root / "results.csv"
    frame = read_table(path, require_clean=True)
    protocol = str(frame["protocol"].iloc[0])

    manifest = read_manifest(root / "manifest.json")
    present = list(dict.fromkeys(frame["model"]))
    listed = [m for m in manifest.get("models", []) if isinstance(m, str) and m in present]
    models = listed + [m for m in present if m not in listed]
    warnings: list[str] = []
    reference = str(manifest.get("reference_model") or models[0])  # the suite's rule: its first model
    if reference not in present:
        warnings.append(f"The reference model {reference!r} is not in results.csv; {models[0]!r} serves as the "
                        "reference for tests and mCE instead.")
        reference = models[0]
    models = [reference] + [m for m in models if m != reference]
    n_subjects = frame.groupby("direction")["subject"].nunique()
    if int(n_subjects.min()) < 6:
        warnings.append(f"Only {int(n_subjects.min())} test subject(s) in a direction: a two-sided Wilcoxon test "
                        "of fewer than 6 pairs cannot reach p < 0.05, so no difference is marked significant.")
    warnings += external_notes(root / "external.json")
    definition = manifest.get("suite_definition")
    if isinstance(definition, dict) and definition.get("eval_split") == "val":
        warnings.insert(0, "Scored on the VALIDATION subjects (eval.split = 'val'): a tuning run to choose options, "
                           "not a result; report the chosen options scored on the test subjects.")
    oracles = oracle_models(root, models)
    if reference in oracles:
        raise DataError(f"{root / 'manifest.json'}: the reference model {reference!r} sees the target at test time (an "
                        "oracle): name a model that does not as the suite's reference_model")
    if oracles:
        warnings.append(f"{', '.join(sorted(oracles))} see(s) the real target at test time (oracle): shown for diagnosis, "
                        "marked (oracle), never bolded or ranked, and without mCE.")
    compared = [m for m in models if m not in oracles]
    if len(compared) < 2:
        warnings.insert(0, f"Only one model ({', '.join(compared) or models[0]}) in these results: nothing is compared, "
                           "ranked or tested. Score a baseline beside it: robustmri.benchmark(..., floors=True) (the "
                           "default) adds the no-learning lookup floor, baselines=True the suite's trained models.")
    below_floor, floor_notes = floor_findings(root, frame, oracles)
    warnings += floor_notes
    if below_floor is not None:
        warnings.insert(1 if warnings and warnings[0].startswith("Scored on the VALIDATION") else 0, below_floor)
    return ReportInputs(oracles=oracles, frame=frame, manifest=manifest, protocol=protocol,
                        suite=str(manifest.get("suite") or root.name), reference=reference, models=models,
                        ablation=bool(manifest.get("ablation", False)), warnings=warnings)


def summary_frame(
    subjects: pd.DataFrame, reference: str, *,
    metrics: Sequence[str] | None = None, frame: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every (direction, model, perturbation, family, severity, metric): mean/std/median/n over
    subjects, the 95% t interval of the mean, Wilcoxon p vs ``reference``, Holm-adjusted p and,
    with the slice-level ``frame``, the 95% interval of the paired difference to ``reference``
    (``diff_ci_low``/``diff_ci_high``: paired over subjects, seeds kept as a level; see
    :func:`robustmri.analysis.stats.paired_difference_ci`). Every interval is
    :func:`robustmri.analysis.intervals.interval`."""
    by = ["direction", "model", "perturbation", "family", "severity"]
    if metrics is None:  # the built-in metrics and any registered one the protocol scored
        metrics = [m for m in value_columns(subjects) if m not in STABILITY_METRICS]
    metrics = [m for m in metrics if m in subjects.columns]
    stats = summarize(subjects, by=by, metrics=metrics)
    cis = []
    for m in metrics:
        ci = interval_summary(subjects, by, m)
        cis.append(ci.assign(metric=m)[[*by, "metric", "ci_low", "ci_high"]])
    out = stats.merge(pd.concat(cis, ignore_index=True), on=[*by, "metric"], how="left")
    tests = compare_to_reference(subjects, reference, by=["direction", "perturbation", "family", "severity"],
                                 metrics=metrics)
    out = out.merge(tests[[*by, "metric", "mean_diff", "p", "p_holm"]], on=[*by, "metric"], how="left")
    if frame is not None:
        from robustmri.analysis.stats import paired_difference_ci, seed_subject_means

        seeds = seed_subject_means(frame, metrics)
        diffs = [paired_difference_ci(seeds, reference, ["direction", "perturbation", "family", "severity"], m)
                 .assign(metric=m) for m in metrics]
        d = pd.concat(diffs, ignore_index=True).rename(columns={"ci_low": "diff_ci_low", "ci_high": "diff_ci_high"})
        out = out.merge(d[[*by, "metric", "diff_ci_low", "diff_ci_high"]], on=[*by, "metric"], how="left")
    return out


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.replace("->", "_to_")).strip("_")


def build_report(
    results_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    error: Literal["ssim", "mae"] = "ssim",
) -> Path:
    """Write the report folder for a benchmark's results; returns the path of ``report.html``.

    Args:
        results_dir: folder with ``results.csv`` (and optionally ``manifest.json``, ``samples/``).
        out_dir: report folder; default ``results_dir/report``. Replaced as a whole, atomically.
        error: corruption error of the mCE: ``"ssim"`` (1 - SSIM) or ``"mae"``.
    """
    from robustmri.report import figures as F
    from robustmri.report import html as H
    from robustmri.report import design_tables as D
    from robustmri.report import tables as T

    if error not in ("ssim", "mae"):
        raise ConfigError(f"unknown mCE error {error!r}; use 'ssim' (1 - SSIM) or 'mae'")
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "report"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"report folder {out} is a file: choose another --out (the report folder is replaced as a whole)")
    inputs = load_results(results_dir)
    root = Path(results_dir)
    rank = {m: i for i, m in enumerate(inputs.models)}
    subjects = subject_means(inputs.frame)
    subjects = subjects.sort_values("model", key=lambda s: s.map(rank), kind="stable", ignore_index=True)
    ref = inputs.reference
    has_pert = bool(((subjects["perturbation"] != CLEAN) & (subjects["severity"] > 0)).any())

    extra = registered_metrics(subjects.columns)  # a protocol's registered metrics join the clean table
    tables = [T.clean_table(subjects, ref, metrics=("psnr", "ssim", "mae", *extra))]
    scores = None
    if has_pert:
        tables += [T.robustness_table(subjects, ref, "psnr", error=error),
                   T.robustness_table(subjects, ref, "ssim", error=error),
                   T.auc_table(subjects, ref, "psnr"),
                   T.ce_table(subjects, ref, error=error)]
        attacks = T.attack_table(subjects, ref, "psnr")
        if attacks is not None:
            tables.append(attacks)
        stability = T.stability_table(subjects, ref, "stability_psnr")
        if stability is not None:
            tables.append(stability)
        if ref is not None:
            from robustmri.analysis.robustness import summary_scores

            scores = summary_scores(subjects, ref, error=error)
            tables.insert(1, T.scores_table(scores, ref, subjects))
        from robustmri.analysis.sanity import sanity_checks

        for flag in sanity_checks(subjects):
            inputs.warnings.append(f"Threat-model check '{flag.check}' failed: {flag.message}.")
    from robustmri.analysis.tuning import choose, selection_scores

    selection = selection_scores(subjects[~subjects["model"].isin(inputs.oracles)], order=inputs.models)
    tuning = D.tuning_table(selection)
    if tuning is not None:
        tables.insert(1, tuning)
    if inputs.ablation:
        abl = D.ablation_table(subjects, ref)
        if abl is not None:
            tables.append(abl)
        else:
            inputs.warnings.append("The manifest asks for an ablation but results.csv has no 'kd_attack:<variant>' "
                                   "models; the ablation table is omitted.")

    clinical = read_clinical(root)
    if clinical is not None:
        from robustmri.report.clinical_tables import clinical_table, detector_note, segmentation_table, volume_table

        utility = clinical_table(clinical, ref)
        if utility is not None:
            utility.note = f"{utility.note} {detector_note(clinical)}".strip()
            tables.append(utility)
        for extra in (volume_table(clinical, ref), segmentation_table(clinical, ref)):
            if extra is not None:
                tables.append(extra)

    from robustmri.report import claims as C

    pairs = [p for p in C.claim_pairs(inputs.models, read_model_records(root), ref)
             if p[0] not in inputs.oracles and p[1] not in inputs.oracles]
    for extra in (C.claims_table(inputs.frame, pairs), C.teacher_table(root)):
        if extra is not None:
            tables.append(extra)
    lone = len([m for m in inputs.models if m not in inputs.oracles]) < 2
    for t in tables:
        t.mark_oracles(inputs.oracles)
        if lone:  # the footnotes' "Bold: best ..." and "test vs <model>" would compare a model with itself
            kept = [x for x in re.split(r"(?<=\.)\s+", t.note) if not re.search(r"bold|wilcoxon", x, re.I)]
            t.note = " ".join([*kept, "One model only: nothing is bold, ranked or tested."])
    with atomic_dir(out, overwrite=True) as tmp:
        table_items = []
        for t in tables:
            for suffix, text in ((".md", t.to_markdown()), (".tex", t.to_latex()), (".csv", t.to_csv())):
                write_text_atomic(tmp / "tables" / f"{t.name}{suffix}", text)
            table_items.append(H.TableItem(t.title, t.to_html(),
                                           [f"tables/{t.name}.{s}" for s in ("md", "tex", "csv")]))
        summary = summary_frame(subjects, ref, frame=inputs.frame)
        write_text_atomic(tmp / "summary.csv", summary.to_csv(index=False, float_format="%.6g"))
        if scores is not None:
            write_text_atomic(tmp / "scores.csv", scores.to_csv(index=False, float_format="%.6g"))
        if tuning is not None:
            picked = choose(selection)
            chosen = set(zip(picked["direction"], picked["model"], strict=True))
            marks = [(d, m) in chosen for d, m in zip(selection["direction"], selection["model"], strict=True)]
            write_text_atomic(tmp / "tuning.csv", selection.assign(chosen=marks).to_csv(index=False, float_format="%.6g"))

        figure_items = []
        fig_dir = tmp / "figures"

        def add_figure(fig: Any, name: str, title: str, caption: str) -> None:
            """Save ``fig`` as figures/<name>.png and .pdf and list it in the page."""
            png = F.save_figure(fig, fig_dir / name)
            figure_items.append(H.FigureItem(title, png, caption, [f"figures/{name}.png", f"figures/{name}.pdf"]))

        add_figure(F.clean_boxplot(subjects, metric="psnr", models=inputs.models, oracles=inputs.oracles),
                   "clean_psnr_box", "Clean PSNR per subject",
                   "One dot per test subject (slices averaged); boxes: median and quartiles.")
        for direction in dict.fromkeys(subjects["direction"]):
            if not has_pert or subjects[(subjects["direction"] == direction)
                                        & (subjects["perturbation"] != CLEAN)].empty:
                continue
            add_figure(F.degradation_curves(subjects, direction, metric="psnr", models=inputs.models, oracles=inputs.oracles),
                       f"degradation_psnr_{_slug(direction)}", f"PSNR lost vs severity, {direction}",
                       "PSNR lost from clean (dB; higher = worse) on one y axis shared by every panel; severity 0 is the "
                       "clean input, where every line starts at 0, and the legend gives each model's clean PSNR. Lines: "
                       "mean over subjects of each subject's loss; bands: 95% t interval of that mean.")
            add_figure(F.loss_heatmap(subjects, direction, metric="psnr", models=inputs.models, oracles=inputs.oracles),
                       f"heatmap_psnr_{_slug(direction)}", f"PSNR lost at a glance, {direction}",
                       "Model x perturbation at each perturbation's highest severity: PSNR lost from clean (dB, mean over "
                       "subjects); red loses, blue gains; blank: not scored (white-box attacks on a model without "
                       "gradients).")
        sample_files = sorted((root / "samples").glob("*.npz")) if (root / "samples").is_dir() else []
        # <direction>.npz only: the runner's <direction>.pair.npz (source/target/mask alone) are skipped
        for path in [p for p in sample_files if "." not in p.stem]:
            direction = path.stem.replace("_to_", "->")
            try:
                title = (f"Example test slice, {direction.replace('->', ' → ')}\ninput, target, each model's "
                         "output and |output − target|")
                fig = F.qualitative_grid(path, models=inputs.models, title=title, oracles=inputs.oracles)
            except (OSError, ValueError, EOFError, DataError) as exc:
                inputs.warnings.append(f"Could not read {path.name} ({exc}); its qualitative figure is omitted.")
                continue
            add_figure(fig, f"samples_{_slug(path.stem)}", f"Qualitative examples, {direction}",
                       "Rows: clean input and the strongest severity of a few perturbations. Columns: input, target, then "
                       "each model's output and its absolute error within the mask (one shared colour scale).")
            from robustmri.report.lesion_figure import lesion_figure

            try:
                lesions = lesion_figure(path, models=inputs.models, oracles=inputs.oracles,
                                        title=f"A lesion the models never saw, {direction.replace('->', ' → ')}")
            except (OSError, ValueError, EOFError, DataError) as exc:
                inputs.warnings.append(f"Could not draw the lesion figure from {path.name} ({exc}); it is omitted.")
                lesions = None
            if lesions is not None:
                add_figure(lesions, f"lesions_{_slug(path.stem)}", f"Lesion, {direction}",
                           "The test slice with the most lesion voxels. Rows: models. Columns: the real target, then clean "
                           "and under the strongest corruption each model's output and its absolute error. Cyan: the true "
                           "lesions; red: what the fixed detector finds (its findings of at least 8 mm², on this slice alone).")

        page = _page(inputs, subjects, table_items, figure_items, error)
        write_text_atomic(tmp / "report.html", page)
    return out / "report.html"


def _page(inputs: ReportInputs, subjects: pd.DataFrame, table_items: list, figure_items: list, error: str) -> str:
    from robustmri.report import html as H
    from robustmri.report.table import ordered_perturbations

    frame = inputs.frame
    n_sub = subjects.groupby("direction")["subject"].nunique()
    seeds = sorted(int(s) for s in frame["seed"].unique())
    perts = [p for p in ordered_perturbations(frame) if p != CLEAN]
    meta = [
        ("Suite", inputs.suite),
        ("Protocol", inputs.protocol),
        ("Reference model", inputs.reference),
        ("Models", ", ".join(inputs.models)),
        ("Directions", ", ".join(f"{d} ({int(n)} subject{'s' if n != 1 else ''})" for d, n in n_sub.items())),
        ("Seeds", ", ".join(map(str, seeds))),
        ("Perturbations", f"{len(perts)}: " + ", ".join(perts) if perts else "none"),
        ("Rows", f"{len(frame)} slices scored"),
    ]
    err_name = "1 − SSIM" if error == "ssim" else "MAE"
    howto = [
        "Every number is over test subjects: each subject's slices are averaged first (and then its values over "
        "training seeds), so each subject counts once; ± is the standard deviation over subjects.",
        "Severity 0 is the clean input; severities 1 to 5 are increasingly strong versions of each perturbation.",
        "Bold marks the best value of a column within a direction (higher PSNR/SSIM, lower MAE/NMSE/AUC/mCE).",
        f"* and ** mark p < 0.05 and p < 0.01 in a two-sided paired Wilcoxon signed-rank test against "
        f"{inputs.reference} over subjects, Holm-corrected over the models compared in that column; the reference "
        "row is never marked. With fewer than 6 subjects no difference can reach p < 0.05.",
        "AUC is the area under a model's PSNR (or SSIM) loss-vs-severity curve over severities 0..5 (dB × severity "
        "for PSNR): 0 means unaffected, lower is more robust.",
        f"mCE (as in ImageNet-C): a model's {err_name} summed over severities 1..5, divided by "
        f"{inputs.reference}'s, averaged over the corruptions (attacks excluded), in percent; {inputs.reference} = "
        "100, lower is better.",
        "Attacks maximise the reported error (masked MSE to the real target) with the perturbation anywhere in the "
        "image; the adversarial score is the PSNR each attack costs. random_linf (random signs of the same norm) is "
        "the control: every attack must beat it, PGD must beat FGSM, and Square (black-box) must not beat PGD. "
        "Violations are listed at the top of this page.",
    ]
    tables = {t.files[0].split("/")[-1].rsplit(".", 1)[0]: t for t in table_items}
    sections = [H.Section("Clean quality", [tables["clean_quality"]]
                          + [f for f in figure_items if f.title.startswith("Clean")])]
    if "tuning" in tables:
        sections.append(H.Section("Tuning", [tables["tuning"]],
                                  "Each method's trials (models labelled <method>@<trial>) on the validation "
                                  "subjects, and the one its criterion chooses: tables/tuning.csv and tuning.csv "
                                  "list every trial with `chosen`."))
    if "scores" in tables:
        sections.append(H.Section("Robustness scores", [tables["scores"]],
                                  "The two headline scores, kept apart: corruptions (mCE) and attacks (PSNR lost)."))
    if "robustness_psnr" in tables:
        sections.append(H.Section("Robustness", [tables[k] for k in ("robustness_psnr", "robustness_ssim", "auc_psnr",
                                                                   "corruption_error")]
                                  + [f for f in figure_items if f.title.startswith("PSNR lost")],
                                  "Family columns average the family's perturbations at each severity."))
    if "stability_psnr" in tables:
        sections.append(H.Section("Output stability", [tables["stability_psnr"]],
                                  "How far each perturbation moves what the model says, whatever the target: PSNR "
                                  "of the perturbed output against the clean output (same noise draw for a "
                                  "stochastic model). A model can keep its error to the target and still change "
                                  "its output, which matters clinically."))
    if "attacks_psnr" in tables:
        sections.append(H.Section("Adversarial robustness", [tables["attacks_psnr"]],
                                  "PSNR lost to each attack; random_linf is the control."))
    if "ablation" in tables:
        sections.append(H.Section("Ablation", [tables["ablation"]]))
    clinical = [tables[k] for k in ("clinical_utility", "volume_scores", "segmentation") if k in tables]
    if clinical:
        sections.append(H.Section("Clinical utility", clinical + [f for f in figure_items if f.title.startswith("Lesion")],
                                  "What a synthesized image keeps for its use (docs/clinical.md): lesions kept and "
                                  "invented, whole-volume scores, and the Dice of a frozen tissue segmenter."))
    samples = [f for f in figure_items if f.title.startswith("Qualitative")]
    if samples:
        sections.append(H.Section("Qualitative examples", samples))
    return H.render_page(f"robustmri report: {inputs.suite}", meta, howto, sections, inputs.warnings)
