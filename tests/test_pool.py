"""Grid runs in a pool of worker processes: the same records as one after another, parents first,
and nothing left running or half-written when the parent is killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.grid.scheduler import run_grid
from harness.run.recipe import parent_config
from harness.store import Store
from rewards.base import REWARDS, register_reward
from rewards.ce import CrossEntropy
from tests.helpers import configs, write_grid

ROOT = Path(__file__).resolve().parents[1]
CHILD = "test_pool_from_ce"


class FromCE(CrossEntropy):
    """Cross-entropy started from the ce run of the same task and seed."""

    init_from = "ce"


def register_child() -> None:
    """Registers the test-only strategy; the pool's initializer, so that workers know it too."""
    if CHILD not in REWARDS:
        register_reward(CHILD)(FromCE)


@pytest.fixture
def child_strategy():
    register_child()
    yield CHILD
    REWARDS.pop(CHILD, None)


def test_pool_gives_the_sequential_records_and_starts_children_after_their_parent(tmp_path, data_dir, capsys,
                                                                                 child_strategy):
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", child_strategy], seeds=(1, 2), epochs=1,
                      max_train=16, max_eval=8)
    cfgs, source = configs(grid, data_dir)
    labelled = [(f"{c.task} {c.reward}", c) for c in cfgs]
    run_grid(labelled, Store(tmp_path / "seq"), source, jobs=1, progress=False)
    # Children first: without the dependency rule the two workers would start them before the ce runs.
    children_first = labelled[::-1]
    capsys.readouterr()
    run_grid(children_first, Store(tmp_path / "pool"), source, jobs=2, initializer=register_child)
    lines = capsys.readouterr().err.splitlines()
    assert len([line for line in lines if ": test " in line]) == 4, lines

    for cfg in cfgs:
        stores = [Store(tmp_path / name) for name in ("seq", "pool")]
        paths = [store.record_path(cfg.task, cfg.reward, cfg.run_hash()) for store in stores]
        alone, pooled = (store.record(cfg.task, cfg.reward, cfg.run_hash()) for store in stores)
        assert pooled.status == alone.status == "completed"
        assert pooled.test == alone.test
        assert [e["prediction"] for e in pooled.test_examples] == [e["prediction"] for e in alone.test_examples]
        assert pooled.history[0]["train"] == alone.history[0]["train"]
        parent = parent_config(cfg)
        assert pooled.init_from == alone.init_from == (parent.run_hash() if parent else None)
        if parent:  # it started after the parent's record was written
            parent_written = Store(tmp_path / "pool").record_path(cfg.task, "ce", parent.run_hash()).stat().st_mtime
            assert paths[1].stat().st_mtime - pooled.timing["total_seconds"] >= parent_written


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; workers die with the parent on Linux")
def test_killed_pool_parent_takes_its_workers_and_leaves_only_complete_records(tmp_path, data_dir):
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], seeds=(1, 2, 3), epochs=2, max_train=64, max_eval=16)
    store = tmp_path / "s"
    cmd = [sys.executable, "-m", "harness", "run", "--grid", "--grid-file", str(grid), "--store", str(store),
           "--data-dir", str(data_dir), "--quiet", "--jobs", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((store / "records").rglob("*.json")):
        time.sleep(0.2)
    workers = [pid for pid in _children(proc.pid) if Path(f"/proc/{pid}/cmdline").read_bytes().count(b"spawn")]
    assert len(workers) == 2, "two spawned workers while the grid runs"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "the workers died with the parent"
    finished = list((store / "records").rglob("*.json"))
    assert 1 <= len(finished) < 3
    for path in finished:
        assert json.loads(path.read_text())["status"] == "completed"
