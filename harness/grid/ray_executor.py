"""Grid runs as Ray tasks: `python -m harness run --grid --executor ray [--address ADDR] [--gpus-per-run F]`.

Each cell is one Ray task asking for `gpus_per_run` GPUs (fractional: several small runs share a
GPU) and one CPU; Ray spreads them over the cluster's nodes. A worker runs the cell with
`harness.run.recipe.run_or_record_failure` into a temporary store of its own and returns the record (and,
for a run other strategies start from, its checkpoint bytes) to the driver, which writes them into
the results store: no shared file system is needed for results. The data (`--data-dir`) must exist
at the same path on every node, or come from the Hub.

Order, as in the local pool (`harness.grid.pool.ready`): a run whose strategy starts from another run's
checkpoint (`init_from`) is submitted only once that run's record is in the store; the parent's
checkpoint is put into Ray's object store once and shipped to every worker that needs it. Resuming
works as with the local executor: the driver writes each record atomically as it arrives, so killing
the driver loses only the runs in flight, and the same command reruns only what is missing.

Ray is an optional extra (`pip install '.[ray]'`); it is imported only here.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from harness.run import recipe as runner
from harness.config import ConfigError, RunConfig
from harness.run.data import DataSource
from harness.grid.pool import finished_line, ready
from harness.store import RunRecord, Store

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
            initializer: Callable[[], None] | None) -> tuple[RunRecord, bytes | None]:
    """One cell, in a Ray worker: the record, and the checkpoint bytes if the run saved one."""
    if initializer is not None:
        initializer()
    with tempfile.TemporaryDirectory(prefix="harness-ray-") as tmp:
        store = Store(tmp)
        parent = runner.parent_config(cfg)
        if parent is not None and parent_checkpoint is not None:
            path = store.checkpoint_path(parent.run_hash())
            path.parent.mkdir(parents=True)
            path.write_bytes(parent_checkpoint)
        record = runner.run_or_record_failure(cfg, store, source, progress=False)
        path = store.checkpoint_path(cfg.run_hash())
        return record, path.read_bytes() if path.exists() else None


def run_grid_ray(runs: list[tuple[str, RunConfig]], store: Store, source: DataSource, address: str | None = None,
                 gpus_per_run: float | None = None, initializer: Callable[[], None] | None = None) -> Counter[str]:
    """Runs every (label, config) as a Ray task; records and checkpoints are written here, on the driver.
    Returns how many runs ended in each status.

    Connects to `address` ("auto", "ray://host:10001", ...) or, without one, to the Ray instance this
    process already started, else starts a local one. `gpus_per_run`: GPUs each run asks for (default:
    1 where the cluster has GPUs, else none). `initializer` (picklable) runs in the worker before each
    run, e.g. to register strategies that are not built in; it must tolerate running twice in a worker.
    """
    if gpus_per_run is not None and not 0 <= gpus_per_run:
        raise ConfigError(f"--gpus-per-run must be 0 or more, got {gpus_per_run}")
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": env} if env else None)
        started_here = True
    try:
        if not runs:
            return Counter()
        if gpus_per_run is None:
            gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        if gpus_per_run > 0 and ray.cluster_resources().get("GPU", 0) == 0:
            raise ConfigError(f"--gpus-per-run {gpus_per_run}: the Ray cluster has no GPUs")
        task = ray.remote(execute).options(num_cpus=1, num_gpus=gpus_per_run, max_retries=1)
        print(f"ray: {len(runs)} runs, {gpus_per_run:g} GPU each; cluster {ray.cluster_resources()}",
              file=sys.stderr)
        return _drive(ray, task, runs, store, source, initializer)
    finally:
        if started_here:
            ray.shutdown()


def _drive(ray: Any, task: Any, runs: list[tuple[str, RunConfig]], store: Store, source: DataSource,
           initializer: Callable[[], None] | None) -> Counter[str]:
    pending = list(runs)
    statuses: Counter[str] = Counter()
    unfinished = {cfg.run_hash() for _, cfg in runs}
    in_flight: dict[Any, tuple[str, RunConfig, float]] = {}
    shipped: dict[str, Any] = {}  # parent run hash -> its checkpoint in Ray's object store
    try:
        while pending or in_flight:
            for item in [item for item in pending if ready(item[1], unfinished)]:
                pending.remove(item)
                label, cfg = item
                ref = task.remote(cfg, source, _parent_checkpoint(ray, cfg, store, shipped), initializer)
                in_flight[ref] = (label, cfg, time.time())
            if not in_flight:
                raise RuntimeError(f"no run can start: {[label for label, _ in pending]} wait on each other")
            (done,), _ = ray.wait(list(in_flight), num_returns=1)
            label, cfg, started = in_flight.pop(done)
            try:
                record, checkpoint = ray.get(done)
            except ray.exceptions.RayError as err:  # the worker died, or Ray could not run the task
                record, checkpoint = RunRecord.failed(cfg, f"Ray task failed: {type(err).__name__}: {err}"), None
            if checkpoint is not None:  # before the record: a record's checkpoint is on disk when it is
                from safetensors.torch import load

                store.save_checkpoint(cfg.run_hash(), load(checkpoint))
            store.save(record)
            statuses[record.status] += 1
            unfinished.discard(cfg.run_hash())
            print(finished_line(label, record, time.time() - started), file=sys.stderr)
    finally:
        for ref in in_flight:  # Ctrl-C or an error: stop what still runs; it leaves no record
            ray.cancel(ref, force=True)
    return statuses


def _parent_checkpoint(ray: Any, cfg: RunConfig, store: Store, shipped: dict[str, Any]) -> Any:
    """The parent run's checkpoint from the store, put into Ray's object store once; None if none."""
    parent = runner.parent_config(cfg)
    if parent is None:
        return None
    key = parent.run_hash()
    if key not in shipped:
        path: Path = store.checkpoint_path(key)
        shipped[key] = ray.put(path.read_bytes()) if path.exists() else None
    return shipped[key]
