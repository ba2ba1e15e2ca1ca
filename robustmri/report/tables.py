"""Comparison tables: built from a subject frame, rendered as Markdown, LaTeX, HTML and CSV.

A :class:`Table` holds rows grouped by direction (one block of models per direction), columns
(optionally under a spanning group header such as a perturbation family) and one :class:`Cell` per
(direction, row, column). Every cell is a mean over subjects, optionally with the std over subjects
and the Holm-adjusted p-value of a paired Wilcoxon test against the table's baseline row.

Rendering rules, the same in every format:

- best value per column within a direction block in **bold**: highest PSNR/SSIM, lowest
  MAE/NMSE/AUC/mCE, compared at the displayed precision (ties are all bold);
- ``*`` when p_Holm < 0.05 and ``**`` when p_Holm < 0.01 against the baseline row (Holm over every
  test of the table within a direction: all its columns and models); the baseline row
  itself is never marked;
- oracle rows (models that see the real target at test time) are labelled ``(oracle)``, never bold
  and have no mCE (:meth:`Table.mark_oracles`).

The builders (:func:`clean_table`, :func:`robustness_table`, :func:`auc_table`, :func:`ce_table`,
:func:`ablation_table`) take the subject frame of :func:`robustmri.analysis.stats.subject_means`.
"""

from __future__ import annotations

import html as _html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from robustmri.analysis.robustness import (
    CLEAN,
    corruption_errors,
    degradation,
    degradation_auc,
    mean_corruption_error,
)
from robustmri.analysis.sanity import CONTROL
from robustmri.analysis.stats import BETTER, compare_to_reference, holm, summarize

__all__ = [
    "Cell",
    "Column",
    "Table",
    "ablation_table",
    "attack_table",
    "auc_table",
    "ce_table",
    "clean_table",
    "robustness_table",
    "scores_table",
    "significance_mark",
    "stability_table",
    "tuning_table",
]

Better = Literal["higher", "lower"]

FAMILY_ORDER = ("clean", "noise", "image", "kspace", "geometric", "adversarial")
"""Canonical order of perturbation families in tables and figures (others follow, alphabetically)."""

METRIC_LABEL = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae": "MAE", "nmse": "NMSE"}
METRIC_DECIMALS = {"psnr": 2, "ssim": 4, "mae": 4, "nmse": 4}


@dataclass(frozen=True)
class Column:
    """One value column: ``key`` (CSV name), ``label`` (header), optional spanning ``group`` header,
    which direction is ``better`` (None: no bold), displayed ``decimals`` and whether to show the
    std."""

    key: str
    label: str
    group: str = ""
    better: Better | None = None
    decimals: int = 2
    show_std: bool = False
    #: show ``mean [low, high]`` (a confidence interval) with signed numbers: a paired difference
    show_ci: bool = False


@dataclass
class Cell:
    """A mean over subjects, its std over subjects, the Holm-adjusted p-value vs the baseline row
    (NaN: not tested) and the number of subjects ``n``."""

    mean: float
    std: float = math.nan
    p: float = math.nan
    n: int = 0
    bold: bool = False
    low: float = math.nan
    high: float = math.nan
    #: averaged over fewer perturbations than the other rows of its column (a model without
    #: gradients skips the white-box attacks): marked with :data:`PARTIAL_MARK`, never bold
    partial: bool = False


PARTIAL_MARK = "†"
PARTIAL_NOTE = (f"{PARTIAL_MARK}: averaged over fewer perturbations than the other rows (a model without gradients is "
                "not scored under white-box attacks): not comparable, never bold.")


