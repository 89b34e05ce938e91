"""Running a grid's cells: one scheduler, three backends.

`schedule` is the only loop. It hands cells to a backend in the grid's order, at most
`backend.capacity` at a time, and waits for the next finished one; a cell whose strategy starts from
another run's checkpoint (`init_from`, e.g. the sampling strategies from `ce`) is handed out only
after that run has finished, when the parent is part of this grid (otherwise at once: the plan
checked that the parent is stored), and never when the parent did not complete. Each run is claimed
in the store before it starts (`Store.claim`), so grids sharing a store split the cells. It tells a
`harness.grid.progress.GridProgress` of every start and finish (which prints a line per finished run
and the grid's progress) and counts the statuses and failures.

Backends (`start(token, cfg)`; `wait()` -> the next `Outcome`; a context manager that stops what
still runs on exit):
  - `InProcess` (here): one run at a time in this process, progress bars shown;
  - `harness.grid.pool.Pool`: `jobs` worker processes on this machine;
  - `harness.grid.ray_executor.RayBackend`: each run a Ray task.
A backend whose worker dies mid-run reports an `Outcome` without a record; the scheduler counts the
run as failed without storing it (so the next `harness run` reruns it) and the grid goes on. A
backend whose run met bad input or an unwritable store reports it as `fatal`: the grid stops with
that error, as it would in this process.

`run_session` is what `harness run` calls: it picks the backend, watches the device, and stores
the session summary.
"""
from __future__ import annotations

import datetime
import functools
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from harness.config import RunConfig
from harness.grid.plan import Plan
from harness.grid.progress import GridProgress
from harness.run import recipe as runner
from harness.run.data import DataSource
from harness.store import Heartbeat, RunRecord, Store


@dataclass
class Outcome:
    """A finished run, as a backend reports it."""

    token: int  # the one `start` was given
    record: RunRecord | None  # the run's record; None: the worker died, or `fatal`
    error: str = ""  # how the worker died, when there is no record
    fatal: BaseException | None = None  # bad input or an unwritable store: stops the grid, as in this process


