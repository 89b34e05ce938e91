"""The report's figures (matplotlib, Agg backend: no display needed).

Per task: a forest plot of the difference of each strategy's mean main test metric to ce's (and to
ce_continued's, for strategies started from a checkpoint) with its seed-aware 95% interval and a band
of ± one seed-to-seed SD, significance marked; validation learning curves, reward/KL curves of the
sampling strategies per logged step, and their terms per evaluation (validation score, true and
proxy reward, KL, entropy, lengths, clip fraction, reward model accuracy: over-optimisation shows as
reward rising while the score falls); across tasks: quality against minutes of compute.
Refused and failed cells are labelled as such, never drawn as a zero; a curve needs two points.

Every strategy keeps one colour and marker in every figure: fixed greys for ce and each control,
a palette without greys for the others.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from harness.report.analysis import ALPHA, BASELINE, CONTROL_NAMES, SAMPLING_TERMS, Analysis  # noqa: E402

FIXED_COLOURS = {BASELINE: "#222222", **dict(zip(CONTROL_NAMES, ("#8a8a8a", "#5a5a5a", "#b4b4b4")))}
# tab20 without its grey pair (indices 14, 15), then tab20b: 38 colours, none a grey of ce or a control
PALETTE = [c for i, c in enumerate(matplotlib.colormaps["tab20"].colors) if i not in (14, 15)] + \
    list(matplotlib.colormaps["tab20b"].colors)
MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # cycled with the palette: 7 × 38 distinct pairs
# The baselines a forest plot compares with: ce, and ce_continued for strategies started from a checkpoint
FOREST_BASELINES = {BASELINE: "o", "ce_continued": "s"}
_SAMPLED_TERMS = (("reward", "mean reward of the samples"), ("kl", "KL to the starting model"))


def colour(a: Analysis, strategy: str) -> Any:
    """The same colour for a strategy in every figure: fixed greys for ce and the controls."""
    if strategy in FIXED_COLOURS:
        return FIXED_COLOURS[strategy]
    return PALETTE[_others(a).index(strategy) % len(PALETTE)]


def marker(a: Analysis, strategy: str) -> str:
    """The strategy's marker in every figure; with the colour it tells apart strategies the palette repeats."""
    if strategy in FIXED_COLOURS:
        return MARKERS[list(FIXED_COLOURS).index(strategy)]
    return MARKERS[_others(a).index(strategy) % len(MARKERS)]


def _others(a: Analysis) -> list[str]:
    return [s for s in a.strategies() if s not in FIXED_COLOURS]