@dataclass
class Table:
    """A comparison table; see the module docstring for the rendering rules."""

    name: str
    title: str
    columns: list[Column]
    rows: list[tuple[str, str]]
    cells: dict[tuple[str, str, str], Cell]
    baseline: str | None
    note: str = ""
    group_label: str = "Direction"
    row_label: str = "Model"
    oracles: frozenset[str] = frozenset()

    ORACLE_TAG = " (oracle)"
    #: columns an oracle gets no value in (scores relative to the field, such as mCE)
    ORACLE_EMPTY = ("mce", "mce_low", "mce_high", "rel_mce")

    def mark_oracles(self, models: set[str] | frozenset[str]) -> None:
        """Label the rows of ``models`` ``"<model> (oracle)"``, drop their mCE cells and bold the
        best of the other rows only. A no-op without oracle rows."""
        present = {r for _, r in self.rows if r in models}
        if not present:
            return
        rename = {r: r + self.ORACLE_TAG for r in present}
        self.rows = [(g, rename.get(r, r)) for g, r in self.rows]
        self.cells = {(g, rename.get(r, r), k): c for (g, r, k), c in self.cells.items()
                      if not (r in present and k in self.ORACLE_EMPTY)}
        self.oracles = frozenset(rename.values())
        self.note = (self.note + " " if self.note else "") + (
            "Rows marked (oracle) see the real target at test time: shown for diagnosis, never bold, no mCE.")
        self.mark_best()

    # ---------------------------------------------------------------- rendering helpers
    def cell(self, group: str, row: str, column: Column) -> Cell | None:
        return self.cells.get((group, row, column.key))

    def groups(self) -> list[str]:
        return list(dict.fromkeys(g for g, _ in self.rows))

    def mark_best(self) -> None:
        """Set ``bold`` on the best cell(s) of each column within each group (displayed precision)."""
        for group in self.groups():
            for col in self.columns:
                if col.better is None:
                    continue
                found = [(r, c) for g, r in self.rows if g == group and (c := self.cell(g, r, col)) is not None]
                vals = {r: round(c.mean, col.decimals) for r, c in found
                        if np.isfinite(c.mean) and r not in self.oracles and not c.partial}
                if len(vals) < 2:  # one model alone is never ranked against itself
                    for _, c in found:
                        c.bold = False
                    continue
                best = max(vals.values()) if col.better == "higher" else min(vals.values())
                for r, c in found:
                    c.bold = r in vals and vals[r] == best

    # ----------------------------------------------------------------------- formats
    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown: bold as ``**v**``, significance marks escaped as ``\\*``."""
        heads = [self.group_label, self.row_label] + [f"{c.group} {c.label}".strip() for c in self.columns]
        lines = [f"**{self.title}**", "", "| " + " | ".join(_md_escape(h) for h in heads) + " |",
                 "|" + "|".join([":--", ":--"] + ["--:"] * len(self.columns)) + "|"]
        previous = None
        for group, row in self.rows:
            texts = []
            for col in self.columns:
                c = self.cell(group, row, col)
                if c is None:
                    texts.append("–")
                    continue
                body = _md_escape(_value_text(c, col, "±"))
                body = f"**{body}**" if c.bold else body
                texts.append(body + significance_mark(c.p).replace("*", "\\*"))
            shown = group if group != previous else ""
            previous = group
            lines.append("| " + " | ".join([_md_escape(shown), _md_escape(row), *texts]) + " |")
        if self.note:
            lines += ["", _md_escape(self.note)]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``; wide tables are
        wrapped in ``\\resizebox`` from graphicx)."""
        n = len(self.columns)
        out = ["% requires \\usepackage{booktabs}" + (", \\usepackage{graphicx}" if n > 8 else ""),
               "\\begin{table}[t]", "\\centering", "\\small",
               f"\\caption{{{_tex(self.title)}. {_tex(self.note)}}}", f"\\label{{tab:{self.name}}}"]
        if n > 8:
            out.append("\\resizebox{\\linewidth}{!}{%")
        out.append("\\begin{tabular}{ll" + "r" * n + "}")
        out.append("\\toprule")
        spans = _spans(self.columns)
        if any(g for g, _, _ in spans):
            head, rules = ["", ""], []
            for g, start, width in spans:
                head.append(f"\\multicolumn{{{width}}}{{c}}{{{_tex(g)}}}" if g and width > 1 else _tex(g))
                if g:
                    rules.append(f"\\cmidrule(lr){{{start + 3}-{start + 2 + width}}}")
            out.append(" & ".join(head) + " \\\\")
            out.append(" ".join(rules))
        out.append(" & ".join([_tex(self.group_label), _tex(self.row_label)] + [_tex(c.label) for c in self.columns])
                   + " \\\\")
        out.append("\\midrule")
        previous = None
        for group, row in self.rows:
            if previous is not None and group != previous:
                out.append("\\midrule")
            texts = []
            for col in self.columns:
                c = self.cell(group, row, col)
                if c is None:
                    texts.append("--")
                    continue
                body = _value_text(c, col, "$\\pm$")
                body = f"\\textbf{{{body}}}" if c.bold else body
                mark = significance_mark(c.p)
                texts.append(body + (f"$^{{{mark}}}$" if mark else ""))
            shown = _tex(group) if group != previous else ""
            previous = group
            out.append(" & ".join([shown, _tex(row), *texts]) + " \\\\")
        out.append("\\bottomrule")
        out.append("\\end{tabular}" + ("}" if n > 8 else ""))
        out.append("\\end{table}")
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        """An HTML ``<table>`` (class ``results``) with spanning group headers; bold as ``<b>``."""
        esc = _html.escape
        spans = _spans(self.columns)
        out = ["<table class=\"results\">", "<thead>"]
        grouped = any(g for g, _, _ in spans)
        rowspan = " rowspan=\"2\"" if grouped else ""
        first = [f"<th{rowspan}>{esc(self.group_label)}</th>", f"<th{rowspan}>{esc(self.row_label)}</th>"]
        if grouped:
            first += [f"<th colspan=\"{w}\">{esc(g)}</th>" for g, _, w in spans]
            out.append("<tr>" + "".join(first) + "</tr>")
            out.append("<tr>" + "".join(f"<th>{esc(c.label)}</th>" for c in self.columns) + "</tr>")
        else:
            out.append("<tr>" + "".join(first) + "".join(f"<th>{esc(c.label)}</th>" for c in self.columns) + "</tr>")
        out.append("</thead>")
        out.append("<tbody>")
        previous = None
        for group, row in self.rows:
            cls = " class=\"block\"" if previous is not None and group != previous else ""
            tds = []
            for col in self.columns:
                c = self.cell(group, row, col)
                if c is None:
                    tds.append("<td>–</td>")
                    continue
                body = esc(_value_text(c, col, "±"))
                body = f"<b>{body}</b>" if c.bold else body
                mark = significance_mark(c.p)
                tds.append(f"<td>{body}{f'<sup>{mark}</sup>' if mark else ''}</td>")
            shown = esc(group) if group != previous else ""
            previous = group
            out.append(f"<tr{cls}><th class=\"grp\">{shown}</th><th>{esc(row)}</th>" + "".join(tds) + "</tr>")
        out.append("</tbody>")
        out.append("</table>")
        if self.note:
            out.append(f"<p class=\"note\">{esc(self.note)}</p>")
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        """Machine-readable wide CSV: per column ``<key>`` (mean), ``<key>_std`` where shown,
        ``<key>_ci_low`` / ``<key>_ci_high`` for intervals, ``<key>_p_holm`` where tested,
        ``<key>_n`` (subjects)."""
        records = []
        for group, row in self.rows:
            rec: dict[str, object] = {"direction": group, "row": row}
            for col in self.columns:
                c = self.cell(group, row, col)
                rec[col.key] = c.mean if c else math.nan
                if col.show_std:
                    rec[f"{col.key}_std"] = c.std if c else math.nan
                if col.show_ci:
                    rec[f"{col.key}_ci_low"] = c.low if c else math.nan
                    rec[f"{col.key}_ci_high"] = c.high if c else math.nan
                if self._tested(col):
                    rec[f"{col.key}_p_holm"] = c.p if c else math.nan
                rec[f"{col.key}_n"] = c.n if c else 0
            records.append(rec)
        buf = io.StringIO()
        pd.DataFrame(records).to_csv(buf, index=False, float_format="%.6g")
        return buf.getvalue()

    def _tested(self, col: Column) -> bool:
        return any(np.isfinite(c.p) for (g, r, k), c in self.cells.items() if k == col.key)