@dataclass
class Tally:
    """What a grid's runs came to: statuses, and the runs that did not complete (label, first error line)."""

    total: int
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, label: str, status: str, why: str = "") -> None:
        self.statuses[status] += 1
        if status == "failed":
            self.failures.append((label, (why.strip().splitlines() or [""])[0]))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, which `harness run` turns into Ctrl-C) stopped the grid after `done` of its
    `total` runs had finished, `tally` saying how they ended (a KeyboardInterrupt still, so whatever
    catches that catches it)."""

    def __init__(self, done: int, total: int, tally: Tally) -> None:
        super().__init__(f"{done}/{total} done; rerun the same command to resume")
        self.done, self.total, self.tally = done, total, tally


class Backend(Protocol):
    capacity: float  # runs at once

    def start(self, token: int, cfg: RunConfig) -> None: ...

    def wait(self) -> Outcome: ...

    def __enter__(self) -> "Backend": ...

    def __exit__(self, *exc: Any) -> None: ...


def ready(cfg: RunConfig, unfinished: set[str]) -> bool:
    """Whether `cfg` may start: its parent run (init_from), if any, is not among the unfinished runs."""
    return cfg.parent is None or cfg.parent not in unfinished


def finished_line(label: str, record: RunRecord, seconds: float) -> str:
    """The one line printed per finished run."""
    if record.status == "completed":
        return f"{label}: test {record.main_metric} {record.score:.2f} ({seconds:.0f} s)"
    return f"{label}: {record.status}: {record.why}"


# Seconds between looks at the store for runs another grid holds.
POLL_SECONDS = 2.0


def schedule(runs: Sequence[tuple[str, RunConfig]], backend: Backend, store: Store,
             rerun: frozenset[str] = frozenset(), progress: GridProgress | None = None,
             on_record: Sequence[Callable[[RunRecord], None]] = ()) -> Tally:
    """Runs every (label, config) on `backend` in dependency order; what they came to.

    Each run is claimed in the store first (`Store.claim`): one another grid holds is left to it
    and waited for (its record appears, or its claim goes stale and this grid takes it over), and one
    another grid has stored since the plan was made is skipped, unless it is in `rerun` (forced or
    retried). A run whose worker died is not stored (the next `harness run` reruns it); a run whose
    parent did not complete is not started. Bad input or an unwritable store in a worker stops the
    grid with its error; Ctrl-C raises `Interrupted` after the backend has stopped its workers.
    `progress` is told of every start and finish (default: plain lines, no estimates); each of
    `on_record` (e.g. a tracker's `log_record`) is called with every record this grid stored.
    """
    progress = progress or GridProgress(len(runs), bars=False)
    pending = list(enumerate(runs))
    unfinished = {cfg.run_hash() for _, cfg in runs}
    broken: set[str] = set()  # runs that did not complete: their children cannot start
    running: dict[int, float] = {}  # token -> start time
    elsewhere: list[tuple[int, tuple[str, RunConfig]]] = []  # claimed by another grid
    tally = Tally(len(runs))

    def finish(token: int, label: str, cfg: RunConfig, status: str, line: str, why: str = "",
               here: bool = True) -> None:
        tally.add(label, status, why)
        unfinished.discard(cfg.run_hash())
        if status != "completed":
            broken.add(cfg.run_hash())
        progress.finished(token, line, status, here)

    try:
        with backend, Heartbeat() as heartbeat:
            while pending or running or elsewhere:
                while len(running) < backend.capacity:
                    item = next((item for item in pending if ready(item[1][1], unfinished)), None)
                    if item is None:
                        break
                    pending.remove(item)
                    token, (label, cfg) = item
                    if cfg.parent in broken:
                        why = f"parent run {cfg.parent} did not complete; not started"
                        finish(token, label, cfg, "failed", f"{label}: failed: {why}", why)
                        continue
                    claim = store.claim(cfg.run_hash())
                    if claim is None:
                        elsewhere.append(item)
                        continue
                    if cfg.run_hash() not in rerun and store.record(cfg.task, cfg.reward, cfg.run_hash()):
                        claim.release()
                        elsewhere.append(item)  # stored by another grid since the plan: counted from its record
                        continue
                    heartbeat.claims[cfg.run_hash()] = claim
                    running[token] = time.time()
                    progress.started(token, label, parallel=backend.capacity > 1)
                    backend.start(token, cfg)
                if running:
                    outcome = backend.wait()
                    if outcome.fatal is not None:
                        raise outcome.fatal
                    label, cfg = runs[outcome.token]
                    heartbeat.claims.pop(cfg.run_hash()).release()
                    seconds = time.time() - running.pop(outcome.token)
                    if outcome.record is None:
                        why = f"{outcome.error}; not stored: rerun the same command to resume"
                        finish(outcome.token, label, cfg, "failed", f"{label}: failed: {why}", why)
                    else:
                        record = outcome.record
                        finish(outcome.token, label, cfg, record.status, finished_line(label, record, seconds),
                               record.why)
                        for callback in on_record:
                            callback(record)
                elif elsewhere:
                    pending += _look_elsewhere(elsewhere, store, finish)
                elif pending:
                    raise RuntimeError(f"no run can start: {[label for _, (label, _) in pending]} wait on each other")
    except KeyboardInterrupt:
        raise Interrupted(sum(tally.statuses.values()), len(runs), tally) from None
    finally:
        progress.close()
    return tally


def _look_elsewhere(elsewhere: list[tuple[int, tuple[str, RunConfig]]], store: Store,
                    finish: Callable[..., None]) -> list[tuple[int, tuple[str, RunConfig]]]:
    """Runs another grid holds: those whose record appeared are finished (as that grid stored them);
    those whose claim is free or stale come back to be claimed here. Waits a little when nothing changed."""
    back, before = [], len(elsewhere)
    for item in list(elsewhere):
        token, (label, cfg) = item
        record = store.record(cfg.task, cfg.reward, cfg.run_hash())
        if record is not None:
            elsewhere.remove(item)
            finish(token, label, cfg, record.status, f"{label}: {record.status} by another grid on this store", record.why,
                   here=False)
        elif store.claim_free(cfg.run_hash()):
            elsewhere.remove(item)
            back.append(item)
    if len(elsewhere) == before:
        time.sleep(POLL_SECONDS)
    return back


@dataclass
class InProcess:
    """The sequential backend: `start` runs the cell here and now; `wait` returns it."""

    store: Store
    source: DataSource
    progress: bool = True
    device: str | None = None
    capacity: float = 1
    _done: Outcome | None = None

    def start(self, token: int, cfg: RunConfig) -> None:
        self._done = Outcome(token, runner.run_or_record_failure(cfg, self.store, self.source, progress=self.progress,
                                                                 device=self.device))

    def wait(self) -> Outcome:
        done, self._done = self._done, None
        return done

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def run_grid(runs: Sequence[tuple[str, RunConfig]], store: Store, source: DataSource, jobs: int = 1,
             progress: bool = True, initializer: Callable[[], None] | None = None, executor: str = "local",
             address: str | None = None, gpus_per_run: float | None = None, device: str | None = None,
             rerun: frozenset[str] = frozenset(), watch: GridProgress | None = None,
             on_record: Sequence[Callable[[RunRecord], None]] = ()) -> Tally:
    """Runs every (label, config): on Ray (`executor="ray"`, at `address`, `gpus_per_run` GPUs each),
    else in at most `jobs` worker processes, or in this process when `jobs` (or the number of runs)
    is 1. Returns what they came to. `device` ("cpu", "cuda", "cuda:1"; None: CUDA where there is
    one) is where each run trains; `rerun` (hashes of runs to run even though stored), `watch` and
    `on_record` go to `schedule`.

    `initializer` (picklable, e.g. a module-level function) runs in each worker before its first run,
    e.g. to import code that registers tasks or strategies (`harness.include`); it must tolerate
    running more than once in a process. Workers show no progress bars of their own.
    """
    if executor == "ray":
        from harness.grid.ray_executor import RayBackend

        backend: Backend = RayBackend(store, source, address, gpus_per_run, initializer, device=device)
    elif min(jobs, len(runs)) > 1:
        from harness.grid.pool import Pool

        backend = Pool(store, source, min(jobs, len(runs)), initializer, device=device)
    else:
        backend = InProcess(store, source, progress, device)
    return schedule(runs, backend, store, rerun, watch, on_record)


def run_session(plan: Plan, store: Store, source: DataSource, command: str, executor: str = "local",
                jobs: int | None = None, progress: bool = True, address: str | None = None,
                gpus_per_run: float | None = None, includes: Sequence[str] = (), device: str | None = None,
                config: dict[str, Any] | None = None,
                on_record: Sequence[Callable[[RunRecord], None]] = ()) -> dict[str, Any]:
    """Runs the plan's cells that are to run, watching the device and showing progress
    (`harness.grid.progress`), and stores the session summary (command, grid, executor, jobs, runs,
    their hashes, statuses, failures, included code, the resolved `config`, load average at the
    start, environment, wall time, GPU utilisation); returns it. `jobs` None: as many as the GPU
    holds (`pool.default_jobs`). `includes`: resolved paths of code to import in every worker first
    (`harness.include.load`).

    First, temporary files a killed process left in the store are removed, and the data of every
    task to run is read and checked (`check_data`), so bad input stops the grid before any run
    trains, whichever the executor. Ctrl-C raises `Interrupted` counting the plan's finished cells."""
    from harness.environment import environment, load_warning
    from harness.grid.monitor import DeviceMonitor
    from harness.grid.pool import default_jobs
    from harness.grid.progress import estimate, measured_times
    from harness.include import load
    from harness.run.data import check_data
    from harness.validate import check_models
    from tasks.base import get_task

    for path in store.clean_orphans():
        logging.getLogger("harness").info("removed %s, left by a killed run", path)
    tasks = {cell.config.task: get_task(cell.config.task) for cell in plan.todo}
    check_models(cell.config.settings.model or tasks[cell.config.task].default_model for cell in plan.todo)
    check_data(list(tasks.values()), source)
    runs = [(cell.label, cell.config) for cell in plan.todo]
    rerun = frozenset(cell.config.run_hash() for cell in plan.todo if cell.stored is not None)
    if executor == "ray":
        jobs = None
    else:
        jobs = min(jobs or default_jobs(), len(runs))
    initializer = functools.partial(load, list(includes)) if includes else None
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if runs and (warning := load_warning()):
        logging.getLogger("harness").warning(warning)
    load_average = os.getloadavg()[0]
    times = measured_times(store.records())
    watch = GridProgress(len(runs), {i: estimate(cell.config.task, cell.strategy, times).seconds / (jobs or 1)
                                     for i, cell in enumerate(plan.todo)},
                         bars=progress and sys.stderr.isatty())
    monitor = DeviceMonitor()

    def summary(tally: Tally, interrupted: bool) -> dict[str, Any]:
        return {"started": started, "command": command, "grid": plan.grid.name, "executor": executor,
                "jobs": jobs, "runs": len(runs), "interrupted": interrupted, "statuses": dict(tally.statuses),
                "failures": [{"cell": label, "error": error} for label, error in tally.failures],
                "includes": list(includes), "load_average_at_start": load_average,
                "hashes": [cfg.run_hash() for _, cfg in runs], "config": config,
                "environment": environment(), **monitor.summary()}

    try:
        with monitor:
            tally = run_grid(runs, store, source, jobs=jobs or 1, progress=progress, initializer=initializer,
                             executor=executor, address=address, gpus_per_run=gpus_per_run, device=device,
                             rerun=rerun, watch=watch, on_record=on_record)
    except Interrupted as stopped:  # the sitting's summary is kept: wall time, load, how far it got
        store.save_session(summary(stopped.tally, interrupted=True))
        raise Interrupted(stopped.done + len(plan.done), len(plan.cells), stopped.tally) from None
    session = summary(tally, interrupted=False)
    store.save_session(session)
    return session
