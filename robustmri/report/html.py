"""A self-contained HTML page: inline CSS, figures embedded as base64 PNG, tables as HTML.

Plain string templates (no template engine), every interpolated text escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FigureItem", "Section", "TableItem", "render_page"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1240px; padding: 1.2em 1.6em 3em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 2px solid #d0d7de; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin: 1.4em 0 0.4em; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; margin: 0.8em 0; }
dl.meta dt { font-weight: 600; color: #57606a; }
dl.meta dd { margin: 0; }
.howto { background: #f6f8fa; border-left: 4px solid #0969da; padding: 0.6em 1em; margin: 1em 0; }
.howto li { margin: 0.15em 0; }
.warn { background: #fff8c5; border-left: 4px solid #bf8700; padding: 0.5em 1em; }
.scroll { overflow-x: auto; }
table.results { border-collapse: collapse; font-size: 0.86em; margin: 0.4em 0; white-space: nowrap;
                font-variant-numeric: tabular-nums; }
table.results th, table.results td { padding: 0.25em 0.6em; text-align: right; }
table.results thead th { border-bottom: 1px solid #8c959f; text-align: center; background: #f6f8fa; }
table.results thead tr:first-child th { border-top: 2px solid #1d1d1f; }
table.results tbody tr:last-child th, table.results tbody tr:last-child td { border-bottom: 2px solid #1d1d1f; }
table.results tbody th { text-align: left; font-weight: normal; }
table.results tbody th.grp { font-style: italic; color: #57606a; }
table.results tr.block th, table.results tr.block td { border-top: 1px solid #8c959f; }
table.results sup { color: #cf222e; font-weight: 600; }
p.note { font-size: 0.82em; color: #57606a; margin: 0.2em 0 1em; max-width: 70em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: 0.85em; color: #57606a; margin-top: 0.3em; }
.files { font-size: 0.8em; color: #57606a; }
"""


@dataclass
class TableItem:
    """A table: heading, its HTML (from :meth:`robustmri.report.table.Table.to_html`), file stem."""

    title: str
    html: str
    files: Sequence[str] = ()


@dataclass
class FigureItem:
    """A figure: heading, PNG bytes (embedded as base64), caption and file names."""

    title: str
    png: bytes
    caption: str = ""
    files: Sequence[str] = ()


@dataclass
class Section:
    """A titled group of tables and figures, optionally introduced by a paragraph."""

    title: str
    items: list[TableItem | FigureItem] = field(default_factory=list)
    intro: str = ""


def _files(names: Sequence[str]) -> str:
    if not names:
        return ""
    return "<p class=\"files\">files: " + ", ".join(f"<code>{html.escape(n)}</code>" for n in names) + "</p>"


def render_page(
    title: str,
    meta: Sequence[tuple[str, str]],
    howto: Sequence[str],
    sections: Sequence[Section],
    warnings: Sequence[str] = (),
) -> str:
    """The whole report page as one HTML string (UTF-8, no external resources)."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{esc(title)}</h1>"]
    parts.append("<dl class=\"meta\">" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in meta) + "</dl>")
    for w in warnings:
        parts.append(f"<p class=\"warn\">{esc(w)}</p>")
    if howto:
        parts.append("<div class=\"howto\"><strong>How to read this report</strong><ul>"
                     + "".join(f"<li>{esc(h)}</li>" for h in howto) + "</ul></div>")
    if sections:
        parts.append("<nav><strong>Contents:</strong> " + " · ".join(
            f"<a href=\"#s{i}\">{esc(s.title)}</a>" for i, s in enumerate(sections)) + "</nav>")
    for i, section in enumerate(sections):
        parts.append(f"<h2 id=\"s{i}\">{esc(section.title)}</h2>")
        if section.intro:
            parts.append(f"<p>{esc(section.intro)}</p>")
        for item in section.items:
            parts.append(f"<h3>{esc(item.title)}</h3>")
            if isinstance(item, TableItem):
                parts.append(f"<div class=\"scroll\">{item.html}</div>")
            else:
                data = base64.b64encode(item.png).decode("ascii")
                caption = f"<figcaption>{esc(item.caption)}</figcaption>" if item.caption else ""
                parts.append(f"<figure><img alt=\"{esc(item.title)}\" src=\"data:image/png;base64,{data}\">"
                             f"{caption}</figure>")
            parts.append(_files(item.files))
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