def significance_mark(p: float) -> str:
    """``"**"`` for p < 0.01, ``"*"`` for p < 0.05, else ``""`` (NaN: not tested -> ``""``)."""
    if p is None or not np.isfinite(p):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def _value_text(c: Cell, col: Column, pm: str) -> str:
    if not np.isfinite(c.mean):
        return "n/a"
    if c.partial:
        return _value_text(Cell(c.mean, c.std, low=c.low, high=c.high), col, pm) + PARTIAL_MARK
    if col.show_ci:
        text = f"{c.mean:+.{col.decimals}f}"
        if np.isfinite(c.low) and np.isfinite(c.high):
            text += f" [{c.low:+.{col.decimals}f}, {c.high:+.{col.decimals}f}]"
        return text
    text = f"{c.mean:.{col.decimals}f}"
    if col.show_std and np.isfinite(c.std):
        text += f" {pm} {c.std:.{col.decimals}f}"
    return text


def _spans(columns: Sequence[Column]) -> list[tuple[str, int, int]]:
    """Runs of consecutive columns with the same group: (group, first index, width)."""
    spans: list[tuple[str, int, int]] = []
    for i, c in enumerate(columns):
        if spans and spans[-1][0] == c.group:
            g, s, w = spans[-1]
            spans[-1] = (g, s, w + 1)
        else:
            spans.append((c.group, i, 1))
    return spans


_TEX_SPECIAL = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
                "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"}


