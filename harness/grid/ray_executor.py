"""Grid runs as Ray tasks: `python -m harness run --grid --executor ray [--address ADDR] [--gpus-per-run F]`.

Each cell is one Ray task asking for `gpus_per_run` GPUs (fractional: several small runs share a
GPU) and one CPU; Ray spreads them over the cluster's nodes. A worker runs the cell with
`harness.run.recipe.run_or_record_failure` into a temporary store of its own and returns the record (and,
for a run other strategies start from, its checkpoint bytes) to the driver, which writes them into
the results store: no shared file system is needed for results. The data (`--data-dir`) must exist
at the same path on every node, or come from the Hub.

Order is the scheduler's (`harness.grid.scheduler`), as for the local pool: a run whose strategy
starts from another run's checkpoint (`init_from`) is submitted only once that run's record is in
the store; the parent's checkpoint is put into Ray's object store once and shipped to every worker
that needs it. Included code (`--include`) is imported in the task before the run. Resuming
works as with the local executor: the driver writes each record atomically as it arrives, so killing
the driver loses only the runs in flight, and the same command reruns only what is missing.

Ray is an optional extra (`pip install '.[ray]'`); it is imported only here.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.config import ConfigError, RunConfig
from harness.grid.scheduler import Outcome
from harness.run import recipe as runner
from harness.run.data import DataSource
from harness.store import RunRecord, Store, StoreError
from tasks.formats import DataFormatError

# Environment passed to the workers (a remote node does not inherit the driver's).
FORWARDED_ENV = ("HARNESS_CACHE", "HARNESS_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME",
                 "TRANSFORMERS_OFFLINE")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, an optional extra: pip install 'reward-harness[ray]' "
                          "(or `pip install 'ray>=2.9'`), or use the default --executor local") from None
    return ray


def execute(cfg: RunConfig, source: DataSource, parent_checkpoint: bytes | None,
            initializer: Callable[[], None] | None, keep_checkpoints: bool = False,
            device: str | None = None) -> tuple[RunRecord | Exception, bytes | None]:
    """One cell, in a Ray worker: the record, and the checkpoint bytes if the run saved one; or the
    error (bad input, an unwritable store) that stops the grid, returned rather than raised so the
    driver gets it as it is (Ray would wrap it)."""
    if initializer is not None:
        initializer()
    with tempfile.TemporaryDirectory(prefix="harness-ray-") as tmp:
        store = Store(tmp, keep_checkpoints=keep_checkpoints)
        parent = runner.parent_config(cfg)
        if parent is not None and parent_checkpoint is not None:
            path = store.checkpoint_path(parent.run_hash())
            path.parent.mkdir(parents=True)
            path.write_bytes(parent_checkpoint)
        try:
            record = runner.run_or_record_failure(cfg, store, source, progress=False, device=device)
        except (DataFormatError, StoreError) as err:
            return err, None
        path = store.checkpoint_path(cfg.run_hash())
        return record, path.read_bytes() if path.exists() else None


@dataclass
class RayBackend:
    """The Ray backend of `harness.grid.scheduler`: `start` submits a run as a Ray task (with its
    parent's checkpoint), `wait` returns the next finished one after writing its checkpoint and
    record into the store.

    Connects to `address` ("auto", "ray://host:10001", ...) or, without one, to the Ray instance this
    process already started, else starts a local one (shut down on exit). `gpus_per_run`: GPUs each
    run asks for (default: 1 where the cluster has GPUs, else none). `initializer` (picklable) runs in
    the worker before each run, e.g. to import included code; it must tolerate running twice in a worker.
    """

    store: Store
    source: DataSource
    address: str | None = None
    gpus_per_run: float | None = None
    initializer: Callable[[], None] | None = None
    device: str | None = None  # where runs train in the workers; None: CUDA where there is one
    capacity: float = math.inf  # every run whose parent is done is submitted; Ray queues them
    in_flight: dict[Any, tuple[int, RunConfig]] = field(default_factory=dict)  # Ray reference -> run
    shipped: dict[str, Any] = field(default_factory=dict)  # parent run hash -> its checkpoint in Ray
    _ray: Any = None
    _task: Any = None
    _started_here: bool = False

    def __enter__(self) -> "RayBackend":
        if self.gpus_per_run is not None and not 0 <= self.gpus_per_run:
            raise ConfigError(f"--gpus-per-run must be 0 or more, got {self.gpus_per_run}")
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": env} if env else None)
            self._started_here = True
        try:
            gpus = ray.cluster_resources().get("GPU", 0)
            if self.gpus_per_run is None:
                self.gpus_per_run = 1.0 if gpus > 0 else 0.0
            if self.gpus_per_run > 0 and gpus == 0:
                raise ConfigError(f"--gpus-per-run {self.gpus_per_run}: the Ray cluster has no GPUs")
        except BaseException:
            self.__exit__()
            raise
        self._task = ray.remote(execute).options(num_cpus=1, num_gpus=self.gpus_per_run, max_retries=1)
        logging.getLogger("harness").info("ray: %g GPU per run; cluster %s", self.gpus_per_run, ray.cluster_resources())
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            for ref in self.in_flight:  # Ctrl-C or an error: stop what still runs; it leaves no record
                self._ray.cancel(ref, force=True)
            self.in_flight.clear()
        finally:
            if self._started_here:
                self._ray.shutdown()
                self._started_here = False

    def start(self, token: int, cfg: RunConfig) -> None:
        ref = self._task.remote(cfg, self.source, self._parent_checkpoint(cfg), self.initializer,
                                self.store.keep_checkpoints, self.device)
        self.in_flight[ref] = (token, cfg)

    def wait(self) -> Outcome:
        (done,), _ = self._ray.wait(list(self.in_flight), num_returns=1)
        token, cfg = self.in_flight.pop(done)
        try:
            record, checkpoint = self._ray.get(done)
        except self._ray.exceptions.RayError as err:  # the worker died, or Ray could not run the task
            return Outcome(token, None, f"Ray task failed: {type(err).__name__}: {err}")
        if isinstance(record, Exception):
            return Outcome(token, None, fatal=record)
        if checkpoint is not None:  # before the record: a record's checkpoint is on disk when it is
            from safetensors.torch import load

            self.store.save_checkpoint(cfg.run_hash(), load(checkpoint))
        self.store.save(record)
        return Outcome(token, record)

    def _parent_checkpoint(self, cfg: RunConfig) -> Any:
        """The parent run's checkpoint from the store, put into Ray's object store once; None if none."""
        parent = runner.parent_config(cfg)
        if parent is None:
            return None
        key = parent.run_hash()
        if key not in self.shipped:
            path: Path = self.store.checkpoint_path(key)
            self.shipped[key] = self._ray.put(path.read_bytes()) if path.exists() else None
        return self.shipped[key]
