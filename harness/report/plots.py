"""The report's figures (matplotlib, Agg backend: no display needed).

Per task: bars of the main test metric with 95% t-intervals over seeds, validation learning
curves, reward/KL curves of the sampling strategies per logged step, and their terms per
evaluation (validation score, true and proxy reward, KL, entropy, lengths, clip fraction, reward
model accuracy: over-optimisation shows as reward rising while the score falls); across tasks: quality against cost.
Refused and failed cells are labelled as such on the bar chart, never drawn as a zero bar.
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

from harness.report.analysis import BASELINE, CONTROL_NAMES, SAMPLING_TERMS, Analysis  # noqa: E402

_COLOURS = {BASELINE: "#444444", **dict(zip(CONTROL_NAMES, ("#bbbbbb", "#888888", "#dddddd")))}
_PALETTE = matplotlib.colormaps["tab20"]
_SAMPLED_TERMS = (("reward", "mean reward of the samples"), ("kl", "KL to the starting model"))


def bar_chart(a: Analysis, task: str) -> Figure:
    cells = a.cells[a.cells["task"] == task].set_index("strategy")
    names = a.strategies(task)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 1.5), 3.6))
    for x, name in enumerate(names):
        cell = cells.loc[name]
        if cell["status"] != "completed":
            ax.text(x, 0.02, cell["status"], rotation=90, ha="center", va="bottom", color="#b03030",
                    transform=ax.get_xaxis_transform())
            continue
        error = None if math.isnan(cell["ci_low"]) else [[cell["mean"] - cell["ci_low"]], [cell["ci_high"] - cell["mean"]]]
        ax.bar(x, cell["mean"], color=colour(a, name), yerr=error, capsize=3,
               hatch="//" if cell["n"] < 2 else None, edgecolor="white")
    if BASELINE in cells.index and cells.loc[BASELINE, "status"] == "completed":
        ax.axhline(cells.loc[BASELINE, "mean"], color=_COLOURS[BASELINE], linestyle="--", linewidth=0.8)
    completed = cells[cells["status"] == "completed"]
    if len(completed):
        low = np.nanmin(completed["ci_low"].fillna(completed["mean"]))
        high = np.nanmax(completed["ci_high"].fillna(completed["mean"]))
        span = max(high - low, 1.0)
        ax.set_ylim(max(0.0, low - 0.5 * span), high + 0.25 * span)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel(f"test {a.metrics[task]}")
    ax.set_title(f"{task}: mean and 95% t-interval over seeds (hatched: 1 seed)", fontsize=9)
    fig.tight_layout()
    return fig


def colour(a: Analysis, strategy: str) -> Any:
    """The same colour for a strategy in every figure: grey shades for ce and the control."""
    if strategy in _COLOURS:
        return _COLOURS[strategy]
    others = [s for s in a.strategies() if s not in _COLOURS]
    return _PALETTE(others.index(strategy) % _PALETTE.N)


def _mean_by(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """x values and the mean y at each (over seeds)."""
    grouped: dict[float, list[float]] = defaultdict(list)
    for x, y in points:
        grouped[x].append(y)
    xs = sorted(grouped)
    return xs, [float(np.mean(grouped[x])) for x in xs]


def _line_style(a: Analysis, name: str) -> dict[str, Any]:
    return {"color": colour(a, name), "linewidth": 2.2 if name in _COLOURS else 1.5}


def learning_curves(a: Analysis, task: str) -> Figure:
    metric = a.metrics[task]
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for name in a.strategies(task):
        points = [(h["epoch"], h["validation"][metric]) for r in a.groups.get((task, name), [])
                  for h in r.history if metric in h.get("validation", {})]
        if points:
            ax.plot(*_mean_by(points), marker="o", label=name, **_line_style(a, name))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric} (mean over seeds)")
    ax.set_title(f"{task}: learning curves", fontsize=9)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if ax.lines:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def sampling_curves(a: Analysis, task: str) -> Figure | None:
    """Reward and KL per logged step for the strategies that log them; None if none does."""
    series = {}
    for name in a.strategies(task):
        steps = [s for r in a.groups.get((task, name), []) for s in r.steps]
        found = {term: _mean_by([(s["step"], s[term]) for s in steps if term in s]) for term, _ in _SAMPLED_TERMS}
        if any(xs for xs, _ in found.values()):
            series[name] = found
    if not series:
        return None
    fig, axes = plt.subplots(1, len(_SAMPLED_TERMS), figsize=(10.0, 3.4))
    for ax, (term, title) in zip(axes, _SAMPLED_TERMS):
        for name, found in series.items():
            if found[term][0]:
                ax.plot(*found[term], label=name, **_line_style(a, name))
        ax.set_xlabel("training step")
        ax.set_title(f"{task}: {title}", fontsize=9)
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
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
                ax.plot(series.index, series.values, marker="o", label=name, **_line_style(a, name))
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
    """Main test metric against device-hours per run (with the checkpoint it started from)."""
    tasks = a.tasks
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = a.cost[a.cost["task"] == task]
        for row in rows.itertuples():
            ax.scatter(row.seconds_with_start / 3600, row.score, color=colour(a, row.strategy))
            ax.annotate(row.strategy, (row.seconds_with_start / 3600, row.score), fontsize=6,
                        xytext=(3, 2), textcoords="offset points")
        ax.set_xlabel("device-hours per run, with its start checkpoint")
        ax.set_ylabel(f"test {a.metrics[task]}")
        ax.set_title(f"{task}: quality against cost", fontsize=9)
    fig.tight_layout()
    return fig


def save_figures(a: Analysis, folder: Path) -> dict[str, Path]:
    """Writes every figure as PNG under `folder`; name -> path, in display order."""
    folder.mkdir(parents=True, exist_ok=True)
    makers: list[tuple[str, Any]] = []
    for task in a.tasks:
        makers += [(f"bars_{task}", lambda t=task: bar_chart(a, t)),
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