def _tex(text: str) -> str:
    out = "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))
    return (out.replace("->", "$\\rightarrow$").replace("±", "$\\pm$").replace("×", "$\\times$")
            .replace("≥", "$\\geq$").replace("−", "$-$").replace("<", "$<$").replace("–", "--"))


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


# ------------------------------------------------------------------------------ builders


def ordered_perturbations(frame: pd.DataFrame) -> list[str]:
    """Perturbations of ``frame`` (columns perturbation, family) sorted by family then name."""
    pairs = frame[["perturbation", "family"]].drop_duplicates()
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    keyed = sorted(pairs.itertuples(index=False),
                   key=lambda r: (rank.get(r.family, len(rank)), str(r.family), str(r.perturbation)))
    return list(dict.fromkeys(r.perturbation for r in keyed))


def ordered_families(frame: pd.DataFrame) -> list[str]:
    """Families of ``frame`` in :data:`FAMILY_ORDER` (unknown ones after, alphabetically)."""
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    return sorted(dict.fromkeys(frame["family"]), key=lambda f: (rank.get(f, len(rank)), str(f)))


def _order_rows(models: Sequence[str], baseline: str | None) -> list[str]:
    models = list(dict.fromkeys(models))
    if baseline in models:
        models.remove(baseline)
        models.insert(0, baseline)
    return models


def _fill(
    table: Table,
    long: pd.DataFrame,
    *,
    test: bool = True,
) -> None:
    """Add cells from a long per-subject frame ``direction, model, column, subject, score``."""
    if long.empty:
        return
    stats = summarize(long, by=["direction", "model", "column"], metrics=["score"])
    for rec in stats.itertuples(index=False):
        table.cells[(rec.direction, rec.model, rec.column)] = Cell(float(rec.mean), float(rec.std), n=int(rec.n))
    if test and table.baseline is not None:
        tests = compare_to_reference(long, table.baseline, by=["direction", "column"], metrics=["score"])
        # the family is the whole table within a direction: every column and every model
        for _, block in tests.groupby("direction", sort=False):
            for rec, p in zip(block.itertuples(index=False), holm(block["p"].to_numpy()), strict=True):
                cell = table.cells.get((rec.direction, rec.model, rec.column))
                if cell is not None:
                    cell.p = float(p)