def forest_plot(a: Analysis, task: str) -> Figure:
    """Δ of each strategy's mean main test metric to ce (●) and ce_continued (■): the point, its
    seed-aware 95% interval (line) and ± one pooled seed SD (band), filled and starred where the
    Holm-adjusted p < ALPHA; a cell with one seed shows Δ alone (hollow), a refused or failed cell its status."""
    c = a.comparisons
    rows = c[(c["task"] == task) & c["main"] & c["baseline"].isin(list(FOREST_BASELINES))]
    cells = a.cells[a.cells["task"] == task].set_index("strategy")
    names = [s for s in a.strategies(task) if s != BASELINE]
    fig, ax = plt.subplots(figsize=(7.5, 0.34 * len(names) + 1.6))
    ax.axvline(0, color=FIXED_COLOURS[BASELINE], linewidth=0.9)
    for y, name in enumerate(names):
        if cells.loc[name, "status"] != "completed":
            ax.text(0, y, f" {cells.loc[name, 'status']}", va="center", ha="left", fontsize=8, color="#b03030")
            continue
        mine = rows[rows["strategy"] == name]
        for k, row in enumerate(mine.itertuples()):
            offset = (k - (len(mine) - 1) / 2) * 0.3
            _forest_row(ax, y + offset, row, colour(a, name), FOREST_BASELINES[row.baseline])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(max(len(names), 1) - 0.5, -0.5)  # top to bottom in report order; one row even when empty
    ax.set_xlabel(f"Δ test {a.metrics[task]} against the baseline (points)")
    ax.set_title(f"{task}: difference to ce (●) and ce_continued (■), seed-aware 95% interval, band ± seed SD",
                 fontsize=9)
    ax.grid(axis="x", color="#eeeeee")
    ax.legend(handles=_forest_legend(), fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _forest_row(ax: Any, y: float, row: Any, color: Any, shape: str) -> None:
    """One comparison (a row of a.comparisons): seed-SD band under the interval under the point."""
    if not math.isnan(row.seed_sd):
        ax.barh(y, 2 * row.seed_sd, left=row.delta - row.seed_sd, height=0.24, color=color, alpha=0.22, linewidth=0)
    if row.testable:
        ax.plot([row.ci_low, row.ci_high], [y, y], color=color, linewidth=1.6)
    ax.plot(row.delta, y, marker=shape, markersize=6, color=color, markeredgecolor=color,
            markerfacecolor=color if row.significant else "white", linestyle="none")
    if row.significant:
        ax.annotate("*", (row.ci_high, y), xytext=(3, -3), textcoords="offset points", fontsize=10, color=color)


def _forest_legend() -> list[Line2D]:
    black = FIXED_COLOURS[BASELINE]
    hollow = {"color": black, "linestyle": "none", "markerfacecolor": "white"}
    return [Line2D([], [], marker="o", label="Δ vs ce", **hollow),
            Line2D([], [], marker="s", label="Δ vs ce_continued", **hollow),
            Line2D([], [], marker="o", color=black, linestyle="none", label=f"filled, *: Holm p < {ALPHA}"),
            Line2D([], [], color=black, linewidth=1.6, label="95% interval (none: 1 seed, no test)"),
            Line2D([], [], color=black, alpha=0.22, linewidth=7, label="Δ ± pooled seed SD")]


def _mean_by(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """x values and the mean y at each (over seeds)."""
    grouped: dict[float, list[float]] = defaultdict(list)
    for x, y in points:
        grouped[x].append(y)
    xs = sorted(grouped)
    return xs, [float(np.mean(grouped[x])) for x in xs]


def _line_style(a: Analysis, name: str) -> dict[str, Any]:
    return {"color": colour(a, name), "marker": marker(a, name), "markersize": 4,
            "linewidth": 2.2 if name in FIXED_COLOURS else 1.5}


def _legend_right(ax: Any) -> None:
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))


def learning_curves(a: Analysis, task: str) -> Figure | None:
    """Validation main metric per epoch (mean over seeds) of the strategies evaluated at two epochs
    or more; None when none was (a curve needs two points)."""
    metric = a.metrics[task]
    series = {}
    for name in a.strategies(task):
        points = [(h["epoch"], h["validation"][metric]) for r in a.groups.get((task, name), [])
                  for h in r.history if metric in h.get("validation", {})]
        xs, ys = _mean_by(points)
        if len(xs) >= 2:
            series[name] = (xs, ys)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=name, **_line_style(a, name))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric} (mean over seeds)")
    ax.set_title(f"{task}: learning curves", fontsize=9)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _legend_right(ax)
    fig.tight_layout()
    return fig


def sampling_curves(a: Analysis, task: str) -> Figure | None:
    """Reward and KL per logged step (means over seeds) for the strategies that logged a term at two
    steps or more; None if none did."""
    series = {}
    for name in a.strategies(task):
        steps = [s for r in a.groups.get((task, name), []) for s in r.steps]
        found = {term: _mean_by([(s["step"], s[term]) for s in steps if term in s]) for term, _ in _SAMPLED_TERMS}
        found = {term: xy for term, xy in found.items() if len(xy[0]) >= 2}
        if found:
            series[name] = found
    if not series:
        return None
    fig, axes = plt.subplots(1, len(_SAMPLED_TERMS), figsize=(10.0, 3.4))
    for ax, (term, title) in zip(axes, _SAMPLED_TERMS):
        for name, found in series.items():
            if term in found:
                ax.plot(*found[term], label=name, **_line_style(a, name))
        ax.set_xlabel("training step")
        ax.set_title(f"{task}: {title}", fontsize=9)
    _legend_right(axes[-1])
    fig.tight_layout()
    return fig


_EVALUATION_PANELS = {"validation": "validation score", "output_length": "validation output length (words)",
                      **SAMPLING_TERMS}


