"""Rendering sections to the text report and the self-contained HTML page."""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
import os
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.report.elements import (
    Bullets,
    Cell,
    FigureBlock,
    Folded,
    HtmlBlock,
    Paragraph,
    Section,
    Table,
    cell_sort,
    cell_text,
    split_for_fold,
)

logger = logging.getLogger(__name__)


# -- text ---------------------------------------------------------------------------------------
def _wrap(text: str, width: int = 100, indent: str = "") -> str:
    """Wrap each line of ``text`` (its own line breaks are kept)."""
    lines = []
    for i, line in enumerate(text.splitlines() or [""]):
        lines.append(
            textwrap.fill(
                line,
                width=width,
                initial_indent=indent if i == 0 else " " * len(indent),
                subsequent_indent=" " * len(indent),
                break_on_hyphens=False,
                break_long_words=False,
            )
            or ""
        )
    return "\n".join(lines)


def _text_table(table: Table) -> str:
    cells = [[cell_text(v) for v in row] for row in table.rows]
    widths = [len(c) for c in table.columns]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    widths = [min(w, 100) for w in widths]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            v = v if len(v) <= widths[i] else v[: widths[i] - 3] + "..."
            out.append(
                v.ljust(widths[i]) if i == 0 or not _looks_numeric(v) else v.rjust(widths[i])
            )
        return "  ".join(out).rstrip()

    parts = [table.caption + ":", line(table.columns), "  ".join("-" * w for w in widths)]
    parts += [line(r) for r in cells] if cells else ["(no rows)"]
    return "\n".join(parts)


def _looks_numeric(text: str) -> bool:
    """A number (optionally with its CI or a count after it), right-aligned; not a name that
    starts with a digit (``2f-model MMS``)."""
    return bool(re.match(r"^[-+\u2212]?\d+(\.\d+)?([eE][-+]?\d+)?(%|\s|\[|\(|$)", text)) or (
        text == "n/a"
    )


def render_text(
    sections: Sequence[Section],
    *,
    title: str = "Perceptual audio metrics: analysis report",
    generated_at: str | None = None,
) -> str:
    """The report as plain text (UTF-8, lines of at most about 100 characters except tables)."""
    generated_at = generated_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out = [title, "=" * len(title), f"Generated {generated_at}", ""]
    for sec in sections:
        out += [sec.title, "-" * len(sec.title)]
        group = ""
        for b in sec.blocks:
            if isinstance(b, Paragraph):
                out.append(_wrap(("NOTE: " if b.note else "") + b.text))
            elif isinstance(b, Bullets):
                out += [b.title + ":"] if b.title else []
                out += [_wrap(item, indent="- ") for item in b.items]
            elif isinstance(b, Table):
                out.append(_text_table(b))
            elif isinstance(b, HtmlBlock):
                out.append(b.text)
            elif isinstance(b, FigureBlock):
                if b.group and b.group != group:
                    out += [b.group + ":"]
                    group = b.group
                out.append(_wrap(f"{b.path.name}: {b.caption}", indent="- "))
                continue
            out.append("")
    return "\n".join(out).rstrip() + "\n"


