"""The files of `harness report` and the text of `harness leaderboard`: one writer per format, in a
registry by name (as reward strategies are in `rewards.base.REWARDS`).

A writer is a function `write(report, out) -> [paths written]` registered with
`@register_writer(name)`; a format that can also be printed (`harness leaderboard --format`) passes
`render=`, a function from a list of tables to one string that is valid in the format:

    from harness.report.writers import register_writer

    @register_writer("txt", render=lambda tables: "".join(f"{t.title}\\n" for t in tables))
    def write_txt(report, out):
        '''titles.txt: the title of every table.'''
        path = out / "titles.txt"
        path.write_text("".join(f"{t.title}\\n" for t in report.tables))
        return [path]

A writer registered before the command line is parsed (in the module that calls
`harness.cli.main`, say) is one of `harness report --format`'s choices and is written by default.

Built-in formats, under the output folder:
  md        <table>.md for every table, and methods.md (how each number is computed; the warnings)
  tex       <table>.tex: booktabs tabulars (\\usepackage{booktabs}); `latex` is an alias; printed
            (`leaderboard --format latex`), one complete document
  csv       <table>.csv (the numbers), comparisons.csv, runs.csv
  json      summary.json: every table's numbers, the notes, the methods and the manifest
  html      index.html: one self-contained page (jinja2 templates in templates/) with every table and
            figure (figures also in plots/)
  manifest  manifest.json and grid.yaml: what produced the numbers, and the grid that reruns them;
            written whatever formats are chosen, since no number should travel without its provenance
The tables are `harness.report.tables`'s. Markdown, LaTeX and HTML show formatted text; CSV and JSON
hold the numbers (NaN/null where a cell has none). Refused and failed cells say so, never 0.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import yaml
from tabulate import tabulate

from harness.report import ReportError, page as html
from harness.report.analysis import ALPHA, MIN_TEST_SEEDS, Analysis, analyse
from harness.report.manifest import grid, manifest
from harness.report.tables import FEW_SEEDS, MISSING, Table, leaderboard, methods, overall_table, tables
from harness.store import RunRecord, Store


# ---- the registry -------------------------------------------------------------------------

@dataclass
class Report:
    """What every writer is given: the analysis and everything computed from it."""
    analysis: Analysis
    tables: list[Table]
    methods: list[str]
    manifest: dict[str, Any]  # manifest.json
    grid: dict[str, Any]  # grid.yaml

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


Write = Callable[[Report, Path], list[Path]]
Render = Callable[[Sequence[Table]], str]


@dataclass(frozen=True)
class Writer:
    name: str
    write: Write  # writes the format's files into a folder, returns their paths
    render: Render | None = None  # the given tables as one text in the format, for printing
    aliases: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return (self.write.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")


WRITERS: dict[str, Writer] = {}
ALIASES: dict[str, str] = {}


def register_writer(name: str, render: Render | None = None,
                    aliases: Iterable[str] = ()) -> Callable[[Write], Write]:
    """Function decorator: registers `write` (and `render`, if the format can be printed) as `name`."""

    def wrap(write: Write) -> Write:
        for key in (name, *aliases):
            if key in WRITERS or key in ALIASES:
                raise ValueError(f"report format {key!r} is registered twice")
        WRITERS[name] = Writer(name, write, render, tuple(aliases))
        ALIASES.update({alias: name for alias in aliases})
        return write

    return wrap


def unregister_writer(name: str) -> None:
    writer = WRITERS.pop(name)
    for alias in writer.aliases:
        ALIASES.pop(alias, None)


def formats(printable: bool = False) -> list[str]:
    """The registered formats' names, in registration order; only those with `render` if `printable`."""
    return [name for name, w in WRITERS.items() if w.render is not None or not printable]


def canonical(name: str) -> str:
    """The format an alias stands for (`latex` -> `tex`); any other name unchanged."""
    return ALIASES.get(name, name)


