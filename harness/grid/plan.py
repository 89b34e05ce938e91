"""What a `harness run` will do: the grid expanded into its cells, each labelled and marked as done
(a record is stored: skipped) or to run (never run, or rerun because it failed or is forced).

`expand` turns a grid (`harness.config.Grid`) into run configurations; `make_plan` filters and
labels them against the store. `harness.grid.scheduler` runs what the plan says is to run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.config import ConfigError, Grid, RunConfig, parent_of, settings_from, with_parent
from harness.run.data import DataSource
from harness.validate import COMMAND_LINE
from harness.store import Store

# A cell's state in the plan.
DONE = "done"  # stored: skipped
TO_RUN = "to run"  # never stored
RETRY = "rerun: failed"  # stored as failed, and --retry-failed
FORCED = "rerun: forced"  # stored, and --force


@dataclass(frozen=True)
class Cell:
    label: str  # "[i/n] task reward seed s (hash)", the prefix of every line about it
    config: RunConfig
    state: str  # DONE, TO_RUN, RETRY or FORCED
    stored: str | None  # the stored record's status (completed, failed, refused), None if none


@dataclass(frozen=True)
class Plan:
    grid: Grid  # with the strategies a single run adds
    cells: tuple[Cell, ...]  # every cell asked for, in run order

    @property
    def todo(self) -> list[Cell]:
        return [c for c in self.cells if c.state != DONE]

    @property
    def done(self) -> list[Cell]:
        return [c for c in self.cells if c.state == DONE]


def expand(grid: Grid, data: dict[str, dict[str, Any]], tasks: list[str] | None = None,
           rewards: list[str] | None = None, seeds: list[int] | None = None,
           overrides: dict[str, Any] | None = None) -> list[RunConfig]:
    """Every task x reward x seed cell, filtered; strategies that start from another run come last."""
    for wanted, known, what in ((tasks, grid.tasks, "task"), (rewards, grid.rewards, "reward")):
        for name in wanted or []:
            if name not in known:
                raise ConfigError(f"{what} {name!r} is not in grid {grid.source}; it has: {', '.join(known)}")
    from rewards.base import REWARDS

    names = [r for r in grid.rewards if not rewards or r in rewards]
    names.sort(key=lambda r: REWARDS[r].init_from is not None)
    runs = []
    for reward in names:
        for task in grid.tasks:
            if tasks and task not in tasks:
                continue
            settings = settings_from(COMMAND_LINE, overrides or {}, grid.settings[task])
            for seed in seeds or grid.seeds:
                runs.append(with_parent(RunConfig(task=task, reward=reward, seed=seed, settings=settings,
                                                  reward_params=grid.rewards[reward], data=data[task])))
    return runs


def make_plan(grid: Grid, source: DataSource, store: Store, tasks: list[str] | None = None,
              rewards: list[str] | None = None, seeds: list[int] | None = None,
              overrides: dict[str, Any] | None = None, single: bool = False, force: bool = False,
              retry_failed: bool = False) -> Plan:
    """The cells of `grid` (filtered by tasks, rewards, seeds; settings overridden), each with its
    state in `store`. `single`: one cell asked for outside `--grid`, whose strategy need not be in the
    grid (it then runs with its default parameters). Describing the data reads (checksums) the local
    files of every task asked for, so a missing file fails here, before anything runs."""
    if single:
        grid = _with_strategies(grid, rewards or [])
    from tasks.base import get_task

    try:
        data = {task: source.describe(get_task(task)) for task in grid.tasks if not tasks or task in tasks}
    except KeyError as err:  # an unknown --hub-variant
        raise ConfigError(err.args[0]) from None
    runs = expand(grid, data, tasks, rewards, seeds, overrides)
    cells = []
    for i, cfg in enumerate(runs, 1):
        stored = store.status(cfg.task, cfg.reward, cfg.run_hash())
        if stored is None:
            state = TO_RUN
        elif force:
            state = FORCED
        elif stored == "failed" and retry_failed:
            state = RETRY
        else:
            state = DONE
        label = f"[{i}/{len(runs)}] {cfg.task} {cfg.reward} seed {cfg.seed} ({cfg.run_hash()})"
        cells.append(Cell(label, cfg, state, stored))
    _check_parents(cells, store)
    return Plan(grid, tuple(cells))


def _check_parents(cells: list[Cell], store: Store) -> None:
    """Every cell to run that starts from another run's checkpoint has that parent: completed in the
    store with its checkpoint, or run by this plan first (the scheduler waits for it). Otherwise the
    plan is refused before anything runs: the child would fail, or worse, stand for a run it is not."""
    planned = {c.config.run_hash() for c in cells if c.state != DONE}
    problems, parents = [], []
    for cell in cells:
        parent = parent_of(cell.config) if cell.state != DONE else None
        if parent is None or parent.run_hash() in planned:
            continue
        record = store.record(parent.task, parent.reward, parent.run_hash())
        if record is not None and record.status == "completed" and store.checkpoint_path(parent.run_hash()).exists():
            continue
        why = ("it has no record" if record is None else f"its record is {record.status} (`--retry-failed` reruns it)"
               if record.status != "completed" else "its checkpoint is gone (`--force` reruns it)")
        problems.append(f"{cell.label}: parent missing: `{cell.config.reward}` starts from the `{parent.reward}` "
                        f"run's checkpoint (hash {parent.run_hash()}): {why}")
        parents.append(parent.reward)
    if problems:
        names = ",".join(dict.fromkeys(parents))
        raise ConfigError("\n".join(problems) + f"\nrun `--reward {names}` first with the same grid, seeds and "
                          f"overrides, or together with these cells (`--reward {names},...`), which runs parents first")


def _with_strategies(grid: Grid, names: list[str]) -> Grid:
    """`grid` with the named strategies it does not list added, with their default parameters."""
    from rewards.base import build_reward

    missing = [r for r in names if r not in grid.rewards]
    for name in missing:
        try:
            build_reward(name)
        except KeyError as err:
            raise ConfigError(err.args[0]) from None
    return dataclasses.replace(grid, rewards={**grid.rewards, **{r: {} for r in missing}})
