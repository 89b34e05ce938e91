"""A self-contained HTML page: inline CSS, a few lines of inline JavaScript that sort any table by a
clicked column, and images embedded as base64 PNG, so the file opens from disk with nothing else."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1500px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.5em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .5em 0 1em; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
thead th { background: #f4f4f4; cursor: pointer; user-select: none; position: sticky; top: 0; }
thead th[aria-sort=ascending]::after { content: " \\25B2"; } thead th[aria-sort=descending]::after { content: " \\25BC"; }
tbody tr:hover { background: #fafae8; }
img { max-width: 100%; margin: .5em 1em .5em 0; border: 1px solid #eee; }
.notes { background: #fff8e5; border-left: 4px solid #e0b000; padding: .5em 1em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }
"""

# Sorts a table's body by the clicked header; a second click reverses the order. Cells are compared
# by the first number in them (so "#2 · 91.3", "[90.1, 92.0]" and "+1.5 [...]" sort by 2, 90.1, 1.5),
# else as text; whatever the direction, numbers come before words ("failed", "refused") and those
# before empty cells ("—").
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var key = function (row) {
        var text = row.cells[col].textContent.trim();
        var match = text.match(/^[#\\[]?([+-]?\\d+(?:\\.\\d+)?(?:e[+-]?\\d+)?)/i);
        var group = match ? 0 : (text === "" || text === "\u2014" ? 2 : 1);
        return { group: group, number: match ? parseFloat(match[1]) : 0, text: text };
      };
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x.group !== y.group) { return x.group - y.group; }
        var order = x.group === 0 ? x.number - y.number : x.text.localeCompare(y.text);
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def text(value: str) -> str:
    return html.escape(value)


def table(frame: pd.DataFrame, index: bool = False) -> str:
    """A sortable table; cells are escaped."""
    body = frame.to_html(index=index, escape=True, na_rep="—", border=0, classes="sortable")
    return f'<div class="scroll">{body}</div>'


def image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def bullets(items: list[str], css_class: str = "") -> str:
    if not items:
        return ""
    inner = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    return f'<ul class="{css_class}">{inner}</ul>' if css_class else f"<ul>{inner}</ul>"


def document(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n{body}\n"
            f"<script>{_SCRIPT}</script>\n</body></html>\n")