def resolve(names: Iterable[str] | None = None, printable: bool = False) -> list[str]:
    """Registered format names for `names` (aliases resolved, repeats dropped; a string is split at
    commas); None means all."""
    if names is None:
        return formats(printable)
    if isinstance(names, str):
        names = names.split(",")
    choices = formats(printable)
    chosen: list[str] = []
    for name in names:
        if canonical(name) not in choices:
            problem = "cannot be printed" if canonical(name) in WRITERS else "is unknown"
            raise ReportError(f"report format {name!r} {problem}; choose from {', '.join(choices)}")
        if canonical(name) not in chosen:
            chosen.append(canonical(name))
    if not chosen:
        raise ReportError(f"no report format given; choose from {', '.join(choices)}")
    return chosen


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts, NaN as null."""
    return json.loads(frame.to_json(orient="records"))


# ---- Markdown -----------------------------------------------------------------------------

def markdown_table(t: Table) -> str:
    return tabulate(t.display, headers="keys", tablefmt="github", showindex=t.index, disable_numparse=True)


def _markdown_section(t: Table, level: int) -> str:
    rule = f"{t.rule}\n\n" if t.rule else ""
    legend = f"\n{t.legend}\n" if t.legend else ""
    return f"{'#' * level} {t.title}\n\n{rule}{markdown_table(t)}\n{legend}"


def render_markdown(ts: Sequence[Table]) -> str:
    return "\n".join(_markdown_section(t, 2) for t in ts)


@register_writer("md", render=render_markdown)
def write_markdown(report: Report, out: Path) -> list[Path]:
    """<table>.md for every table, and methods.md (how each number is computed, and the warnings)."""
    paths = [_write(out / f"{t.name}.md", _markdown_section(t, 1)) for t in report.tables]
    notes = "".join(f"- {note}\n" for note in report.analysis.notes) or "none\n"
    paths.append(_write(out / "methods.md", "# Methods\n\n" + "".join(f"- {m}\n" for m in report.methods) +
                        f"\n# Warnings\n\n{notes}"))
    return paths


# ---- LaTeX --------------------------------------------------------------------------------

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "δ": r"$\delta$", FEW_SEEDS: r"$^\dagger$",
                  "↑": r"$\uparrow$", "↓": r"$\downarrow$", MISSING: "---", "·": r"$\cdot$", "×": r"$\times$",
                  "÷": r"$\div$", "−": r"$-$", "≥": r"$\geq$", "≤": r"$\leq$", "→": r"$\rightarrow$"}


def latex_text(value: Any) -> str:
    """Text safe in a LaTeX document: special characters escaped, symbols as math."""
    return "".join(_LATEX_SYMBOLS.get(ch, _LATEX_ESCAPES.get(ch, ch)) for ch in str(value))


def latex_table(t: Table) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs})."""
    frame = t.display.reset_index(names="") if t.index else t.display
    align = "".join("l" if i < 2 else "r" for i in range(len(frame.columns)))
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(latex_text(c) for c in frame.columns) + r" \\", r"\midrule"]
    # "{}" keeps a cell starting with "[" from being read as the optional argument of the "\\" before it
    lines += [" & ".join(("{}" if str(v).startswith("[") else "") + latex_text(v) for v in row) + r" \\"
              for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


LATEX_PREAMBLE = r"""\documentclass{article}
\usepackage[landscape,margin=1.5cm]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
% a table at its natural width, or scaled down to the line where wider
\newcommand{\fitwidth}[1]{\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{#1}}
\begin{document}
\scriptsize
"""


def render_latex(ts: Sequence[Table]) -> str:
    """A complete LaTeX document (article, landscape, booktabs), nothing else: each table under a
    \\section* heading, its rule as a paragraph above, its legend below; a table wider than the page
    is scaled down to its width (the leaderboards have some twenty columns)."""
    body = "\n".join(rf"\section*{{{latex_text(t.title)}}}" + (f"\n{latex_text(t.rule)}\n" if t.rule else "") +
                     f"\n{_fit(latex_table(t))}" + (f"\n{latex_text(t.legend)}\n" if t.legend else "") for t in ts)
    return f"{LATEX_PREAMBLE}{body}\n\\end{{document}}\n"


def _fit(tabular: str) -> str:
    return r"\noindent\fitwidth{" + tabular.rstrip("\n") + "}\n"


@register_writer("tex", render=render_latex, aliases=("latex",))
def write_latex(report: Report, out: Path) -> list[Path]:
    """<table>.tex for every table: a booktabs tabular, its title, rule and legend as comments."""
    return [_write(out / f"{t.name}.tex", _comment(t.title) + _comment(t.rule) + _comment(t.legend) + latex_table(t))
            for t in report.tables]


def _comment(text: str) -> str:
    return "".join(f"% {line}\n" for line in text.splitlines())


# ---- CSV ----------------------------------------------------------------------------------

def render_csv(ts: Sequence[Table]) -> str:
    """One CSV of every table's numbers, a first column `table` naming the table of each row."""
    frames = [t.data.assign(table=t.name) for t in ts if len(t.data)]
    if not frames:
        return "table\n"
    frame = pd.concat(frames, ignore_index=True)
    return frame[["table", *(c for c in frame.columns if c != "table")]].to_csv(index=False)


@register_writer("csv", render=render_csv)
def write_csv(report: Report, out: Path) -> list[Path]:
    """<table>.csv for every table (the numbers), comparisons.csv and runs.csv."""
    frames = {t.name: t.data for t in report.tables}
    frames.update(comparisons=report.analysis.comparisons, runs=report.analysis.runs)
    paths = []
    for name, frame in frames.items():
        frame.to_csv(out / f"{name}.csv", index=False)
        paths.append(out / f"{name}.csv")
    return paths


# ---- JSON ---------------------------------------------------------------------------------

def summary(report: Report) -> dict[str, Any]:
    """Everything, machine-readable: summary.json."""
    a = report.analysis
    return {"summary": report.table("summary").display.to_dict(orient="index"),
            "cells": _records(a.cells), "overall": _records(a.overall),
            "leaderboards": {task: _records(report.table(f"leaderboard_{task}").data) for task in a.tasks},
            "comparisons": _records(a.comparisons), "guards": _records(a.guards), "cost": _records(a.cost),
            "evaluations": _records(a.evaluations), "over_optimised": _records(a.over_optimised),
            "runs": _records(a.runs), "not_completed": _records(report.table("not_completed").data),
            "notes": a.notes, "methods": report.methods, "manifest": report.manifest}


def render_json(ts: Sequence[Table]) -> str:
    """One JSON object: table name -> its title and rows of numbers."""
    return json.dumps({t.name: {"title": t.title, "rows": _records(t.data)} for t in ts}, indent=1,
                      default=str) + "\n"


@register_writer("json", render=render_json)
def write_json(report: Report, out: Path) -> list[Path]:
    """summary.json: every table's numbers, the notes, the methods and the manifest."""
    return [_write(out / "summary.json", json.dumps(summary(report), indent=1, default=str))]


# ---- HTML ---------------------------------------------------------------------------------

def render_html(ts: Sequence[Table]) -> str:
    """A self-contained page with the tables (sortable)."""
    return html.render_tables("Reward strategies: leaderboards", list(ts))


def _html_page(report: Report, figures: dict[str, Path]) -> str:
    """Header (grid, date, commit, banners), contents, warnings, overall tables, per task the forest
    plot, leaderboard and curves, then guards, cost, runs not completed, methods and the manifest (collapsed)."""
    from harness.report.plots import caption

    a = report.analysis

    def table(name: str) -> html.HtmlTable:
        return html.html_table(report.table(name))

    def figure(name: str) -> list[html.HtmlFigure]:
        """The figure, or nothing where it was not drawn (a curve needs two points)."""
        return [html.html_figure(figures[name], caption(a, name))] if name in figures else []

    sections = [html.Section("warnings", "Warnings", notes=a.notes)] if a.notes else []
    sections.append(html.Section("overall", "Overall", [table("overall"), table("summary")]))
    for task in a.tasks:
        sections.append(html.Section(f"task-{task}", f"{task} ({a.metrics[task]})",
                                     [*figure(f"forest_{task}"), table(f"leaderboard_{task}"),
                                      *(f for plot in ("curves", "sampling", "evaluations")
                                        for f in figure(f"{plot}_{task}"))]))
    sections += [html.Section("guards", "Guard metrics", [table("guards")]),
                 html.Section("cost", "Cost", [table("cost"), *figure("cost")])]
    if len(report.table("paired").display):
        sections.append(html.Section("paired", "Seed-paired sensitivity", [table("paired")]))
    if len(report.table("not_completed").display):
        sections.append(html.Section("not-completed", "Not completed", [table("not_completed")]))
    sections += [html.Section("methods", "Methods", bullets=report.methods),
                 html.Section("manifest", "Reproducibility manifest",
                              details=html.Details("command, code and library versions, data checksums, metric "
                                                   "signatures, hardware, run sessions (manifest.json)",
                                                   json.dumps(report.manifest, indent=1, default=str)))]
    return html.render_page("Reward strategies: results", html.header(a, report.manifest), sections)


@register_writer("html", render=render_html)
def write_html(report: Report, out: Path) -> list[Path]:
    """index.html: one self-contained page with every table and figure (the figures also as plots/*.png)."""
    from harness.report import plots  # matplotlib, only when figures are drawn

    figures = plots.save_figures(report.analysis, out / "plots")
    return [*figures.values(), _write(out / "index.html", _html_page(report, figures))]


# ---- manifest -----------------------------------------------------------------------------

@register_writer("manifest")
def write_manifest(report: Report, out: Path) -> list[Path]:
    """manifest.json and grid.yaml: what produced the numbers, and the grid that reruns them."""
    return [_write(out / "manifest.json", json.dumps(report.manifest, indent=1, default=str)),
            _write(out / "grid.yaml", yaml.safe_dump(report.grid, sort_keys=False))]


# ---- the commands -------------------------------------------------------------------------

def write_report(store: Store, out: Path, echo: bool = True, n_resamples: int = 1000, seed: int = 0,
                 command: str | None = None, formats: Iterable[str] | None = None,
                 records: Sequence[RunRecord] | None = None, allow_mixed: bool = False,
                 strict: bool = False) -> dict[str, Any]:
    """Analyses every record of `store` (or only `records`, e.g. `report --filter`'s) and writes the
    report in `formats` (default: every registered one); returns what summary.json holds. `strict`:
    an unreadable file in the store is an error, not skipped with a warning; `allow_mixed`: see `analyse`."""
    names = resolve(formats)
    names += [] if "manifest" in names else ["manifest"]  # provenance goes with every choice of formats
    records = list(store.records(strict=strict)) if records is None else list(records)
    if not records:
        raise ReportError(f"no run records in {store.root}: run `python -m harness run --grid` first")
    a = analyse(records, n_resamples=n_resamples, seed=seed, allow_mixed=allow_mixed)
    statistics = {"resamples": n_resamples, "bootstrap_seed": seed, "alpha": ALPHA, "confidence": 0.95,
                  "test": "seed-aware: Welch-Satterthwaite t on seed variance plus test-set bootstrap variance",
                  "multiple_comparisons": "Holm, per task, metric and baseline; ranks: Holm over the other pairs",
                  "min_seeds_for_a_test": MIN_TEST_SEEDS}
    if command is None:
        chosen = "" if formats is None else f" --format {','.join(n for n in names if n != 'manifest')}"
        command = f"python -m harness report --store {store.root} --out {out} --resamples {n_resamples}{chosen}"
    report = Report(a, tables(a, store.evaluations()), methods(a), manifest(records, command, statistics, store.sessions()), grid(records))
    out.mkdir(parents=True, exist_ok=True)
    written = {name: WRITERS[name].write(report, out) for name in names}
    if echo:
        for task in a.tasks:
            board = markdown_table(report.table(f"leaderboard_{task}"))
            print(f"\n## {task} (ranked by test {a.metrics[task]})\n{board}")
        print(f"\n## task x strategy (test, main metric)\n{markdown_table(report.table('summary'))}")
        print(f"\n## overall\n{markdown_table(report.table('overall'))}")
        if len(report.table("not_completed").display):
            print(f"\n## runs not completed\n{markdown_table(report.table('not_completed'))}")
        for note in a.notes:
            print(f"warning: {note}")
        print(f"\nwrote {out}: " + ", ".join(f"{name} ({len(paths)} file{'s' * (len(paths) != 1)})"
                                             for name, paths in written.items()))
    return summary(report)


def print_leaderboards(store: Store, tasks: list[str] | None = None, fmt: str = "md",
                       n_resamples: int = 1000, seed: int = 0, allow_mixed: bool = False, strict: bool = False) -> None:
    """Prints the overall and per-task leaderboards in one printable format, writing no files;
    warnings go to stderr, so that what is printed is valid in the format."""
    (name,) = resolve([fmt], printable=True)
    records = [r for r in store.records(strict=strict) if not tasks or r.task in tasks]
    if not records:
        raise ReportError(f"no run records in {store.root}" + (f" for {', '.join(tasks)}" if tasks else ""))
    a = analyse(records, n_resamples=n_resamples, seed=seed, allow_mixed=allow_mixed)
    sys.stdout.write(WRITERS[name].render([overall_table(a), *(leaderboard(a, task) for task in a.tasks)]))
    for note in a.notes:
        print(f"warning: {note}", file=sys.stderr)
