"""The tables of `harness report` and `harness leaderboard`, and every file they are written to.

Under the output folder:
  summary.{md,tex,csv}              task × strategy: main test metric, mean ± std over seeds (n seeds)
  overall.{md,tex,csv}              the cross-task leaderboard: mean tied rank, mean gain over ce, per-task cells
  leaderboard_<task>.{md,tex,csv}   one task: ranks, CIs, Δ vs ce (and vs the constant-reward control)
                                    with bootstrap CIs and Holm p-values, guard metrics, cost, all metrics
  guards.{md,tex,csv}, cost.{md,tex,csv}, not_completed.{md,tex,csv}, comparisons.csv, runs.csv
  summary.json                      all of the above, machine-readable
  methods.md                        how each number is computed, and the warnings (few seeds, failed runs)
  plots/*.png, index.html           figures, and one self-contained page with every table and figure
  manifest.json, grid.yaml          what produced the numbers, and the grid that reruns them
Markdown, LaTeX and HTML show formatted text; CSV and JSON hold the numbers (NaN/null where a cell
has none). Refused and failed cells say so, never 0.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tabulate import tabulate

from harness.report import page as html, plots
from harness.report.analysis import ALPHA, BASELINE, CONTROL, MIN_SEEDS, REPETITION_N, Analysis, analyse, status_words
from harness.report.manifest import grid, manifest
from harness.store import Store

FEW_SEEDS = "†"
MISSING = "—"
_GUARD_COLUMNS = {"mean_length": "length", "repetition": f"rep-{REPETITION_N}", "empty_share": "empty %",
                  "kl": "KL", "entropy": "entropy"}


@dataclass
class Table:
    name: str  # file stem
    title: str
    display: pd.DataFrame  # formatted text, for Markdown, LaTeX and HTML
    data: pd.DataFrame  # numbers, for CSV and JSON
    index: bool = False  # whether the display frame's index is a column
    legend: str = ""  # how to read the table, shown under it


# ---- formatting ---------------------------------------------------------------------------

def num(x: Any, digits: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _comparison(a: Analysis, task: str, strategy: str, baseline: str) -> pd.Series | None:
    rows = a.comparisons[(a.comparisons["task"] == task) & (a.comparisons["strategy"] == strategy)
                         & (a.comparisons["baseline"] == baseline)]
    return rows.iloc[0] if len(rows) else None


def _arrow(a: Analysis, task: str, strategy: str) -> str:
    """↑ / ↓ where the difference to ce is significant after Holm's correction."""
    c = _comparison(a, task, strategy, BASELINE)
    return "" if c is None or not c["significant"] else (" ↑" if c["delta"] > 0 else " ↓")


def score(cell: pd.Series, with_n: bool = True) -> str:
    """'91.23 ± 0.31 (n=3)', '33.04 (n=1) †' or the cell's status."""
    if cell["status"] != "completed":
        return str(cell["status"])
    spread = "" if cell["n"] < 2 else f" ± {cell['std']:.2f}"
    count = f" (n={cell['n']})" if with_n else ""
    few = f" {FEW_SEEDS}" if cell["n"] < MIN_SEEDS and with_n else ""
    return f"{cell['mean']:.2f}{spread}{count}{few}"


def _delta(c: pd.Series | None) -> str:
    return MISSING if c is None else f"{num(c['delta'], signed=True)} [{num(c['ci_low'], signed=True)}, " \
                                     f"{num(c['ci_high'], signed=True)}]"


def _p(c: pd.Series | None) -> str:
    return MISSING if c is None else f"{c['p_holm']:.3f}{' *' if c['significant'] else ''}"


def _drop_empty(frame: pd.DataFrame, keep: int = 2) -> pd.DataFrame:
    """Drops display columns (after the first `keep`) that hold nothing but '—'."""
    empty = [c for c in frame.columns[keep:] if (frame[c].astype(str) == MISSING).all()]
    return frame.drop(columns=empty)


# ---- tables -------------------------------------------------------------------------------

