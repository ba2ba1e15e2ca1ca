"""The comparison table: one object, rendered as Markdown, LaTeX, HTML and CSV, and the helpers
that every table builder shares (row order, filling cells from per-subject scores, footnotes).

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

The builders live by family: :mod:`robustmri.report.tables` (clean quality and robustness) and
:mod:`robustmri.report.design_tables` (the KD+attack ablation and the tuning trials).
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

from robustmri.analysis.stats import compare_to_reference, holm, summarize
from robustmri.metrics import DECIMALS, LABELS

__all__ = [
    "Cell", "Column", "FAMILY_ORDER", "METRIC_DECIMALS", "METRIC_LABEL", "PARTIAL_MARK", "PARTIAL_NOTE", "Table",
    "fill_cells", "mark_partial", "order_rows", "ordered_families", "ordered_perturbations", "rows_for",
    "significance_mark", "table_note",
]

Better = Literal["higher", "lower"]

FAMILY_ORDER = ("clean", "noise", "image", "kspace", "geometric", "adversarial")
"""Canonical order of perturbation families in tables and figures (others follow, alphabetically)."""

METRIC_LABEL = LABELS  # metric -> label and digits, from the metric registry (robustmri.metrics)
METRIC_DECIMALS = DECIMALS


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
    #: show ``mean [low, high]`` (a confidence interval), with signed numbers unless ``signed`` is
    #: False (a paired difference is signed; a value with its interval is not)
    show_ci: bool = False
    signed: bool = True


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
        sign = "+" if col.signed else ""
        text = f"{c.mean:{sign}.{col.decimals}f}"
        if np.isfinite(c.low) and np.isfinite(c.high):
            text += f" [{c.low:{sign}.{col.decimals}f}, {c.high:{sign}.{col.decimals}f}]"
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


def order_rows(models: Sequence[str], baseline: str | None) -> list[str]:
    models = list(dict.fromkeys(models))
    if baseline in models:
        models.remove(baseline)
        models.insert(0, baseline)
    return models


def fill_cells(
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


def rows_for(
    subjects: pd.DataFrame, baseline: str | None, models: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    rows = []
    for direction in dict.fromkeys(subjects["direction"]):
        present = list(dict.fromkeys(subjects.loc[subjects["direction"] == direction, "model"]))
        if models is not None:
            present = [m for m in models if m in present]
        rows += [(direction, m) for m in order_rows(present, baseline)]
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


def table_note(baseline: str | None, what: str = "mean ± std over test subjects") -> str:
    text = f"Values: {what}. Bold: best per column within a direction."
    if baseline is not None:
        text += (f" * p<0.05, ** p<0.01: paired two-sided Wilcoxon signed-rank test vs {baseline} over subjects, "
                 "Holm-corrected over every test in the table within a direction (all columns and models).")
    return text
