"""Grid runs, one after another or several at once in a pool of worker processes.

The default models are small, so one run leaves a GPU mostly waiting on kernel launches; N
processes, each with its own interpreter and CUDA context, each running whole runs through
`harness.run.recipe.run_or_record_failure`, keep it busy. Processes are started with `spawn` (CUDA
cannot be used in a forked child) and live for the whole grid, so the imports and the CUDA
context are paid once per worker, not once per run.

Order: a run whose strategy starts from another run's checkpoint (`init_from`, e.g. the sampling
strategies from `ce`) is handed out only after that run's record exists, when the parent is part of
this grid; otherwise it starts at once, as it would in a sequential grid.

Safety: every record is written to a temporary file and renamed into place (`harness.store`), so a
stopped run leaves nothing that looks like a record and reruns when the grid is resumed. Workers
die with the parent: on Linux the kernel kills them when it dies, even by SIGKILL
(PR_SET_PDEATHSIG); on Ctrl-C or an error the parent interrupts them and waits. A worker that dies
on its own (a crash, the out-of-memory killer) gets a `failed` record, and the grid goes on.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Callable

import torch

from harness.run import recipe as runner
from harness.config import RunConfig
from harness.run.data import DataSource
from harness.store import RunRecord, Store

# GPU memory set aside per worker when --jobs is not given: the CUDA context (~0.5 GiB) plus a run
# of the default models at the default batch sizes, with headroom. An estimate, not a measurement;
# records carry each run's measured peak (timing.peak_gpu_memory_bytes) to check it against.
WORKER_GPU_BYTES = 6 * 2 ** 30


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_jobs() -> int:
    """CUDA: as many workers as 90% of the free GPU memory holds (at most one per CPU core); CPU: one,
    since one run already uses every core."""
    if not torch.cuda.is_available():
        return 1
    free, _ = torch.cuda.mem_get_info()
    return max(1, min(int(0.9 * free) // WORKER_GPU_BYTES, cpu_count()))


def finished_line(label: str, record: RunRecord, seconds: float) -> str:
    """The one line printed per finished run."""
    if record.status == "completed":
        return f"{label}: test {record.main_metric} {record.score:.2f} ({seconds:.0f} s)"
    return f"{label}: {record.status}: {record.why}"


def ready(cfg: RunConfig, unfinished: set[str]) -> bool:
    """Whether `cfg` may start: its parent run (init_from), if any, is not among the grid's unfinished
    run hashes. Shared by the pool and the Ray executor (`harness.grid.ray_executor`)."""
    parent = runner.parent_config(cfg)
    return parent is None or parent.run_hash() not in unfinished


def run_grid(runs: list[tuple[str, RunConfig]], store: Store, source: DataSource, jobs: int = 1,
             progress: bool = True, initializer: Callable[[], None] | None = None) -> Counter[str]:
    """Runs every (label, config): in this process when `jobs` (or the number of runs) is 1, else in
    at most `jobs` workers. Returns how many runs ended in each status.

    `initializer` (a picklable module-level function) runs once in each worker before its first
    run, e.g. to register strategies that are not built in. Workers show no progress bars.
    """
    jobs = min(jobs, len(runs))
    if jobs > 1:
        return _Pool(store, source, jobs, initializer).run(runs)
    statuses: Counter[str] = Counter()
    for label, cfg in runs:
        started = time.time()
        record = runner.run_or_record_failure(cfg, store, source, progress=progress)
        statuses[record.status] += 1
        print(finished_line(label, record, time.time() - started), file=sys.stderr)
    return statuses


def _die_with_parent(parent_pid: int) -> None:
    """Asks the kernel to kill this process when the parent dies (Linux), then checks it is alive."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _serve(conn: Connection, store_root: str, source: DataSource, threads: int, parent_pid: int,
           initializer: Callable[[], None] | None) -> None:
    """A worker: runs the configurations it is sent, one at a time, until it is sent None."""
    _die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    store = Store(store_root)
    try:
        if initializer is not None:
            initializer()
        while (cfg := conn.recv()) is not None:
            record = runner.run_or_record_failure(cfg, store, source, progress=False)
            conn.send(record)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the memory of a large run back to the other workers
    except (KeyboardInterrupt, EOFError):
        pass  # stopped by the parent, or the parent is gone: the current run leaves no record


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    current: tuple[str, RunConfig, float] | None = None  # label, config, start time


@dataclass
class _Pool:
    store: Store
    source: DataSource
    jobs: int
    initializer: Callable[[], None] | None
    workers: list[_Worker] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def run(self, runs: list[tuple[str, RunConfig]]) -> Counter[str]:
        pending = list(runs)
        unfinished = {cfg.run_hash() for _, cfg in runs}
        print(f"pool: {self.jobs} workers, {self._threads()} CPU threads each", file=sys.stderr)
        try:
            while pending or any(w.current for w in self.workers):
                self._hand_out(pending, unfinished)
                busy = [w for w in self.workers if w.current]
                if not busy:
                    raise RuntimeError(f"no run can start: {[label for label, _ in pending]} wait on each other")
                for ready in wait([w.conn for w in busy] + [w.process.sentinel for w in busy]):
                    worker = next(w for w in busy if ready in (w.conn, w.process.sentinel))
                    if worker.current is not None:
                        self._collect(worker, unfinished)
            self._stop(graceful=True)
        finally:
            self._stop(graceful=False)
        return self.statuses

    def _threads(self) -> int:
        """CPU threads per worker: the cores shared out, so N workers do not oversubscribe them."""
        return max(1, cpu_count() // self.jobs)

    def _hand_out(self, pending: list[tuple[str, RunConfig]], unfinished: set[str]) -> None:
        """Gives each idle worker the first pending run whose parent run (if in this grid) is done."""
        if not pending:
            return
        for worker in self._idle_workers():
            item = next((item for item in pending if ready(item[1], unfinished)), None)
            if item is None:
                return
            pending.remove(item)
            worker.current = (*item, time.time())
            worker.conn.send(item[1])

    def _idle_workers(self) -> list[_Worker]:
        self.workers = [w for w in self.workers if w.process.is_alive() or w.current]
        while len(self.workers) < self.jobs:
            self.workers.append(self._start_worker())
        return [w for w in self.workers if w.current is None]

    def _start_worker(self) -> _Worker:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        process = ctx.Process(target=_serve, daemon=True,
                              args=(theirs, str(self.store.root), self.source, self._threads(), os.getpid(),
                                    self.initializer))
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def _collect(self, worker: _Worker, unfinished: set[str]) -> None:
        """Prints the finished run's line; a worker that died mid-run gets its run recorded as failed."""
        label, cfg, started = worker.current
        try:
            record = worker.conn.recv()
        except EOFError:
            worker.process.join()
            record = RunRecord.failed(cfg, f"the worker process died (exit code {worker.process.exitcode})")
            self.store.save(record)
            self.workers.remove(worker)
        worker.current = None
        self.statuses[record.status] += 1
        unfinished.discard(cfg.run_hash())
        print(finished_line(label, record, time.time() - started), file=sys.stderr)

    def _stop(self, graceful: bool) -> None:
        """Graceful: idle workers are told to exit. Otherwise running ones are interrupted (their
        temporary files are removed as the interrupt unwinds) and, if they hang, killed."""
        for worker in self.workers:
            if not worker.process.is_alive():
                continue
            try:
                if graceful:
                    worker.conn.send(None)
                else:
                    os.kill(worker.process.pid, signal.SIGINT)
            except OSError:
                pass  # it exited meanwhile
        for worker in self.workers:
            worker.process.join(timeout=30)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        self.workers = []