def summary_table(a: Analysis) -> Table:
    display = pd.DataFrame(index=[f"{t} ({a.metrics[t]})" for t in a.tasks], columns=a.strategies(), dtype=object)
    for _, cell in a.cells.iterrows():
        display.loc[f"{cell['task']} ({cell['metric']})", cell["strategy"]] = \
            score(cell) + _arrow(a, cell["task"], cell["strategy"])
    return Table("summary", "Test scores: mean ± std over seeds (n seeds)", display.fillna("not run"),
                 a.cells, index=True, legend=f"{FEW_SEEDS} fewer than {MIN_SEEDS} seeds; ↑/↓ significantly "
                 f"above/below ce (paired bootstrap, Holm-adjusted p < {ALPHA}); refused/failed: no run of the cell "
                 "completed; not run: no record.")


def _guard(key: str, value: float) -> str:
    """A guard metric as shown: the empty share in percent, repetition with three decimals."""
    if key == "empty_share":
        return num(100 * value, 1)
    return num(value, 3 if key == "repetition" else 2)


def _seeds_text(cell: pd.Series) -> str:
    """'3', '2 †', or '2 † (+1 failed)' where some seeds of a completed cell did not complete."""
    n = int(cell["n"])
    lost = status_words({"failed": int(cell["n_failed"]), "refused": int(cell["n_refused"])})
    return (f"{n} {FEW_SEEDS}" if 0 < n < MIN_SEEDS else str(n)) + (f" (+{lost})" if n and lost else "")


def leaderboard(a: Analysis, task: str) -> Table:
    """One task's strategies by tied rank: score and spread, CI, differences to ce and to the
    control, guard metrics, cost and the other test metrics."""
    metric = a.metrics[task]
    cells = a.cells[a.cells["task"] == task].set_index("strategy")
    guards = a.guards[a.guards["task"] == task].set_index("strategy")
    cost = a.cost[a.cost["task"] == task].set_index("strategy")
    means = a.test_means[a.test_means["task"] == task].pivot(index="strategy", columns="metric", values="mean")
    has_control = ((a.comparisons["task"] == task) & (a.comparisons["baseline"] == CONTROL)).any()

    def position(strategy: str) -> tuple[bool, float, float, str]:
        cell = cells.loc[strategy]
        ranked = not math.isnan(cell["rank"])
        return not ranked, cell["rank"] if ranked else 0.0, -cell["mean"] if cell["n"] else 0.0, strategy

    display, data = [], []
    for strategy in sorted(a.strategies(task), key=position):
        cell = cells.loc[strategy]
        vs = {b: _comparison(a, task, strategy, b) for b in (BASELINE, CONTROL)}
        row = {"rank": MISSING if math.isnan(cell["rank"]) else str(int(cell["rank"])), "strategy": strategy,
               "seeds": _seeds_text(cell), metric: score(cell, with_n=False), "95% CI": _interval(cell),
               "Δ vs ce [95% CI]": "baseline" if strategy == BASELINE else _delta(vs[BASELINE]),
               "p (Holm)": _p(vs[BASELINE]),
               "seed sd": MISSING if vs[BASELINE] is None else num(vs[BASELINE]["seed_sd"])}
        if has_control:
            row["Δ vs control [95% CI]"] = "control" if strategy == CONTROL else _delta(vs[CONTROL])
            row["p vs control (Holm)"] = _p(vs[CONTROL])
        numbers = {"strategy": strategy, **cell.drop("task").to_dict()}
        for baseline, c in vs.items():
            if c is not None:
                numbers.update({f"{k}_vs_{baseline}": c[k] for k in ("delta", "ci_low", "ci_high", "p", "p_holm",
                                                                     "significant", "seed_sd")})
        for key, label in _GUARD_COLUMNS.items():
            row[label] = _guard(key, guards.loc[strategy, key]) if strategy in guards.index else MISSING
        row["device-s"] = num(cost.loc[strategy, "seconds"], 0) if strategy in cost.index else MISSING
        row["samples/s"] = num(cost.loc[strategy, "samples_per_second"], 1) if strategy in cost.index else MISSING
        for frame in (guards, cost):
            if strategy in frame.index:
                numbers.update(frame.loc[strategy].drop("task").to_dict())
        for m in means.columns:
            has = strategy in means.index
            if m != metric:
                row[m] = num(means.loc[strategy, m]) if has else MISSING
            if has:
                numbers[f"test.{m}"] = means.loc[strategy, m]
        display.append(row)
        data.append(numbers)
    return Table(f"leaderboard_{task}", f"Leaderboard: {task} (ranked by test {metric})",
                 _drop_empty(pd.DataFrame(display)), pd.DataFrame(data),
                 legend=f"Equal ranks: not significantly below the best strategy of the group (its comparisons "
                        f"Holm-adjusted together), so two members may still differ from each other, e.g. "
                        f"one may be significantly below ce in the Δ column. * Holm-adjusted p < {ALPHA}. "
                        f"{FEW_SEEDS} fewer than {MIN_SEEDS} seeds. seed sd: the seed-to-seed spread to weigh "
                        f"Δ against.")


