"""Provenance (issue 13, item 1): a strategy that starts from another run's checkpoint names that
run's hash in its own identity, and is never run, let alone stored, without it."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.config import parent_of
from harness.store import RunRecord, Store
from tests.helpers import configs, write_grid


def _argv(grid, data_dir, store, *rest):
    return ["run", "--grid-file", str(grid), "--data-dir", str(data_dir), "--store", str(store), "--quiet", *rest]


def test_child_hash_names_its_parent(tmp_path, data_dir):
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "reinforce"])
    (ce, child), _ = configs(grid, data_dir)
    assert ce.parent is None and "parent" not in ce.identity(), "runs from the pretrained model keep their hash"
    assert child.parent == ce.run_hash() == parent_of(child).run_hash()
    assert child.identity()["parent"] == ce.run_hash()


def test_child_alone_is_refused_before_anything_runs(tmp_path, data_dir):
    """Before: `--reward reinforce` alone stored a failed record and exited 0. Now: refused up front."""
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "reinforce"])
    store = tmp_path / "s"
    with pytest.raises(SystemExit) as exit_info:
        main(_argv(grid, data_dir, store, "--task", "sentiment", "--reward", "reinforce"))
    message = str(exit_info.value.code)
    assert "parent missing" in message and "run `--reward ce` first" in message
    assert not store.exists() or not list(store.rglob("*.json")), "nothing stored"


def test_failed_parent_is_named(tmp_path, data_dir):
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "reinforce"])
    (ce, _), _ = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    store.save(RunRecord.failed(ce, "boom"))
    with pytest.raises(SystemExit, match="its record is failed"):
        main(_argv(grid, data_dir, store.root, "--task", "sentiment", "--reward", "reinforce"))


def test_records_without_a_parent_in_their_identity_still_load_and_report(tmp_path):
    """Records written before the parent was part of the identity (the synthetic ones are such): read
    and reported as before."""
    from harness.report.writers import write_report
    from tests.synthetic import write_store

    store = write_store(tmp_path / "s")
    children = [r for r in store.records() if r.reward == "reinforce"]
    assert children and all("parent" not in r.config and r.init_from for r in children)
    write_report(store, tmp_path / "out", echo=False, n_resamples=20, formats=["md"])
    assert list((tmp_path / "out").glob("*.md"))


def test_a_parent_stored_without_its_checkpoint_is_rerun_first(tmp_path, data_dir):
    """A published store keeps records, not checkpoints: resuming it reruns a completed parent whose
    child still has to run (restoring the checkpoint), and leaves the other completed cells alone."""
    from harness.grid.plan import DONE, RESTORE, TO_RUN, make_plan
    from harness.config import load_grid
    from harness.run.data import DataSource

    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "focal", "reinforce"])
    (ce, focal, child), _ = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    for cfg in (ce, focal):
        store.save(RunRecord.completed(cfg, model="m", main_metric="accuracy", best_epoch=1, validation={},
                                       test={"accuracy": 1.0}, history=[], test_examples=[],
                                       timing={"total_seconds": 1.0}, environment={}))
    states = {c.config.reward: c.state for c in make_plan(load_grid(grid), DataSource(data_dir=data_dir), store).cells}
    assert states == {"ce": RESTORE, "focal": DONE, "reinforce": TO_RUN}
    main(_argv(grid, data_dir, store.root, "--grid"))
    assert store.checkpoint_path(ce.run_hash()).exists() and store.status("sentiment", "reinforce", child.run_hash())
    states = {c.config.reward: c.state for c in make_plan(load_grid(grid), DataSource(data_dir=data_dir), store).cells}
    assert set(states.values()) == {DONE}