def evaluation_curves(a: Analysis, task: str) -> Figure | None:
    """The sampling strategies' terms per evaluation (means over seeds), one panel per term that some
    strategy logged at two evaluations or more; None when there is no such term."""
    rows = a.evaluations[a.evaluations["task"] == task]
    means = rows.groupby(["strategy", "epoch"]).mean(numeric_only=True)
    panels = [term for term in _EVALUATION_PANELS
              if (means[term].notna().groupby(level="strategy").sum() >= 2).any()] if len(means) else []
    if not panels:
        return None
    columns = min(4, len(panels))
    lines = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.1 * columns + 1.6, 2.8 * lines), squeeze=False)
    for ax, term in zip(axes.flat, panels):
        for name in ordered_present(a, task, means):
            series = means.loc[name, term].dropna()
            if len(series) >= 2:
                ax.plot(series.index, series.values, label=name, **_line_style(a, name))
        ax.set_title(_EVALUATION_PANELS[term], fontsize=8)
        ax.set_xlabel("evaluation (epoch)", fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{task}: sampling strategies per evaluation (means over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def ordered_present(a: Analysis, task: str, means: Any) -> list[str]:
    """The task's strategies in report order that have rows in `means` (indexed by strategy, epoch)."""
    present = set(means.index.get_level_values("strategy"))
    return [name for name in a.strategies(task) if name in present]


def cost_chart(a: Analysis) -> Figure:
    """Main test metric against minutes of compute per run (with the checkpoint it started from).
    Strategies are told apart by colour and marker in one shared legend: text labels beside the points
    would pile up where runs cost the same."""
    tasks = a.tasks
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for row in a.cost[a.cost["task"] == task].itertuples():
            ax.scatter(row.seconds_with_start / 60, row.score, color=colour(a, row.strategy),
                       marker=marker(a, row.strategy), s=30, alpha=0.85, edgecolors="none")
        ax.set_xlabel("minutes per run, with its start checkpoint")
        ax.set_ylabel(f"test {a.metrics[task]}")
        ax.set_title(f"{task}: quality against cost", fontsize=9)
    present = [s for s in a.strategies() if s in set(a.cost["strategy"])]
    handles = [Line2D([], [], color=colour(a, s), marker=marker(a, s), linestyle="none", label=s) for s in present]
    fig.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), max(4, 2 * len(tasks))), frameon=False)
    fig.tight_layout()
    return fig


_CAPTIONS = {
    "forest": ("Difference of each strategy's mean test {metric} to ce's (●) and, for strategies started from a "
               "checkpoint, to ce_continued's (■), in points. Line: the seed-aware 95% interval (seed-to-seed and "
               "test-set variance); band: Δ ± the pooled seed-to-seed SD, how far single runs scatter; filled and *: "
               f"Holm-adjusted p < {ALPHA}. A hollow point without a line had one seed: Δ alone, no test. Refused "
               "and failed cells are named at 0, never drawn as a difference of 0."),
    "curves": "Validation {metric} per epoch, mean over seeds; strategies evaluated at two epochs or more.",
    "sampling": ("Sampling strategies per logged training step (means over seeds): the mean reward of the samples "
                 "and the KL to the starting model; strategies that logged a term at two steps or more."),
    "evaluations": ("Sampling strategies per evaluation (means over seeds): validation score, output length and "
                    "the sampling terms; over-optimisation shows as the optimised reward rising while the score "
                    "falls."),
    "cost": ("Test score of the task's main metric against minutes of compute per run, counting the checkpoint a "
             "strategy started from; one point per strategy (mean over seeds), told apart by colour and marker "
             "(legend below the panels)."),
}


def caption(a: Analysis, name: str) -> str:
    """What the figure `name` (as save_figures names it) shows, for the page."""
    kind, _, task = name.partition("_")
    return _CAPTIONS[kind].format(metric=a.metrics.get(task, ""))


def save_figures(a: Analysis, folder: Path) -> dict[str, Path]:
    """Writes every figure as PNG under `folder`; name -> path, in display order."""
    folder.mkdir(parents=True, exist_ok=True)
    makers: list[tuple[str, Any]] = []
    for task in a.tasks:
        makers += [(f"forest_{task}", lambda t=task: forest_plot(a, t)),
                   (f"curves_{task}", lambda t=task: learning_curves(a, t)),
                   (f"sampling_{task}", lambda t=task: sampling_curves(a, t)),
                   (f"evaluations_{task}", lambda t=task: evaluation_curves(a, t))]
    if len(a.cost):
        makers.append(("cost", lambda: cost_chart(a)))
    paths = {}
    for name, make in makers:
        fig = make()
        if fig is None:
            continue
        paths[name] = folder / f"{name}.png"
        fig.savefig(paths[name], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return paths