def _interval(cell: pd.Series) -> str:
    return MISSING if math.isnan(cell["ci_low"]) else f"[{cell['ci_low']:.2f}, {cell['ci_high']:.2f}]"


def overall_table(a: Analysis) -> Table:
    """Strategies by mean tied rank over tasks, with each task's rank and score beside."""
    cells = a.cells.set_index(["task", "strategy"])
    display = []
    for row in a.overall.itertuples():
        entry = {"strategy": row.strategy, "mean rank": num(row.mean_rank),
                 "tasks ranked": f"{row.tasks_ranked}/{len(a.tasks)}",
                 "mean Δ vs ce (points)": MISSING if row.strategy == BASELINE else num(row.mean_gain_points, signed=True),
                 "normalised change (%)":
                     MISSING if row.strategy == BASELINE else num(row.mean_normalised_change_pct, signed=True)}
        for task in a.tasks:
            if (task, row.strategy) not in cells.index:
                entry[task] = "not run"
                continue
            cell = cells.loc[(task, row.strategy)]
            rank = MISSING if math.isnan(cell["rank"]) else f"#{int(cell['rank'])}"
            entry[task] = f"{rank} · {score(cell, with_n=False)}" if cell["status"] == "completed" else score(cell)
        display.append(entry)
    return Table("overall", "Overall leaderboard: mean tied rank across tasks", pd.DataFrame(display), a.overall,
                 legend="normalised change: a gain as the share of ce's headroom to 100 it closes, a loss as the "
                        "share of ce's score it gives up (Marx & Cummings 2007), averaged over tasks.")


def guards_table(a: Analysis) -> Table:
    """Cells with at least one guard metric (generation tasks, sampling strategies)."""
    guards = a.guards.dropna(how="all", subset=list(_GUARD_COLUMNS))
    display = pd.DataFrame({"task": guards["task"], "strategy": guards["strategy"]})
    for key, label in _GUARD_COLUMNS.items():
        display[label] = [_guard(key, v) for v in guards[key]]
    return Table("guards", "Guard metrics (means over seeds)", _drop_empty(display), guards)


def cost_table(a: Analysis) -> Table:
    c = a.cost
    display = pd.DataFrame({
        "task": c["task"], "strategy": c["strategy"], "hardware": c["hardware"],
        "device-s per run": [num(v, 0) for v in c["seconds"]],
        "device-s with start checkpoint": [num(v, 0) for v in c["seconds_with_start"]],
        "samples/s": [num(v, 1) for v in c["samples_per_second"]],
        "train s/epoch": [num(v, 1) for v in c["epoch_seconds"]],
        "epoch ÷ ce": [MISSING if s == BASELINE or math.isnan(v) else f"{v:.1f}×"
                       for s, v in zip(c["strategy"], c["epoch_vs_ce"])],
        "score": [num(v) for v in c["score"]],
        "Δ vs ce": [MISSING if s == BASELINE else num(v, signed=True) for s, v in zip(c["strategy"], c["delta"])],
        "Δ per extra device-hour": [num(v, signed=True) for v in c["delta_per_extra_hour"]]})
    return Table("cost", "Cost and quality per device-hour", display, c)


def not_completed_table(a: Analysis) -> Table:
    rows = a.runs[a.runs["status"] != "completed"]
    display = pd.DataFrame({"task": rows["task"], "strategy": rows["strategy"], "seed": rows["seed"],
                            "status": rows["status"],
                            "why": [str(w).strip().splitlines()[-1][:160] if str(w).strip() else "" for w in rows["why"]]})
    return Table("not_completed", "Runs that did not complete (refused or failed)", display, rows)


def tables(a: Analysis) -> list[Table]:
    return [overall_table(a), summary_table(a), *(leaderboard(a, t) for t in a.tasks), guards_table(a),
            cost_table(a), not_completed_table(a)]


