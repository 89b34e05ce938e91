"""The HTML page, from the jinja2 templates in `templates/`: inline CSS, a few lines of inline
JavaScript (sort any table by a clicked column; keep a wide table's first columns in view) and
images embedded as base64 PNG, so the file opens from disk with nothing else.

This module turns the report's tables, figures and manifest into what the templates show; the
templates hold the markup.
"""
from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from harness.report.analysis import MIN_SEEDS, Analysis
from harness.report.tables import MISSING, Table

_ENV = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(("html", "j2")),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
PIPELINE_GRIDS = ("smoke",)  # grids that check the pipeline runs, not which strategy is better
TINY_TRAIN = 1000  # fewer training examples per task (max_train): a pipeline check, whatever the grid's name


@dataclass
class HtmlTable:
    """A table as the page shows it: text cells, and how many leading columns stay in view."""
    anchor: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    frozen: int
    rule: str = ""
    legend: str = ""
    kind: str = "table"


def html_table(t: Table) -> HtmlTable:
    """Freezes the columns up to and including `strategy` (rank, strategy in a leaderboard), else the first."""
    frame = t.display.reset_index(names="") if t.index else t.display
    columns = [str(c) for c in frame.columns]
    frozen = columns.index("strategy") + 1 if "strategy" in columns[:2] else 1
    rows = [[MISSING if pd.isna(v) else str(v) for v in row] for row in frame.itertuples(index=False)]
    return HtmlTable(f"table-{t.name}", t.title, columns, rows, frozen, t.rule, t.legend)


@dataclass
class HtmlFigure:
    name: str
    uri: str  # data:image/png;base64,...
    caption: str
    kind: str = "figure"


def html_figure(path: Path, caption: str) -> HtmlFigure:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return HtmlFigure(path.stem, f"data:image/png;base64,{data}", caption)


@dataclass
class Details:
    """A collapsed block (the manifest): a summary line, and the text shown when opened."""
    summary: str
    text: str


@dataclass
class Section:
    id: str
    title: str
    blocks: list[HtmlTable | HtmlFigure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings, highlighted
    bullets: list[str] = field(default_factory=list)
    details: Details | None = None


@dataclass
class Banner:
    kind: str  # css class: "pipeline" or "power"
    text: str


@dataclass
class Header:
    grid: str
    generated: str
    commit: str
    runs: str
    banners: list[Banner]


def grid_name(info: dict[str, Any]) -> str:
    """The grid the runs came from, as the `harness run` sessions that filled the store named it
    (`--preset NAME`, or the stem of `--grid-file PATH`); 'unknown' if no session says."""
    names = []
    for session in info.get("sessions", []):
        words = shlex.split(session.get("command") or "")
        for flag, value in zip(words, words[1:]):
            name = value if flag == "--preset" else Path(value).stem if flag == "--grid-file" else None
            if name and name not in names:
                names.append(name)
    return ", ".join(names) or "unknown (no run session recorded)"


def banners(a: Analysis, info: dict[str, Any], grid: str) -> list[Banner]:
    """Why the numbers cannot rank strategies: a pipeline-check grid or tiny training slices; fewer
    than MIN_SEEDS seeds in completed cells."""
    out = []
    per_task = info.get("grid", {}).get("train", {}).get("per_task", {})
    tiny = {task: s["max_train"] for task, s in per_task.items() if s.get("max_train") and s["max_train"] < TINY_TRAIN}
    pipeline = [g for g in grid.split(", ") if g in PIPELINE_GRIDS]
    if pipeline or tiny:
        why = [f"grid {', '.join(pipeline)}"] if pipeline else []
        if tiny:
            why.append("training slices of " + ", ".join(f"{n} ({task})" for task, n in sorted(tiny.items())) +
                       " examples")
        out.append(Banner("pipeline", f"Pipeline check ({'; '.join(why)}): these results show that the harness "
                                      "runs end to end, not which strategy is better."))
    done = a.cells[a.cells["status"] == "completed"]
    few = int((done["n"] < MIN_SEEDS).sum())
    if few:
        out.append(Banner("power", f"Under-powered: {few} of {len(done)} completed cells have fewer than {MIN_SEEDS} "
                                   "seeds; their spreads and intervals are unreliable or missing, and with one seed "
                                   "no difference is tested."))
    return out


def header(a: Analysis, info: dict[str, Any]) -> Header:
    code = info.get("code", {})
    commit = (code.get("git_commit") or "unknown")[:12] + (" (with uncommitted changes)" if code.get("git_dirty") else "")
    records = ", ".join(f"{v} {k}" for k, v in info.get("records", {}).items())
    grid = grid_name(info)
    return Header(grid, info.get("generated", MISSING), commit, f"{len(a.runs)} runs ({records})",
                  banners(a, info, grid))


def render_page(title: str, head: Header, sections: list[Section]) -> str:
    return _ENV.get_template("report.html.j2").render(title=title, header=head, sections=sections)


def render_tables(title: str, tables: list[Table]) -> str:
    """A page of sortable tables alone (`harness leaderboard --format html`)."""
    return _ENV.get_template("tables.html.j2").render(title=title, tables=[html_table(t) for t in tables])
