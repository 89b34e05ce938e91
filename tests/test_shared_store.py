"""Issue 13, item 7: a store shared by concurrent grids, and what a kill or a full disk leaves."""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.grid import scheduler
from harness.grid.plan import make_plan
from harness.store import RunRecord, Store, StoreError
from tests.helpers import write_grid

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sigkill_between_fsync_and_rename_leaves_no_record_and_the_next_run_cleans_up(tmp_path):
    """A process killed after fsyncing a record's temporary file, before renaming it: no record (the
    reader ignores it), and the next `harness run` on the store removes the orphan."""
    store = tmp_path / "s"
    code = textwrap.dedent(f"""
        import os, signal
        from harness.store import RunRecord, Store
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # dies between fsync and rename
        Store({str(store)!r}).save(RunRecord.failed({{"task": "sentiment", "reward": "ce", "seed": 1}}, "x"))
    """)
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL
    (orphan,) = list(store.rglob(".*.tmp"))
    assert orphan.stat().st_size > 0, "written and fsynced"
    assert list(Store(store).records()) == []
    assert Store(store).clean_orphans() == [orphan] and not orphan.exists()


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    store = Store(tmp_path / "s")
    (tmp_path / "s" / "records").mkdir(parents=True)
    mine = tmp_path / "s" / "records" / f".x.json.{os.uname().nodename}:{os.getpid()}.abc.tmp"
    mine.write_text("{}")
    assert store.clean_orphans() == [] and mine.exists()


def test_records_are_group_readable(tmp_path):
    """Before: 0600 (mkstemp's mode), unreadable by the group sharing the store. Now what the umask
    gives any new file."""
    umask = os.umask(0)
    os.umask(umask)
    path = Store(tmp_path).save(RunRecord.failed({"task": "t", "reward": "r", "seed": 1}, "x"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    if not umask & 0o040:
        assert path.stat().st_mode & 0o040, "group-readable"


def test_full_disk_is_one_line_naming_the_path(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    store = Store(tmp_path / "s")
    with pytest.raises(StoreError) as err:
        store.save(RunRecord.failed({"task": "t", "reward": "r", "seed": 1}, "x"))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "s" / "records" / "t" / "r") in message
    assert "no space left" in message and err.value.__cause__ is None and err.value.__suppress_context__
    assert not list((tmp_path / "s").rglob("*.json")) and not list((tmp_path / "s").rglob(".*.tmp"))


def test_full_disk_stops_a_grid_with_that_line(tmp_path, data_dir, monkeypatch, capsys):
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], epochs=1, max_train=8, max_eval=8)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--grid", "--grid-file", str(grid), "--data-dir", str(data_dir), "--store", str(tmp_path / "s"),
              "--quiet"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "no space left on the device" in message and "\n" not in message


class _Backend:
    """Completes what it is given; remembers what it ran."""

    capacity = 2

    def __init__(self, store):
        self.store, self.ran, self.running = store, [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def start(self, token, cfg):
        self.ran.append(cfg.run_hash())
        self.running.append((token, cfg))

    def wait(self):
        token, cfg = self.running.pop(0)
        record = RunRecord.completed(cfg, model="m", main_metric="f1", best_epoch=1, validation={},
                                     test={"f1": 1.0}, history=[], test_examples=[], timing={}, environment={})
        self.store.save(record)
        return scheduler.Outcome(token, record)


class _Source:
    def describe(self, task):
        return {"kind": "fake", "task": task.name}


def _plan(tmp_path, store):
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], seeds=(1, 2))
    from harness.config import load_grid

    return make_plan(load_grid(grid), _Source(), store)


def _claim_as(store: Store, run_hash: str, owner: str, age: float = 0.0) -> Path:
    path = store.root / "claims" / f"{run_hash}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"owner": owner}))
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_claims_of_a_dead_process_or_without_heartbeat_are_taken_over(tmp_path, monkeypatch):
    """A grid killed (its claims' owner gone) or silent for longer than the stale time: its cells
    are run by the next grid, by plain resume."""
    monkeypatch.setenv("HARNESS_CLAIM_STALE", "60")
    store = Store(tmp_path / "s")
    cells = _plan(tmp_path, store).cells
    _claim_as(store, cells[0].config.run_hash(), f"{os.uname().nodename}:{_dead_pid()}")
    _claim_as(store, cells[1].config.run_hash(), "another-host:1", age=120)
    backend = _Backend(store)
    tally = scheduler.schedule([(c.label, c.config) for c in cells], backend, store)
    assert tally.statuses == {"completed": 2} and len(backend.ran) == 2
    assert not (store.root / "claims").exists()


def test_a_live_claim_is_left_to_its_owner_and_its_record_counted(tmp_path, monkeypatch):
    """Another grid holds a cell: this one runs the others, then counts that cell from its record."""
    monkeypatch.setattr(scheduler, "POLL_SECONDS", 0.05)
    store = Store(tmp_path / "s")
    cells = _plan(tmp_path, store).cells
    held = _claim_as(store, cells[0].config.run_hash(), "another-host:1")
    backend, other = _Backend(store), _Backend(store)

    def other_grid_finishes(seconds):  # while this grid waits, the other stores its record and releases
        other.start(0, cells[0].config)
        other.wait()
        held.unlink(missing_ok=True)

    monkeypatch.setattr(scheduler.time, "sleep", other_grid_finishes)
    tally = scheduler.schedule([(c.label, c.config) for c in cells], backend, store)
    assert backend.ran == [cells[1].config.run_hash()], "only the unclaimed cell ran here"
    assert tally.statuses == {"completed": 2}


def test_two_grids_on_one_store_split_the_cells(tmp_path, data_dir):
    """Two `harness run --grid` processes started together on one store: every cell runs once."""
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], seeds=(1, 2, 3, 4), epochs=1, max_train=8, max_eval=8)
    store = tmp_path / "s"
    cmd = [sys.executable, "-m", "harness", "run", "--grid", "--grid-file", str(grid), "--data-dir", str(data_dir),
           "--store", str(store), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    trained = [line for err in errs for line in err.splitlines() if ": test accuracy" in line]
    assert len(trained) == 4, errs  # each cell trained by exactly one of the grids
    records = list(Store(store).records())
    assert len(records) == 4 and {r.status for r in records} == {"completed"}
    assert not (store / "claims").exists()