def methods(a: Analysis) -> list[str]:
    """How every number was computed (methods.md and the page)."""
    return [
        f"Across seeds: mean, sample standard deviation and 95% Student-t interval of the main test metric; "
        f"{FEW_SEEDS} marks cells with fewer than {MIN_SEEDS} seeds.",
        f"Against ce: paired bootstrap over test examples (Koehn 2004), {a.n_resamples} resamples (seed {a.seed}) "
        "shared by every strategy of a task; on each resample each run's corpus metric is recomputed from its "
        "per-example statistics and averaged over the strategy's seeds. Δ is the difference of the seed means, its "
        "interval the bootstrap percentile interval; the two-sided p-value is (1 + #|δ* − mean δ*| ≥ |Δ|)/(B + 1).",
        f"p-values are Holm-adjusted within each task's family of comparisons with one baseline; '*' and ↑/↓ mark "
        f"adjusted p < {ALPHA}. 'seed sd' is the root mean square of the two strategies' seed standard deviations: "
        "a Δ smaller than it is within seed-to-seed noise, whatever its p-value (the bootstrap covers test-set "
        "sampling only).",
        f"Sampling strategies are also compared with the constant-reward control ({CONTROL}): the same training, "
        "with a reward that says nothing about the output.",
        "Ranks: strategies sorted by mean; the best unranked strategy and those after it that are not "
        "significantly worse (pairwise paired bootstrap, Holm over the leader's comparisons) share a rank.",
        "Overall: mean rank over the tasks a strategy is ranked on; over the tasks with a ce cell, the mean "
        "of Δ = mean − mean_ce in metric points and of the normalised change (Marx & Cummings 2007): "
        "100·Δ/(100 − mean_ce) for a gain, 100·Δ/mean_ce for a loss.",
        f"Guards: for generated text, mean length in words, rep-{REPETITION_N} (share of an output's word "
        f"{REPETITION_N}-grams repeating an earlier one) and the share of empty outputs; for sampling strategies, "
        "KL to the starting model and policy entropy, training means of the selected epoch.",
        "Cost: device-seconds per run from start to record (plus the ce run whose checkpoint a strategy starts "
        "from), training samples/s; 'Δ per extra device-hour' divides the gain over ce by the time spent beyond ce.",
    ]


# ---- writers ------------------------------------------------------------------------------

def markdown(t: Table) -> str:
    return tabulate(t.display, headers="keys", tablefmt="github", showindex=t.index, disable_numparse=True)


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", FEW_SEEDS: r"$^\dagger$", "↑": r"$\uparrow$",
                  "↓": r"$\downarrow$", MISSING: "---", "·": r"$\cdot$"}


def _latex_text(value: Any) -> str:
    return "".join(_LATEX_SYMBOLS.get(ch, _LATEX_ESCAPES.get(ch, ch)) for ch in str(value))


def latex(t: Table) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs})."""
    frame = t.display.reset_index(names="") if t.index else t.display
    align = "".join("l" if i < 2 else "r" for i in range(len(frame.columns)))
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_latex_text(c) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_text(v) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return f"% {t.title}\n" + "\n".join(lines) + "\n"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts, NaN as null."""
    return json.loads(frame.to_json(orient="records"))


def _html_page(a: Analysis, all_tables: list[Table], figures: dict[str, Path], info: dict[str, Any]) -> str:
    by_name = {t.name: t for t in all_tables}

    def section(t: Table) -> str:
        legend = f"<p>{html.text(t.legend)}</p>" if t.legend else ""
        return f"<h3>{html.text(t.title)}</h3>{html.table(t.display, t.index)}{legend}"

    parts = [f"<p>{len(a.runs)} runs in the store: {', '.join(f'{v} {k}' for k, v in info['records'].items())}. "
             "Click a column header to sort.</p>"]
    if a.notes:
        parts.append("<h2>Warnings</h2>" + html.bullets(a.notes, "notes"))
    parts += ["<h2>Overall</h2>", section(by_name["overall"]), section(by_name["summary"])]
    for task in a.tasks:
        parts += [f"<h2>{html.text(task)}</h2>", section(by_name[f"leaderboard_{task}"])]
        parts += [html.image(figures[name], name) for name in (f"bars_{task}", f"curves_{task}", f"sampling_{task}")
                  if name in figures]
    parts += ["<h2>Guard metrics</h2>", section(by_name["guards"]), "<h2>Cost</h2>", section(by_name["cost"])]
    if "cost" in figures:
        parts.append(html.image(figures["cost"], "cost"))
    if len(by_name["not_completed"].display):
        parts += ["<h2>Not completed</h2>", section(by_name["not_completed"])]
    parts += ["<h2>Methods</h2>", html.bullets(methods(a)),
              "<h2>Reproducibility manifest</h2>", f"<pre>{html.text(json.dumps(info, indent=1))}</pre>"]
    return html.document("Reward strategies: results", "\n".join(parts))


