"""Tables and leaderboards from every record in a store.

Writes, under the output folder: `summary.{md,csv,json}` (task x strategy, main test metric as
mean ± std over seeds with the number of seeds) and `leaderboard_<task>.{md,csv}` (strategies ranked
by the task's main test metric, every metric's mean and std). Refused and failed cells are shown
as such, never as a number.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from harness.store import Store


def collect(store: Store) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per completed run with its test metrics, one row per refused or failed run)."""
    done, other = [], []
    for record in store.records():
        cfg = record["config"]
        base = {"task": cfg["task"], "reward": cfg["reward"], "seed": cfg["seed"], "hash": record["hash"]}
        if record["status"] == "completed":
            done.append({**base, "main_metric": record["main_metric"], "best_epoch": record["best_epoch"],
                         "train_seconds": record["timing"]["train_seconds"],
                         "samples_per_second": record["timing"]["train_samples_per_second"],
                         **{f"test.{k}": v for k, v in record["test"].items()},
                         **{f"validation.{k}": v for k, v in record["validation"].items()}})
        else:
            other.append({**base, "status": record["status"],
                          "why": record.get("reason") or record.get("error", "")})
    return pd.DataFrame(done), pd.DataFrame(other)


def _cell(values: pd.Series) -> str:
    if len(values) == 1:
        return f"{values.iloc[0]:.2f} (n=1)"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f} (n={len(values)})"


def summary_table(done: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Task x strategy: the main test metric, mean ± sample std over seeds, n seeds."""
    cells: dict[tuple[str, str], str] = {}
    for (task, reward), group in other.groupby(["task", "reward"]) if len(other) else []:
        cells[(task, reward)] = "/".join(sorted(set(group["status"])))
    for (task, reward), group in done.groupby(["task", "reward"]) if len(done) else []:
        metric = group["main_metric"].iloc[0]
        cells[(task, reward)] = f"{_cell(group[f'test.{metric}'])}"
    tasks = sorted({t for t, _ in cells})
    rewards = sorted({r for _, r in cells}, key=lambda r: (r != "ce", r))
    table = pd.DataFrame([[cells.get((t, r), "—") for r in rewards] for t in tasks], index=tasks, columns=rewards)
    if len(done):
        metrics = done.groupby("task")["main_metric"].first()
        table.index = [f"{t} ({metrics.get(t, '?')})" for t in tasks]
    return table


def leaderboard(done: pd.DataFrame, task: str) -> pd.DataFrame:
    """Strategies on one task ranked by the mean main test metric, with every test metric."""
    rows = done[done["task"] == task]
    metric = rows["main_metric"].iloc[0]
    metric_columns = [c for c in rows.columns if c.startswith("test.") and rows[c].notna().any()]
    grouped = rows.groupby("reward")
    table = pd.DataFrame({"seeds": grouped.size()})
    for column in metric_columns:
        table[column.removeprefix("test.")] = grouped[column].mean()
        table[f"{column.removeprefix('test.')} std"] = grouped[column].std(ddof=1)
    table["train s"] = grouped["train_seconds"].mean()
    table["samples/s"] = grouped["samples_per_second"].mean()
    table = table.sort_values(metric, ascending=False)
    table.insert(0, "rank", range(1, len(table) + 1))
    ordered = ["rank", "seeds", metric, f"{metric} std"]
    return table[ordered + [c for c in table.columns if c not in ordered]].round(3)


def write_report(store: Store, out: Path, echo: bool = True) -> dict[str, Any]:
    done, other = collect(store)
    if done.empty and other.empty:
        raise SystemExit(f"no run records in {store.root}: run `python -m harness run --grid` first")
    out.mkdir(parents=True, exist_ok=True)
    summary = summary_table(done, other)
    summary.to_csv(out / "summary.csv")
    md = tabulate(summary, headers="keys", tablefmt="github")
    (out / "summary.md").write_text(f"# Test scores: mean ± std over seeds (n seeds)\n\n{md}\n")
    boards = {}
    for task in sorted(done["task"].unique()) if len(done) else []:
        board = leaderboard(done, task)
        board.to_csv(out / f"leaderboard_{task}.csv")
        board_md = tabulate(board, headers="keys", tablefmt="github", floatfmt=".2f", missingval="—")
        (out / f"leaderboard_{task}.md").write_text(f"# Leaderboard: {task}\n\n{board_md}\n")
        boards[task] = board
        if echo:
            print(f"\n## {task} (ranked by test {board.columns[2]})\n{board_md}")
    payload = {"summary": summary.to_dict(orient="index"),
               "leaderboards": {t: b.reset_index().to_dict(orient="records") for t, b in boards.items()},
               "not_completed": other.to_dict(orient="records") if len(other) else []}
    (out / "summary.json").write_text(json.dumps(payload, indent=1, default=str))
    if echo:
        print(f"\n## task x strategy (test, main metric)\n{md}")
        if len(other):
            print("\n## runs not completed\n" + tabulate(other, headers="keys", tablefmt="github", showindex=False))
        print(f"\nwrote {out}/summary.{{md,csv,json}} and leaderboard_<task>.{{md,csv}}")
    return payload