def _rows_for(
    subjects: pd.DataFrame, baseline: str | None, models: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    rows = []
    for direction in dict.fromkeys(subjects["direction"]):
        present = list(dict.fromkeys(subjects.loc[subjects["direction"] == direction, "model"]))
        if models is not None:
            present = [m for m in models if m in present]
        rows += [(direction, m) for m in _order_rows(present, baseline)]
    return rows


def mark_partial(table: Table, pert: pd.DataFrame, family_columns: bool = True, summary_columns: tuple[str, ...] = ()) -> None:
    """Flag the cells averaged over fewer perturbations than their column's other rows.

    ``pert``: the per-subject rows the table was built from (direction, model, family, severity,
    perturbation); family columns are keyed ``<family>_s<severity>``; ``summary_columns`` (AUC,
    mCE) average over every perturbation. Adds :data:`PARTIAL_NOTE` to the note when any is flagged."""
    found = False
    if family_columns:
        sets = pert.groupby(["direction", "family", "severity", "model"])["perturbation"].agg(frozenset)
        for (direction, family, sev), block in sets.groupby(level=[0, 1, 2]):
            union = frozenset().union(*block.to_numpy())
            for (_, _, _, model), got in block.items():
                cell = table.cells.get((direction, model, f"{family}_s{int(sev)}"))
                if cell is not None and got < union:
                    cell.partial = found = True
    if summary_columns:
        sets = pert.groupby(["direction", "model"])["perturbation"].agg(frozenset)
        for direction, block in sets.groupby(level=0):
            union = frozenset().union(*block.to_numpy())
            for (_, model), got in block.items():
                for key in summary_columns:
                    cell = table.cells.get((direction, model, key))
                    if cell is not None and got < union:
                        cell.partial = found = True
    if found and PARTIAL_NOTE not in table.note:
        table.note = (table.note + " " if table.note else "") + PARTIAL_NOTE


def _note(baseline: str | None, what: str = "mean ± std over test subjects") -> str:
    text = f"Values: {what}. Bold: best per column within a direction."
    if baseline is not None:
        text += (f" * p<0.05, ** p<0.01: paired two-sided Wilcoxon signed-rank test vs {baseline} over subjects, "
                 "Holm-corrected over every test in the table within a direction (all columns and models).")
    return text


def clean_table(
    subjects: pd.DataFrame, reference: str | None, metrics: Sequence[str] = ("psnr", "ssim", "mae")
) -> Table:
    """Clean quality per model and direction: mean ± std over subjects of each metric."""
    clean = subjects[subjects["perturbation"] == CLEAN]
    metrics = [m for m in metrics if m in clean.columns]
    columns = [Column(m, METRIC_LABEL.get(m, m), better=BETTER.get(m), decimals=METRIC_DECIMALS.get(m, 3),
                      show_std=True) for m in metrics]
    table = Table("clean_quality", "Clean translation quality", columns, _rows_for(clean, reference), {}, reference,
                  _note(reference))
    long = clean.melt(id_vars=["direction", "model", "subject"], value_vars=metrics, var_name="column",
                      value_name="score")
    _fill(table, long)
    table.mark_best()
    return table


def robustness_table(
    subjects: pd.DataFrame,
    reference: str | None,
    metric: str = "psnr",
    *,
    error: Literal["ssim", "mae"] = "ssim",
) -> Table:
    """Mean ``metric`` per model under each perturbation family and severity, plus AUC and mCE.

    Columns: Clean, then per family the severities present (the per-subject values of the family's
    perturbations are averaged first), ``AUC`` (mean over perturbations of the per-subject area
    under the ``metric`` degradation curve, metric x severity, lower = more robust; tested) and
    ``mCE`` (percent of the reference's, from :func:`corruption_errors` with ``error``; not tested).
    """
    better = BETTER.get(metric, "higher")
    dec = METRIC_DECIMALS.get(metric, 3)
    unit = "dB" if metric == "psnr" else ""
    rows = _rows_for(subjects, reference)
    # the attacks' control (random signs) is not a perturbation a model should be robust to: it has
    # its own column in the adversarial table and stays out of family means and AUC
    subjects = subjects[subjects["perturbation"] != CONTROL]
    clean = subjects[subjects["perturbation"] == CLEAN]
    pert = subjects[(subjects["perturbation"] != CLEAN) & (subjects["severity"] > 0)]
    columns = [Column("clean", "clean", better=better, decimals=dec)]
    long_parts = [clean.assign(column="clean")[["direction", "model", "subject", "column", metric]]]
    fam = pert.groupby(["direction", "model", "family", "severity", "subject"], sort=False)[metric].mean().reset_index()
    families = ordered_families(pert)
    for family in families:
        for sev in sorted(fam.loc[fam["family"] == family, "severity"].unique()):
            key = f"{family}_s{int(sev)}"
            columns.append(Column(key, f"s{int(sev)}", group=family, better=better, decimals=dec))
            part = fam[(fam["family"] == family) & (fam["severity"] == sev)]
            long_parts.append(part.assign(column=key)[["direction", "model", "subject", "column", metric]])
    auc_unit = f"{unit} × sev".strip() if unit else "× sev"
    table = Table(f"robustness_{metric}", f"{METRIC_LABEL.get(metric, metric)} under perturbations", columns, rows,
                  {}, reference, "")
    long = pd.concat(long_parts, ignore_index=True).rename(columns={metric: "score"})
    if not pert.empty:
        deg = degradation(subjects, [metric])
        auc = degradation_auc(deg, metric)
        per_subject = auc.groupby(["direction", "model", "subject"], sort=False)["auc"].mean().reset_index()
        columns.append(Column("auc", f"AUC ({auc_unit})", group="scores", better="lower", decimals=dec))
        long = pd.concat([long, per_subject.assign(column="auc").rename(columns={"auc": "score"})], ignore_index=True)
    _fill(table, long)
    if not pert.empty and reference is not None and error in subjects.columns:
        ce = corruption_errors(subjects, reference, error=error)
        mce = mean_corruption_error(ce)
        if mce["mce"].notna().any():
            columns.append(Column("mce", "mCE (%)", group="scores", better="lower", decimals=1))
            for rec in mce.itertuples(index=False):
                table.cells[(rec.direction, rec.model, "mce")] = Cell(float(rec.mce), n=int(rec.n_perturbations))
    err_name = "1 − SSIM" if error == "ssim" else "MAE"
    table.note = (_note(reference, "mean over test subjects; family columns average the family's perturbations")
                  + f" AUC: area under the per-subject {metric.upper()} loss-vs-severity curve over severities 0..5 "
                  f"({auc_unit}), averaged over perturbations; lower is more robust."
                  + (f" mCE: summed {err_name} over severities relative to {reference} (=100), averaged over "
                     "perturbations; lower is better." if reference is not None else ""))
    mark_partial(table, pert, summary_columns=("auc", "mce"))
    table.mark_best()
    return table


def auc_table(subjects: pd.DataFrame, reference: str | None, metric: str = "psnr") -> Table:
    """Per-perturbation AUC of the ``metric`` degradation curve (metric x severity), tested vs reference."""
    dec = METRIC_DECIMALS.get(metric, 3)
    deg = degradation(subjects[subjects["perturbation"] != CONTROL], [metric])
    auc = degradation_auc(deg, metric)
    perts = ordered_perturbations(auc)
    fam_of = dict(zip(auc["perturbation"], auc["family"]))
    columns = [Column(p, p, group=fam_of[p], better="lower", decimals=dec) for p in perts]
    columns.append(Column("mean", "mean", group="all", better="lower", decimals=dec))
    unit = "dB × severity" if metric == "psnr" else "× severity"
    table = Table(f"auc_{metric}", f"Area under the {metric.upper()} degradation curve ({unit})", columns,
                  _rows_for(subjects, reference), {}, reference, "")
    long = auc.rename(columns={"perturbation": "column", "auc": "score"})[["direction", "model", "subject", "column",
                                                                            "score"]]
    mean = auc.groupby(["direction", "model", "subject"], sort=False)["auc"].mean().reset_index()
    long = pd.concat([long, mean.assign(column="mean").rename(columns={"auc": "score"})], ignore_index=True)
    _fill(table, long)
    table.note = _note(reference, f"mean over subjects of the area under the {metric.upper()} loss curve, severities "
                                  "0..5, trapezoid rule; lower is more robust")
    mark_partial(table, auc, family_columns=False, summary_columns=("mean",))
    table.mark_best()
    return table


def ce_table(subjects: pd.DataFrame, reference: str, *, error: Literal["ssim", "mae"] = "ssim") -> Table:
    """Per-perturbation corruption error CE_p (%), mCE and relative mCE; the reference scores 100."""
    ce = corruption_errors(subjects, reference, error=error)
    mce = mean_corruption_error(ce)
    perts = ordered_perturbations(ce)
    fam_of = dict(zip(ce["perturbation"], ce["family"]))
    columns = [Column(p, p, group=fam_of[p], better="lower", decimals=1) for p in perts]
    columns += [Column("mce", "mCE", group="mean", better="lower", decimals=1),
                Column("rel_mce", "rel. mCE", group="mean", better="lower", decimals=1)]
    table = Table("corruption_error", "Corruption error CE (%, reference = 100)", columns,
                  _rows_for(subjects, reference), {}, reference, "")
    for rec in ce.itertuples(index=False):
        table.cells[(rec.direction, rec.model, rec.perturbation)] = Cell(float(rec.ce), n=int(rec.n_severities))
    for rec in mce.itertuples(index=False):
        table.cells[(rec.direction, rec.model, "mce")] = Cell(float(rec.mce), n=int(rec.n_perturbations))
        table.cells[(rec.direction, rec.model, "rel_mce")] = Cell(float(rec.rel_mce), n=int(rec.n_perturbations))
    err_name = "1 − SSIM" if error == "ssim" else "MAE"
    table.note = (f"CE: mean {err_name} over subjects, summed over severities 1..5, divided by {reference}'s, in %. "
                  "mCE: mean CE over perturbations. rel. mCE: the same with each model's clean error subtracted "
                  "first. Lower is better; bold: best per column.")
    mark_partial(table, ce, family_columns=False, summary_columns=("mce", "rel_mce"))
    table.mark_best()
    return table


def ablation_table(subjects: pd.DataFrame, reference: str | None, *, prefix: str = "kd_attack:") -> Table | None:
    """KD+attack variants: clean PSNR/SSIM and PSNR under each perturbation and severity present.

    Rows: the models named ``<prefix><variant>``; the baseline of the paired tests is
    ``kd_attack:g_only`` if present, else ``reference`` (added as a row). None when no variant.
    """
    variants = [m for m in dict.fromkeys(subjects["model"]) if str(m).startswith(prefix)]
    if not variants:
        return None
    baseline = f"{prefix}g_only" if f"{prefix}g_only" in variants else reference
    models = ([baseline] if baseline is not None and baseline not in variants else []) + variants
    sub = subjects[subjects["model"].isin(models)]
    clean = sub[sub["perturbation"] == CLEAN]
    columns = [Column("clean_psnr", "PSNR (dB)", group="clean", better="higher", decimals=2),
               Column("clean_ssim", "SSIM", group="clean", better="higher", decimals=4)]
    long_parts = [clean.assign(column="clean_psnr", score=clean["psnr"]),
                  clean.assign(column="clean_ssim", score=clean["ssim"])]
    pert = sub[(sub["perturbation"] != CLEAN) & (sub["severity"] > 0)]
    for p in ordered_perturbations(pert):
        for sev in sorted(pert.loc[pert["perturbation"] == p, "severity"].unique()):
            key = f"{p}_s{int(sev)}"
            columns.append(Column(key, f"s{int(sev)}", group=f"{p} PSNR", better="higher", decimals=2))
            part = pert[(pert["perturbation"] == p) & (pert["severity"] == sev)]
            long_parts.append(part.assign(column=key, score=part["psnr"]))
    long = pd.concat(long_parts, ignore_index=True)[["direction", "model", "subject", "column", "score"]]
    table = Table("ablation", "Ablation of the KD+attack variants", columns, _rows_for(sub, baseline, models), {},
                  baseline, _note(baseline, "mean over test subjects"), row_label="Variant")
    _fill(table, long)
    table.mark_best()
    return table


def attack_table(subjects: pd.DataFrame, reference: str | None, metric: str = "psnr") -> Table | None:
    """The adversarial score: PSNR (or ``metric``) lost to each attack and severity against the same
    model's clean score, mean ± std over subjects, tested against ``reference``. None without attacks.

    Kept apart from the mCE (corruptions only): an attack's damage depends on its budget."""
    adv = subjects[(subjects["family"] == "adversarial") & (subjects["perturbation"] != CLEAN)]
    if adv.empty:
        return None
    dec = METRIC_DECIMALS.get(metric, 3)
    deg = degradation(subjects, [metric])
    deg = deg[(deg["family"] == "adversarial") & (deg["severity"] > 0)]
    keys = sorted({(p, int(s)) for p, s in zip(deg["perturbation"], deg["severity"])},
                  key=lambda k: (k[0] != "random_linf", k[0], k[1]))
    columns = [Column(f"{p}@{s}", f"s{s}", group=p, better="lower", decimals=dec, show_std=True) for p, s in keys]
    unit = "dB" if metric == "psnr" else ""
    table = Table(f"attacks_{metric}", f"Adversarial score: {metric.upper()} lost to each attack ({unit})".replace(" ()", ""),
                  columns, _rows_for(subjects, reference), {}, reference, "")
    long = deg.assign(column=deg["perturbation"] + "@" + deg["severity"].astype(int).astype(str))
    long = long.rename(columns={f"deg_{metric}": "score"})[["direction", "model", "subject", "column", "score"]]
    _fill(table, long)
    table.note = _note(reference, f"mean ± std over subjects of the clean {metric.upper()} minus the attacked one; "
                                  "lower is more robust; random_linf is the control (random signs of the same norm)")
    table.mark_best()
    return table


def stability_table(subjects: pd.DataFrame, reference: str | None, metric: str = "stability_psnr") -> Table | None:
    """Output stability per perturbation family and severity: the protocol's PSNR (or SSIM) of the
    perturbed output against the same model's clean output, mean over subjects (higher = the
    output moved less), tested against ``reference``. None when the results hold no stability values."""
    if metric not in subjects.columns:
        return None
    pert = subjects[(subjects["perturbation"] != CLEAN) & (subjects["severity"] > 0) & subjects[metric].notna()]
    if pert.empty:
        return None
    base = metric.removeprefix("stability_")
    dec = METRIC_DECIMALS.get(base, 3)
    fam = pert.groupby(["direction", "model", "family", "severity", "subject"], sort=False)[metric].mean().reset_index()
    columns, parts = [], []
    for family in ordered_families(pert):
        for sev in sorted(fam.loc[fam["family"] == family, "severity"].unique()):
            key = f"{family}_s{int(sev)}"
            columns.append(Column(key, f"s{int(sev)}", group=family, better="higher", decimals=dec))
            part = fam[(fam["family"] == family) & (fam["severity"] == sev)]
            parts.append(part.assign(column=key)[["direction", "model", "subject", "column", metric]])
    label = METRIC_LABEL.get(base, base)
    table = Table(metric, f"Output stability: {label} of the perturbed output against the clean output", columns,
                  _rows_for(subjects, reference), {}, reference, "")
    _fill(table, pd.concat(parts, ignore_index=True).rename(columns={metric: "score"}))
    table.note = _note(reference, "mean over test subjects; family columns average the family's perturbations; "
                                  "higher = the perturbation moved the output less (the target plays no part)")
    mark_partial(table, pert)
    table.mark_best()
    return table


def scores_table(scores: pd.DataFrame, reference: str | None, subjects: pd.DataFrame | None = None) -> Table:
    """The headline scores of :func:`robustmri.analysis.robustness.summary_scores` with their
    confidence intervals (:func:`robustmri.analysis.intervals.interval`): mCE (corruptions, % of the reference) and the adversarial score
    (PSNR lost to the attacks, dB). ``subjects`` (the per-subject rows the scores came from) marks
    a score averaged over fewer attacks or corruptions than the other rows' (:func:`mark_partial`)."""
    columns = [
        Column("mce", "value", group="mCE (%)", better="lower", decimals=1),
        Column("mce_low", "95% CI low", group="mCE (%)", decimals=1),
        Column("mce_high", "95% CI high", group="mCE (%)", decimals=1),
        Column("adversarial", "value", group="adversarial (dB lost)", better="lower", decimals=2),
        Column("adversarial_low", "95% CI low", group="adversarial (dB lost)", decimals=2),
        Column("adversarial_high", "95% CI high", group="adversarial (dB lost)", decimals=2),
    ]
    rows = []
    for direction in dict.fromkeys(scores["direction"]):
        present = list(dict.fromkeys(scores.loc[scores["direction"] == direction, "model"]))
        rows += [(direction, m) for m in _order_rows(present, reference)]
    table = Table("scores", "Robustness scores with 95% confidence intervals", columns, rows, {}, reference, "")
    for rec in scores.itertuples(index=False):
        if not np.isfinite(rec.value):
            continue
        n = int(rec.n_subjects)
        table.cells[(rec.direction, rec.model, rec.score)] = Cell(float(rec.value), n=n)
        table.cells[(rec.direction, rec.model, f"{rec.score}_low")] = Cell(float(rec.ci_low), n=n)
        table.cells[(rec.direction, rec.model, f"{rec.score}_high")] = Cell(float(rec.ci_high), n=n)
    table.note = ("mCE: corruption error summed over severities relative to the reference model (= 100), averaged over "
                  "the corruptions (attacks excluded). Adversarial: PSNR lost to the attacks (clean minus attacked, "
                  "dB), averaged over every attack and severity except the random_linf control. 95% CI over test "
                  "subjects: t interval of the mean loss; for the mCE, jackknife-t on the log scale (each left-out "
                  "subject leaves the model and the reference together).")
    if subjects is not None:
        pert = subjects[(subjects["perturbation"] != CLEAN) & (subjects["severity"] > 0) & (subjects["perturbation"] != CONTROL)]
        mark_partial(table, pert[pert["family"] == "adversarial"], family_columns=False, summary_columns=("adversarial",))
        mark_partial(table, pert[pert["family"] != "adversarial"], family_columns=False, summary_columns=("mce",))
    table.mark_best()
    return table


def tuning_table(scores: pd.DataFrame) -> Table | None:
    """Trials of each tuned method on the validation subjects
    (:func:`robustmri.analysis.tuning.selection_scores`): the criterion's parts and the criterion,
    one block per direction and method; the bold criterion is the trial chosen. None when no method
    has two or more trials."""
    from robustmri.analysis.tuning import PARTS, choose

    tuned = scores.groupby(["direction", "method"], sort=False)["model"].transform("count") >= 2
    if not tuned.any():
        return None
    shown = scores[tuned]
    labels = {"clean": "clean", "corruptions": "corruptions", "attacks": "attacks"}
    columns = [Column(p, labels[p], group="PSNR (dB)", decimals=2) for p in PARTS]
    columns.append(Column("criterion", "criterion", decimals=2))
    picked = choose(shown)
    chosen = set(zip(picked["direction"], picked["model"], strict=True))
    rows, cells = [], {}
    for rec in shown.itertuples(index=False):
        group = rec.method if shown["direction"].nunique() == 1 else f"{rec.direction} {rec.method}"
        row = rec.trial
        rows.append((group, row))
        for key in (*PARTS, "criterion"):
            value = float(getattr(rec, key))
            if np.isfinite(value):
                cells[(group, row, key)] = Cell(value, n=int(rec.n_subjects),
                                                bold=key == "criterion" and (rec.direction, rec.model) in chosen)
    table = Table("tuning", "Tuning on the validation subjects: the trials of each method", columns, rows, cells,
                  None, group_label="Method", row_label="Trial")
    table.note = ("Mean over validation subjects. Criterion: the mean of clean PSNR, PSNR under the corruptions "
                  "(every cell, severity >= 1) and PSNR under the attacks (every cell but the random_linf control), "
                  "per subject, then over subjects. Bold: the trial chosen per method (ties to the one listed first).")
    return table
