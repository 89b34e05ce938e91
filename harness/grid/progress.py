"""What a grid will do and how far it is: the `--dry-run` plan with time estimates, and progress.

Estimates come from the store: a cell's expected time is the mean `timing.total_seconds` of the
stored completed runs of the same task and strategy (cell name, so each sweep value has its own);
without one it is a guess, marked as such: the cell's time on other tasks scaled by `ce`'s time
here against there (a run from `ce`'s checkpoint is cheap and a sampling one dear on every task),
else the mean of the task's other strategies, else `GUESS_SECONDS`. While the grid runs, the ETA
is the estimates of the runs left, scaled by how long the finished runs took against theirs, so a
slower machine or a cheap stretch of the grid (the runs started from `ce`) moves it the right way.

Progress: on a terminal (`sys.stderr.isatty()`) tqdm bars: one grid line (done/total, failed,
elapsed, ETA) above the current run's own bar (task/strategy seed epoch, from the recipe) or, with
several runs at once (`--jobs`, Ray), one line per running run. Elsewhere (logs, CI) no bars: one
plain line per finished run and the grid line after it.
"""
from __future__ import annotations

import contextlib
import logging
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from harness.grid.plan import DONE, Plan
from harness.overrides import cell_name
from harness.store import RunRecord, Store
from rewards.base import BASELINE

GUESS_SECONDS = 60.0  # a cell's guessed time when the store has no run of its task
MAX_RUN_LINES = 8  # running runs shown one per line (Ray may have many queued)


@dataclass(frozen=True)
class Estimate:
    seconds: float
    measured: bool  # False: a guess
    basis: str  # what it is based on, e.g. "3 runs" or "guess: ner's other strategies"

    def text(self) -> str:
        return f"{'~' if self.measured else 'guess '}{duration(self.seconds)} ({self.basis})"


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def measured_times(records: Iterable[RunRecord]) -> dict[tuple[str, str], list[float]]:
    """(task, cell name) -> total seconds of its completed runs."""
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in records:
        seconds = record.timing.get("total_seconds") if record.status == "completed" else None
        if seconds:
            times[(record.task, cell_name(record.reward, record.reward_params))].append(float(seconds))
    return times


def scaled_from_other_tasks(task: str, cell: str, times: dict[tuple[str, str], list[float]]) -> float | None:
    """`ce`'s mean time on `task` times the cell's mean ratio to `ce` on the other tasks where both
    ran; None without such a task."""
    here = times.get((task, BASELINE))
    ratios = [statistics.mean(values) / statistics.mean(times[(other, BASELINE)])
              for (other, name), values in times.items()
              if name == cell and other != task and times.get((other, BASELINE))]
    return statistics.mean(here) * statistics.mean(ratios) if here and ratios else None


def estimate(task: str, cell: str, times: dict[tuple[str, str], list[float]]) -> Estimate:
    """The expected seconds of one cell from the measured runs (`measured_times`)."""
    own = times.get((task, cell))
    if own:
        return Estimate(statistics.mean(own), True, f"mean of {len(own)} stored run{'s' * (len(own) > 1)}")
    scaled = scaled_from_other_tasks(task, cell, times)
    if scaled is not None:
        return Estimate(scaled, False, "guess: its runs on other tasks, scaled by ce's time here")
    others = [s for (t, _), values in times.items() if t == task for s in values]
    if others:
        return Estimate(statistics.mean(others), False, f"guess: mean of {task}'s other strategies")
    return Estimate(GUESS_SECONDS, False, "guess: no stored run of this task")


def print_plan(plan: Plan, store: Store, jobs: int | None, waiting: set[str], out: TextIO | None = None) -> float:
    """One line per cell: done, to run (with its estimate) or waiting on its parent run; then the
    total, to `out` (default: stdout). `waiting`: run hashes of cells whose parent is itself still to
    run. Returns the total seconds."""
    out = out or sys.stdout
    times = measured_times(store.records())
    total, guessed = 0.0, 0
    for cell in plan.cells:
        if cell.state == DONE:
            print(f"  done     {cell.label}: {cell.stored}", file=out)
            continue
        est = estimate(cell.config.task, cell.strategy, times)
        total += est.seconds
        guessed += not est.measured
        state = "waiting" if cell.config.run_hash() in waiting else "to run"
        note = " (after its parent run)" if state == "waiting" else ""
        print(f"  {state:<8} {cell.label}: {est.text()}{note}", file=out)
    todo = len(plan.todo)
    parallel = f"; with {jobs} at once about {duration(total / jobs)}" if jobs and jobs > 1 else ""
    guess = f", {guessed} of them guessed" if guessed else ""
    print(f"{len(plan.done)} done, {todo} to run: about {duration(total)} one after another{parallel} "
          f"(estimated from the store's runs{guess})", file=out)
    return total


