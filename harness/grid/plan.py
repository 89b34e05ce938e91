"""What a `harness run` will do: the grid expanded into its cells, each labelled and marked as done
(a record is stored: skipped) or to run (never run, or rerun because it failed or is forced).

`expand` turns a grid (`harness.config.Grid`) into run configurations; `make_plan` filters and
labels them against the store. `harness.grid.scheduler` runs what the plan says is to run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.config import ConfigError, Grid, RunConfig, check_reward_params, parent_of, settings_from, with_parent
from harness.overrides import expand_sweep, parse_reward_spec, strategy_of
from harness.run.data import DataSource
from harness.validate import COMMAND_LINE
from harness.store import Store

# A cell's state in the plan.
DONE = "done"  # stored: skipped
TO_RUN = "to run"  # never stored
RETRY = "rerun: failed"  # stored as failed, and --retry-failed
FORCED = "rerun: forced"  # stored, and --force
# Stored as completed, but the checkpoint a child still to run starts from is gone (a store published
# without checkpoints): run again first, with its own settings and seed, which restores it.
RESTORE = "rerun: restores its checkpoint"


@dataclass(frozen=True)
class Cell:
    label: str  # "[i/n] task reward seed s (hash)", the prefix of every line about it
    config: RunConfig
    state: str  # DONE, TO_RUN, RETRY, FORCED or RESTORE
    stored: str | None  # the stored record's status (completed, failed, refused), None if none
    strategy: str = ""  # the grid's name for its reward cell: `focal`, or `focal[gamma=1]` in a sweep


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
    return [cfg for _, cfg in named_runs(grid, data, tasks, rewards, seeds, overrides)]


def named_runs(grid: Grid, data: dict[str, dict[str, Any]], tasks: list[str] | None = None,
               rewards: list[str] | None = None, seeds: list[int] | None = None,
               overrides: dict[str, Any] | None = None) -> list[tuple[str, RunConfig]]:
    """`expand` with each run's reward cell name (`focal`, or `focal[gamma=1]` in a sweep). A
    `rewards` filter names cells or strategies (`focal` selects every `focal[...]` cell)."""
    for wanted, known, what in ((tasks, grid.tasks, "task"), (rewards, grid.rewards, "reward")):
        for name in wanted or []:
            if name not in known and not any(strategy_of(k) == name for k in known):
                raise ConfigError(f"{what} {name!r} is not in grid {grid.source}; it has: {', '.join(known)}")
    from rewards.base import REWARDS

    names = [r for r in grid.rewards if not rewards or r in rewards or strategy_of(r) in rewards]
    names.sort(key=lambda r: REWARDS[strategy_of(r)].init_from is not None)
    runs = []
    for reward in names:
        for task in grid.tasks:
            if tasks and task not in tasks:
                continue
            settings = settings_from(COMMAND_LINE, overrides or {}, grid.settings[task])
            for seed in seeds or grid.seeds:
                runs.append((reward, with_parent(RunConfig(task=task, reward=strategy_of(reward), seed=seed,
                                                           settings=settings, reward_params=grid.rewards[reward],
                                                           data=data[task]))))
    return runs


def make_plan(grid: Grid, source: DataSource, store: Store, tasks: list[str] | None = None,
              rewards: list[str] | None = None, seeds: list[int] | None = None,
              overrides: dict[str, Any] | None = None, single: bool = False, force: bool = False,
              retry_failed: bool = False) -> Plan:
    """The cells of `grid` (filtered by tasks, rewards, seeds; settings overridden), each with its
    state in `store`. `rewards`: `--reward` specs (`with_reward_specs`). `single`: one cell asked for
    outside `--grid`, whose strategy need not be in the grid (it then runs with its default
    parameters). Describing the data reads (checksums) the local files of every task asked for, so a
    missing file fails here, before anything runs."""
    grid, rewards = with_reward_specs(grid, rewards or [], single)
    from tasks.base import get_task

    try:
        data = {task: source.describe(get_task(task)) for task in grid.tasks if not tasks or task in tasks}
    except KeyError as err:  # an unknown --hub-variant
        raise ConfigError(err.args[0]) from None
    runs = named_runs(grid, data, tasks, rewards or None, seeds, overrides)
    cells = []
    for i, (name, cfg) in enumerate(runs, 1):
        stored = store.status(cfg.task, cfg.reward, cfg.run_hash())
        if stored is None:
            state = TO_RUN
        elif force:
            state = FORCED
        elif stored == "failed" and retry_failed:
            state = RETRY
        else:
            state = DONE
        label = f"[{i}/{len(runs)}] {cfg.task} {name} seed {cfg.seed} ({cfg.run_hash()})"
        cells.append(Cell(label, cfg, state, stored, name))
    cells = _restore_parents(cells, store)
    _check_parents(cells, store)
    return Plan(grid, tuple(cells))


def _restore_parents(cells: list[Cell], store: Store) -> list[Cell]:
    """The cells, with each completed parent whose checkpoint is gone while a child of this plan still
    has to run set to RESTORE. Training is deterministic for a given device, seed and thread count
    (tests/test_runner.py), so the rerun gives back the parent its record describes."""
    wanted = {c.config.parent for c in cells if c.state != DONE and c.config.parent is not None}
    return [dataclasses.replace(c, state=RESTORE)
            if c.state == DONE and c.stored == "completed" and c.config.run_hash() in wanted
            and not store.checkpoint_path(c.config.run_hash()).exists() else c
            for c in cells]


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


def with_reward_specs(grid: Grid, specs: list[str], single: bool) -> tuple[Grid, list[str]]:
    """`grid` with the `--reward` specs' cells it lacks added, and the cell names they select.

    A spec with parameters (`focal:gamma=1`, or a sweep `focal:gamma=[0.5,1]`) adds its cells with
    those parameters; a bare name adds the strategy with its default parameters in a single run
    (`single`) and only filters the grid's cells otherwise."""
    from rewards.base import build_reward

    added: dict[str, dict[str, Any]] = {}
    selected: list[str] = []
    for spec in specs:
        name, params = parse_reward_spec(spec)
        if not params and (name in grid.rewards or not single):
            selected.append(name)
            continue
        try:
            cells = expand_sweep(name, check_reward_params(f"--reward {spec}", name, params))
            for cell, cell_params in cells.items():
                build_reward(name, cell_params)
        except (KeyError, ValueError) as err:
            raise ConfigError(err.args[0]) from None
        added.update({c: p for c, p in cells.items() if c not in grid.rewards})
        selected += cells
    return dataclasses.replace(grid, rewards={**grid.rewards, **added}), selected
