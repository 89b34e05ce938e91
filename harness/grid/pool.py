"""The local pool: several grid runs at once in worker processes, a backend of
`harness.grid.scheduler` (which decides what runs when).

The default models are small, so one run leaves a GPU mostly waiting on kernel launches; N
processes, each with its own interpreter and CUDA context, each running whole runs through
`harness.run.recipe.run_or_record_failure`, keep it busy. Processes are started with `spawn` (CUDA
cannot be used in a forked child) and live for the whole grid, so the imports and the CUDA
context are paid once per worker, not once per run.

Safety: every record is written to a temporary file and renamed into place (`harness.store`), so a
stopped run leaves nothing that looks like a record and reruns when the grid is resumed. Workers
die with the parent: on Linux the kernel kills them when it dies, even by SIGKILL
(PR_SET_PDEATHSIG); on Ctrl-C or an error the parent interrupts them and waits. A worker that dies
on its own (a crash, the out-of-memory killer) is reported to the scheduler, which records the run
as failed without storing it (the next `harness run` reruns it); the grid goes on. Bad input or an
unwritable store in a worker comes back as the error itself and stops the grid, as it would
without workers.
"""
from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

import torch

from harness.config import RunConfig
from harness.grid.scheduler import Outcome
from harness.run import recipe as runner
from harness.run.data import DataSource
from harness.store import Store, StoreError
from tasks.formats import DataFormatError

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


def _die_with_parent(parent_pid: int) -> None:
    """Asks the kernel to kill this process when the parent dies (Linux), then checks it is alive."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _serve(conn: Connection, store: Store, source: DataSource, threads: int, parent_pid: int,
           initializer: Callable[[], None] | None, device: str | None = None) -> None:
    """A worker: runs the configurations it is sent, one at a time, until it is sent None. It sends
    back each run's record, or the error (bad input, an unwritable store) that stops the grid."""
    _die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    try:
        if initializer is not None:
            initializer()
        while (cfg := conn.recv()) is not None:
            try:
                conn.send(runner.run_or_record_failure(cfg, store, source, progress=False, device=device))
            except (DataFormatError, StoreError) as err:
                conn.send(err)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the memory of a large run back to the other workers
    except (KeyboardInterrupt, EOFError):
        pass  # stopped by the parent, or the parent is gone: the current run leaves no record


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    token: int | None = None  # the run it is busy with, as the scheduler numbered it


@dataclass
class Pool:
    """The local backend of `harness.grid.scheduler`: `jobs` worker processes, started as needed and
    kept for the whole grid; `start` sends a run to an idle one, `wait` returns the next finished."""

    store: Store
    source: DataSource
    jobs: int
    initializer: Callable[[], None] | None = None
    device: str | None = None  # where runs train ("cpu", "cuda:1"); None: CUDA where there is one
    workers: list[_Worker] = field(default_factory=list)

    @property
    def capacity(self) -> int:
        return self.jobs

    def __enter__(self) -> "Pool":
        logging.getLogger("harness").info("pool: %d workers, %d CPU threads each", self.jobs, self._threads())
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        """Normally: idle workers are told to exit. On Ctrl-C or an error: running ones are stopped."""
        try:
            self._stop(graceful=exc_type is None)
        finally:
            self._stop(graceful=False)

    def start(self, token: int, cfg: RunConfig) -> None:
        worker = self._idle_workers()[0]
        worker.token = token
        worker.conn.send(cfg)

    def wait(self) -> Outcome:
        """The next finished run; a worker that died mid-run (a crash, the out-of-memory killer) is
        replaced on the next `start`, and its run comes back without a record."""
        busy = [w for w in self.workers if w.token is not None]
        done = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])[0]
        worker = next(w for w in busy if done in (w.conn, w.process.sentinel))
        token, worker.token = worker.token, None
        try:
            value = worker.conn.recv()
        except EOFError:
            worker.process.join()
            self.workers.remove(worker)
            return Outcome(token, None, f"the worker process died (exit code {worker.process.exitcode})")
        if isinstance(value, BaseException):
            return Outcome(token, None, fatal=value)
        return Outcome(token, value)

    def _threads(self) -> int:
        """CPU threads per worker: the cores shared out, so N workers do not oversubscribe them."""
        return max(1, cpu_count() // self.jobs)

    def _idle_workers(self) -> list[_Worker]:
        self.workers = [w for w in self.workers if w.process.is_alive() or w.token is not None]
        while len(self.workers) < self.jobs:
            self.workers.append(self._start_worker())
        return [w for w in self.workers if w.token is None]

    def _start_worker(self) -> _Worker:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        process = ctx.Process(target=_serve, daemon=True,
                              args=(theirs, self.store, self.source, self._threads(), os.getpid(),
                                    self.initializer, self.device))
        process.start()
        theirs.close()
        return _Worker(process, ours)

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
