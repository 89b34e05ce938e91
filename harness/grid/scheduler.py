"""Running a grid's cells: one scheduler, three backends.

`schedule` is the only loop. It hands cells to a backend in the grid's order, at most
`backend.capacity` at a time, and waits for the next finished one; a cell whose strategy starts from
another run's checkpoint (`init_from`, e.g. the sampling strategies from `ce`) is handed out only
after that run has finished, when the parent is part of this grid (otherwise at once, from the
pretrained model if no checkpoint is stored). It tells a `harness.grid.progress.GridProgress` of
every start and finish (which prints a line per finished run and the grid's progress) and counts the
statuses.

Backends (`start(token, cfg)`; `wait()` -> the next `Outcome`; a context manager that stops what
still runs on exit):
  - `InProcess` (here): one run at a time in this process, progress bars shown;
  - `harness.grid.pool.Pool`: `jobs` worker processes on this machine;
  - `harness.grid.ray_executor.RayBackend`: each run a Ray task.
A backend whose worker dies mid-run reports an `Outcome` without a record; the scheduler stores the
run as failed (`lost_run`) and the grid goes on.

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
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from harness.config import RunConfig
from harness.grid.plan import Plan
from harness.grid.progress import GridProgress
from harness.run import recipe as runner
from harness.run.data import DataSource
from harness.store import RunRecord, Store


@dataclass
class Outcome:
    """A finished run, as a backend reports it."""

    token: int  # the one `start` was given
    record: RunRecord | None  # the run's record; None: the worker died
    error: str = ""  # how the worker died, when there is no record


class Backend(Protocol):
    capacity: float  # runs at once

    def start(self, token: int, cfg: RunConfig) -> None: ...

    def wait(self) -> Outcome: ...

    def __enter__(self) -> "Backend": ...

    def __exit__(self, *exc: Any) -> None: ...


def ready(cfg: RunConfig, unfinished: set[str]) -> bool:
    """Whether `cfg` may start: its parent run (init_from), if any, is not among the unfinished runs."""
    parent = runner.parent_config(cfg)
    return parent is None or parent.run_hash() not in unfinished


def finished_line(label: str, record: RunRecord, seconds: float) -> str:
    """The one line printed per finished run."""
    if record.status == "completed":
        return f"{label}: test {record.main_metric} {record.score:.2f} ({seconds:.0f} s)"
    return f"{label}: {record.status}: {record.why}"


def lost_run(cfg: RunConfig, error: str, store: Store) -> RunRecord:
    """Stores, and returns, the failed record of a run whose worker died before returning one."""
    record = RunRecord.failed(cfg, error)
    store.save(record)
    return record


def schedule(runs: Sequence[tuple[str, RunConfig]], backend: Backend, store: Store,
             progress: GridProgress | None = None,
             on_record: Sequence[Callable[[RunRecord], None]] = ()) -> Counter[str]:
    """Runs every (label, config) on `backend` in dependency order; how many ended in each status.
    `progress` is told of every start and finish (default: plain lines, no estimates); each of
    `on_record` (e.g. a tracker's `log_record`) is called with every finished run's record."""
    pending = list(enumerate(runs))
    unfinished = {cfg.run_hash() for _, cfg in runs}
    running: dict[int, float] = {}  # token -> start time
    statuses: Counter[str] = Counter()
    progress = progress or GridProgress(len(runs), bars=False)
    try:
        with backend:
            while pending or running:
                while len(running) < backend.capacity:
                    item = next((item for item in pending if ready(item[1][1], unfinished)), None)
                    if item is None:
                        break
                    pending.remove(item)
                    token, (label, cfg) = item
                    running[token] = time.time()
                    progress.started(token, label, parallel=backend.capacity > 1)
                    backend.start(token, cfg)
                if not running:
                    raise RuntimeError(f"no run can start: {[label for _, (label, _) in pending]} wait on each other")
                outcome = backend.wait()
                label, cfg = runs[outcome.token]
                record = outcome.record if outcome.record is not None else lost_run(cfg, outcome.error, store)
                statuses[record.status] += 1
                unfinished.discard(cfg.run_hash())
                line = finished_line(label, record, time.time() - running.pop(outcome.token))
                progress.finished(outcome.token, line, record)
                for callback in on_record:
                    callback(record)
    finally:
        progress.close()
    return statuses


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
             watch: GridProgress | None = None,
             on_record: Sequence[Callable[[RunRecord], None]] = ()) -> Counter[str]:
    """Runs every (label, config): on Ray (`executor="ray"`, at `address`, `gpus_per_run` GPUs each),
    else in at most `jobs` worker processes, or in this process when `jobs` (or the number of runs)
    is 1. Returns how many runs ended in each status. `device` ("cpu", "cuda", "cuda:1"; None: CUDA
    where there is one) is where each run trains; `watch` and `on_record` go to `schedule`.

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
    return schedule(runs, backend, store, watch, on_record)


def run_session(plan: Plan, store: Store, source: DataSource, command: str, executor: str = "local",
                jobs: int | None = None, progress: bool = True, address: str | None = None,
                gpus_per_run: float | None = None, includes: Sequence[str] = (), device: str | None = None,
                config: dict[str, Any] | None = None,
                on_record: Sequence[Callable[[RunRecord], None]] = ()) -> dict[str, Any]:
    """Runs the plan's cells that are to run, watching the device and showing progress
    (`harness.grid.progress`), and stores the session summary (command, grid, executor, jobs, runs,
    their hashes, statuses, included code, the resolved `config`, environment, wall time, GPU
    utilisation); returns it. `jobs` None: as many as the GPU holds (`pool.default_jobs`).
    `includes`: resolved paths of code to import in every worker first (`harness.include.load`)."""
    from harness.environment import environment, load_warning
    from harness.grid.monitor import DeviceMonitor
    from harness.grid.pool import default_jobs
    from harness.grid.progress import estimate, measured_times
    from harness.include import load

    runs = [(cell.label, cell.config) for cell in plan.todo]
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
    with DeviceMonitor() as monitor:
        statuses = run_grid(runs, store, source, jobs=jobs or 1, progress=progress, initializer=initializer,
                            executor=executor, address=address, gpus_per_run=gpus_per_run, device=device,
                            watch=watch, on_record=on_record)
    session = {"started": started, "command": command, "grid": plan.grid.name, "executor": executor,
               "jobs": jobs, "runs": len(runs), "statuses": dict(statuses), "includes": list(includes),
               "load_average_at_start": load_average,
               "hashes": [cfg.run_hash() for _, cfg in runs], "config": config,
               "environment": environment(), **monitor.summary()}
    store.save_session(session)
    return session