@dataclass
class GridProgress:
    """Watches `schedule` (`started`, `finished`): bars on a terminal, plain lines otherwise."""

    total: int
    estimates: dict[int, float] = field(default_factory=dict)  # token -> expected seconds
    bars: bool = field(default_factory=lambda: sys.stderr.isatty())
    failed: int = 0
    done: int = 0
    done_estimated: float = 0.0  # the estimates of the finished runs, summed
    started_at: float = field(default_factory=time.time)
    _grid: Any = None
    _runs: dict[int, Any] = field(default_factory=dict)  # token -> its tqdm line
    _logging: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __post_init__(self) -> None:
        if self.bars:  # the harness's log messages are written above the bars, not through them
            self._logging.enter_context(logging_redirect_tqdm([logging.getLogger("harness")]))
            self._grid = tqdm(total=self.total, position=0, dynamic_ncols=True, desc="grid",
                              bar_format="{desc}: {n_fmt}/{total_fmt} done{postfix} [{elapsed}]")
            self._refresh()

    def started(self, token: int, label: str, parallel: bool) -> None:
        """A run was handed to a worker; with several at once it gets a line of its own (in a log:
        a line saying it started)."""
        if not parallel:
            return  # the run draws its own bar, or prints its epochs
        since = time.strftime("%H:%M:%S")
        if not self.bars:
            print(f"{label}: started {since}", file=sys.stderr)
        elif len(self._runs) < MAX_RUN_LINES:
            self._runs[token] = tqdm(total=0, desc=f"{label}: running since {since}", leave=False,
                                     dynamic_ncols=True, bar_format="  {desc}")

    def finished(self, token: int, line: str, status: str, here: bool = True) -> None:
        """A run ended with `status` (completed, failed, refused); `here` False: another grid ran it.
        Only a run completed here counts towards the ETA's pace: one that failed (often at once) or
        that another grid ran took little or none of this grid's time for its estimate."""
        self.done += 1
        self.failed += status == "failed"
        estimated = self.estimates.pop(token, 0.0)
        self.done_estimated += estimated if status == "completed" and here else 0.0
        bar = self._runs.pop(token, None)
        if bar is not None:
            bar.close()
        if self.bars:
            tqdm.write(line, file=sys.stderr)
            self._grid.update(1)
            self._refresh()
        else:
            print(line, file=sys.stderr)
            print(f"grid: {self.summary()}", file=sys.stderr)

    def close(self) -> None:
        for bar in self._runs.values():
            bar.close()
        if self._grid is not None:
            self._grid.close()
        self._logging.close()

    def eta(self) -> float:
        """Seconds left: the estimates of the runs left, times the elapsed time over the estimates of
        the runs completed here once one has; before that, the estimates. Without estimates for every
        run left: the elapsed time per finished run times the runs left."""
        left = self.total - self.done
        elapsed = time.time() - self.started_at
        if len(self.estimates) == left or not self.done:
            pace = elapsed / self.done_estimated if self.done_estimated > 0 else 1.0
            return sum(self.estimates.values()) * pace
        return elapsed / self.done * left

    def summary(self) -> str:
        elapsed = time.time() - self.started_at
        return (f"{self.done}/{self.total} done, {self.failed} failed, elapsed {duration(elapsed)}, "
                f"ETA {duration(self.eta())}")

    def _refresh(self) -> None:
        self._grid.set_postfix_str(f"{self.failed} failed, ETA {duration(self.eta())}", refresh=True)


def waiting_on_parent(plan: Plan) -> set[str]:
    """Run hashes of the cells to run whose parent run (`init_from`) is itself still to run."""
    from harness.run.recipe import parent_config

    todo = {cell.config.run_hash() for cell in plan.todo}
    return {cell.config.run_hash() for cell in plan.todo
            if (parent := parent_config(cell.config)) is not None and parent.run_hash() in todo}