def write_report(store: Store, out: Path, echo: bool = True, n_resamples: int = 1000, seed: int = 0,
                 command: str | None = None) -> dict[str, Any]:
    """Analyses every record of `store` and writes all tables, figures, the page and the manifest."""
    records = list(store.records())
    if not records:
        raise SystemExit(f"no run records in {store.root}: run `python -m harness run --grid` first")
    a = analyse(records, n_resamples=n_resamples, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    all_tables = tables(a)
    for t in all_tables:
        legend = f"\n{t.legend}\n" if t.legend else ""
        (out / f"{t.name}.md").write_text(f"# {t.title}\n\n{markdown(t)}\n{legend}", encoding="utf-8")
        (out / f"{t.name}.tex").write_text(latex(t), encoding="utf-8")
        t.data.to_csv(out / f"{t.name}.csv", index=False)
    notes = "".join(f"- {note}\n" for note in a.notes) or "none\n"
    (out / "methods.md").write_text("# Methods\n\n" + "".join(f"- {m}\n" for m in methods(a)) +
                                    f"\n# Warnings\n\n{notes}", encoding="utf-8")
    a.comparisons.to_csv(out / "comparisons.csv", index=False)
    a.runs.to_csv(out / "runs.csv", index=False)
    statistics = {"resamples": n_resamples, "bootstrap_seed": seed, "alpha": ALPHA, "confidence": 0.95,
                  "multiple_comparisons": "Holm, per task and baseline"}
    command = command or f"python -m harness report --store {store.root} --out {out} --resamples {n_resamples}"
    info = manifest(records, command, statistics, store.sessions())
    (out / "manifest.json").write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
    (out / "grid.yaml").write_text(yaml.safe_dump(grid(records), sort_keys=False), encoding="utf-8")
    figures = plots.save_figures(a, out / "plots")
    (out / "index.html").write_text(_html_page(a, all_tables, figures, info), encoding="utf-8")
    by_name = {t.name: t for t in all_tables}
    payload = {"summary": by_name["summary"].display.to_dict(orient="index"),
               "cells": _records(a.cells), "overall": _records(a.overall),
               "leaderboards": {task: _records(by_name[f"leaderboard_{task}"].data) for task in a.tasks},
               "comparisons": _records(a.comparisons), "guards": _records(a.guards), "cost": _records(a.cost),
               "runs": _records(a.runs), "not_completed": _records(by_name["not_completed"].data),
               "notes": a.notes, "methods": methods(a), "manifest": info}
    (out / "summary.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    if echo:
        for task in a.tasks:
            print(f"\n## {task} (ranked by test {a.metrics[task]})\n{markdown(by_name[f'leaderboard_{task}'])}")
        print(f"\n## task x strategy (test, main metric)\n{markdown(by_name['summary'])}")
        print(f"\n## overall\n{markdown(by_name['overall'])}")
        if len(by_name["not_completed"].display):
            print(f"\n## runs not completed\n{markdown(by_name['not_completed'])}")
        for note in a.notes:
            print(f"warning: {note}")
        print(f"\nwrote {out}/index.html, tables as .md/.tex/.csv, summary.json, plots/, manifest.json, grid.yaml")
    return payload


def print_leaderboards(store: Store, tasks: list[str] | None = None, fmt: str = "md",
                       n_resamples: int = 1000, seed: int = 0) -> None:
    """Prints the overall and per-task leaderboards (Markdown, LaTeX or CSV) without writing files."""
    records = [r for r in store.records() if not tasks or r.task in tasks]
    if not records:
        raise SystemExit(f"no run records in {store.root}" + (f" for {', '.join(tasks)}" if tasks else ""))
    a = analyse(records, n_resamples=n_resamples, seed=seed)
    for t in [overall_table(a), *(leaderboard(a, task) for task in a.tasks)]:
        body = {"md": markdown, "latex": latex, "csv": lambda t: t.data.to_csv(index=False)}[fmt](t)
        print(f"\n## {t.title}\n{body}")
    for note in a.notes:
        print(f"warning: {note}", file=sys.stderr)