# -- HTML ---------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
background:#f6f7f9;color:#1d232b;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px;background:#fff;min-height:100vh}
h1{font-size:1.5em;margin:0.1em 0}h2{border-bottom:2px solid #d8dde3;padding-bottom:4px;margin-top:2em}
.meta{color:#5b6570;font-size:0.85em;margin:0.2em 0}
.note{white-space:pre-line;background:#fff4d6;border:1px solid #e6c36a;border-left:6px solid #d99a00;padding:10px 14px;
margin:8px 0;border-radius:4px}
table{border-collapse:collapse;margin:10px 0 18px;font-size:0.88em;width:auto;max-width:100%}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0;color:#333}
th,td{border:1px solid #d8dde3;padding:4px 8px;vertical-align:top}
td.long{overflow-wrap:anywhere;min-width:8em}
th{background:#eef1f5;cursor:pointer;user-select:none;white-space:nowrap;text-align:left}
h3{margin-top:1.6em;color:#2b3440}
th.sorted-asc::after{content:" \\25B2";font-size:0.7em}th.sorted-desc::after{content:" \\25BC";font-size:0.7em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfc}
.wide{overflow-x:auto;max-width:100%}
p,li,figcaption,dd,td.fold{overflow-wrap:anywhere}
a{overflow-wrap:anywhere}nav a{display:inline-block;white-space:nowrap}
details.more{display:inline}details.more summary{display:inline;margin:0}
details.more[open]{display:block}
.fold pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:0.85em;margin:4px 0}
.verdict{background:#eef5ff;border-left:6px solid #1a5fb4;padding:8px 14px;margin:8px 0;
border-radius:4px}#at-a-glance h2{margin-top:0.6em}#at-a-glance table{margin-top:4px}
@media (max-width:900px){main{padding:16px 14px 48px}}
figure{margin:18px 0 28px}figure img{max-width:100%;height:auto;border:1px solid #e3e6ea}
figcaption{font-size:0.9em;color:#444;margin-top:4px}
details summary{cursor:pointer;color:#1a5fb4;margin:6px 0}
li{margin:4px 0}
nav a{margin-right:10px}nav{font-size:.92em}
"""

# Click a header to sort by it; numbers sort numerically (data-sort), text alphabetically,
# empty cells last. A second click reverses.
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var b=t.tBodies[0],rows=Array.from(b.rows),asc=!th.classList.contains('sorted-asc');
  t.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc')});
  th.classList.add(asc?'sorted-asc':'sorted-desc');
  function k(r){var c=r.cells[i],v=c.getAttribute('data-sort');v=v===null?c.textContent:v;
   var n=parseFloat(v);return v===''?null:(isNaN(n)||!/^[-+.\\d]/.test(v)?v.toLowerCase():n)}
  rows.sort(function(x,y){var a=k(x),c=k(y);if(a===null)return 1;if(c===null)return -1;
   if(typeof a!==typeof c){a=String(a);c=String(c)}return (a<c?-1:a>c?1:0)*(asc?1:-1)});
  rows.forEach(function(r){b.appendChild(r)});});});});
"""


def figure_data_uri(path: str | os.PathLike) -> str:
    """A ``data:`` URI of a PNG or SVG file (base64)."""
    path = Path(path)
    mime = {
        ".png": "image/png",
        ".svg": "image/svg+xml",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
    }.get(path.suffix.lower())
    if mime is None:
        raise PerceptualAudioError(
            f"{path}: cannot embed a figure of type {path.suffix!r}; expected .png or .svg"
        )
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_table(table: Table, table_id: str) -> str:
    esc = html.escape
    head = "".join(f'<th scope="col">{esc(c)}</th>' for c in table.columns)
    body = []
    for row in table.rows:
        tds = []
        for v in row:
            if isinstance(v, Folded):
                tds.append(
                    f'<td class="fold">{esc(v.short)}<details><summary>details</summary>'
                    f"<pre>{esc(v.detail)}</pre></details></td>"
                )
                continue
            text = cell_text(v)
            numeric = isinstance(
                v, Cell | int | float | np.integer | np.floating
            ) and _looks_numeric(text)
            # Hashes, URLs and paths may break anywhere; short words keep whole.
            long_token = any(len(tok) > 24 for tok in text.split())
            cls = ' class="num"' if numeric else (' class="long"' if long_token else "")
            sort = cell_sort(v)
            attr = f' data-sort="{esc(sort)}"' if sort != text else ""
            tds.append(f"<td{cls}{attr}>{esc(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(table.columns)}">(no rows)</td></tr>')
    return (
        f'<div class="wide"><table class="sortable" id="{table_id}"><caption>'
        f"{esc(table.caption)}</caption><thead><tr>{head}</tr></thead><tbody>"
        + "\n".join(body)
        + "</tbody></table></div>"
    )


def _folded_html(text: str) -> str:
    """``text`` cut to about two lines, the rest behind a ``<details>`` fold."""
    esc = html.escape
    shown, rest = split_for_fold(text)
    if not rest:
        return esc(shown)
    return f'{esc(shown)} <details class="more"><summary>more</summary>{esc(rest)}</details>'


def _html_bullets(b: Bullets) -> str:
    esc = html.escape
    items = "".join(f"<li>{_folded_html(i) if b.fold else esc(i)}</li>" for i in b.items)
    return (f"<h3>{esc(b.title)}</h3>" if b.title else "") + f"<ul>{items}</ul>"


def _html_paragraph(b: Paragraph) -> str:
    """A paragraph; a note (a warning) shows its first line and folds the rest."""
    esc = html.escape
    if not b.note:
        return f'<p class="verdict">{esc(b.text)}</p>' if b.lead else f"<p>{esc(b.text)}</p>"
    first, _, rest = b.text.strip().partition("\n")
    shown, more = split_for_fold(first, 240)
    more = " ".join(x for x in (more, rest.strip()) if x)
    fold = f'<details class="more"><summary>more</summary>{esc(more)}</details>' if more else ""
    return f'<p class="note"><strong>Note:</strong> {esc(shown)} {fold}</p>'


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render_html(
    sections: Sequence[Section],
    *,
    title: str = "Perceptual audio metrics: analysis report",
    generated_at: str | None = None,
    collapse_rows: int = 40,
) -> str:
    """The report as one self-contained HTML page.

    Figures are embedded as ``data:`` URIs; styles and the table-sorting script are inline; no
    element refers to a remote resource. Tables longer than ``collapse_rows`` rows are folded
    in a ``<details>`` element.
    """
    esc = html.escape
    generated_at = generated_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    nav = " ".join(f'<a href="#{_slug(s.title)}">{esc(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Generated {esc(generated_at)}</p>',
        f"<nav>{nav}</nav>",
    ]
    n_table = 0
    for sec in sections:
        parts.append(f'<section id="{_slug(sec.title)}"><h2>{esc(sec.title)}</h2>')
        group = ""
        for b in sec.blocks:
            if isinstance(b, Paragraph):
                parts.append(_html_paragraph(b))
            elif isinstance(b, Bullets):
                parts.append(_html_bullets(b))
            elif isinstance(b, Table):
                n_table += 1
                rendered = _html_table(b, f"table-{n_table}")
                if len(b.rows) > collapse_rows:
                    rendered = (
                        f"<details><summary>{esc(b.caption)} ({len(b.rows)} rows, click "
                        f"to show)</summary>{rendered}</details>"
                    )
                parts.append(rendered)
            elif isinstance(b, HtmlBlock):
                parts.append(b.html)
            elif isinstance(b, FigureBlock):
                if b.group and b.group != group:
                    parts.append(f"<h3>{esc(b.group)}</h3>")
                    group = b.group
                parts.append(
                    f'<figure><img src="{figure_data_uri(b.path)}" alt="{esc(b.caption)}">'
                    f"<figcaption>{esc(b.caption)} ({esc(b.path.name)})</figcaption></figure>"
                )
        parts.append("</section>")
    parts += [f"<script>{_SORT_JS}</script>", "</main></body></html>"]
    return "\n".join(parts) + "\n"
