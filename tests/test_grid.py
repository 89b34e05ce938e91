"""The grid layer without training: a plan's cell states against the store, and the one scheduler's
dependency order, capacity, lost runs and status counts on a fake backend."""
from __future__ import annotations

import textwrap

import pytest

import rewards  # noqa: F401  (registers the built-in strategies)
from harness.config import ConfigError, RunConfig, load_grid
from harness.grid.plan import DONE, FORCED, RETRY, TO_RUN, make_plan
from harness.grid.scheduler import Outcome, schedule
from harness.store import RunRecord, Store
from rewards.base import REWARDS


class FakeSource:
    def describe(self, task):
        return {"kind": "fake", "task": task.name}


def _grid(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent("""\
        tasks: [sentiment, ner]
        rewards: [focal, ce]
        seeds: [1]
        """))
    return load_grid(path)


def _completed(cfg: RunConfig) -> RunRecord:
    return RunRecord.completed(cfg, model="m", main_metric="f1", best_epoch=1, validation={}, test={"f1": 1.0},
                               history=[], test_examples=[], timing={}, environment={})


def _store_record(store: Store, cfg: RunConfig, status: str) -> None:
    store.save(RunRecord.failed(cfg, "x") if status == "failed" else _completed(cfg))


def test_plan_states(tmp_path):
    store = Store(tmp_path / "s")
    plan = make_plan(_grid(tmp_path), FakeSource(), store)
    assert [c.state for c in plan.cells] == [TO_RUN] * 4 and plan.done == []
    assert [c.label.split()[0] for c in plan.cells] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    first, second = plan.cells[0].config, plan.cells[1].config
    _store_record(store, first, "completed")
    _store_record(store, second, "failed")

    def states(**flags):
        return [(c.state, c.stored) for c in make_plan(_grid(tmp_path), FakeSource(), store, **flags).cells[:3]]

    assert states() == [(DONE, "completed"), (DONE, "failed"), (TO_RUN, None)]
    assert states(retry_failed=True) == [(DONE, "completed"), (RETRY, "failed"), (TO_RUN, None)]
    assert states(force=True) == [(FORCED, "completed"), (FORCED, "failed"), (TO_RUN, None)]


def test_plan_filters_and_single_cells(tmp_path):
    grid = _grid(tmp_path)
    plan = make_plan(grid, FakeSource(), Store(tmp_path / "s"), tasks=["ner"], rewards=["ce"], seeds=[3])
    (cell,) = plan.cells
    assert (cell.config.task, cell.config.reward, cell.config.seed) == ("ner", "ce", 3)
    with pytest.raises(ConfigError, match="reward 'dice' is not in grid"):
        make_plan(grid, FakeSource(), Store(tmp_path / "s"), rewards=["dice"])
    single = make_plan(grid, FakeSource(), Store(tmp_path / "s"), tasks=["ner"], rewards=["dice"], single=True)
    assert [(c.config.reward, c.config.reward_params) for c in single.cells] == [("dice", {})]
    with pytest.raises(ConfigError, match="unknown reward strategy 'dcie'"):
        make_plan(grid, FakeSource(), Store(tmp_path / "s"), tasks=["ner"], rewards=["dcie"], single=True)


class FakeBackend:
    """Finishes runs in the order they were started; `die` names rewards whose worker dies."""

    def __init__(self, capacity, die=()):
        self.capacity, self.die = capacity, set(die)
        self.started, self.running, self.entered, self.exited = [], [], False, None

    def __enter__(self):
        self.entered = True
        return self

    def __exit__(self, exc_type, *exc):
        self.exited = exc_type

    def start(self, token, cfg):
        assert len(self.running) < self.capacity
        self.started.append((cfg.task, cfg.reward))
        self.running.append((token, cfg))

    def wait(self):
        token, cfg = self.running.pop(0)
        if cfg.reward in self.die:
            return Outcome(token, None, "the worker process died (exit code -9)")
        return Outcome(token, _completed(cfg))


def test_scheduler_starts_children_after_their_parent(tmp_path, monkeypatch, capsys):
    """A worker that dies leaves no record (plain resume reruns it; no --retry-failed needed)."""
    monkeypatch.setattr(REWARDS["focal"], "init_from", "ce")
    cells = make_plan(_grid(tmp_path), FakeSource(), Store(tmp_path / "s")).cells
    runs = [(c.label, c.config) for c in reversed(cells)]  # children first: the rule must reorder them
    backend = FakeBackend(capacity=2, die={"focal"})
    tally = schedule(runs, backend, Store(tmp_path / "s"))
    assert tally.statuses == {"failed": 2, "completed": 2}
    assert [label.split()[2] for label, _ in tally.failures] == ["focal", "focal"]
    order = backend.started
    for task in ("sentiment", "ner"):
        assert order.index((task, "ce")) < order.index((task, "focal"))
    assert backend.entered and backend.exited is None
    assert list(Store(tmp_path / "s").records()) == [], "dead workers' runs are not stored"
    assert not (tmp_path / "s" / "claims").exists(), "every claim released"
    err = capsys.readouterr().err
    assert err.count("failed: the worker process died (exit code -9); not stored: rerun the same command") == 2
    assert err.count("test f1 1.00") == 2


def test_children_of_a_parent_that_did_not_complete_are_not_started(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(REWARDS["focal"], "init_from", "ce")
    cells = make_plan(_grid(tmp_path), FakeSource(), Store(tmp_path / "s")).cells
    backend = FakeBackend(capacity=2, die={"ce"})
    tally = schedule([(c.label, c.config) for c in cells], backend, Store(tmp_path / "s"))
    assert tally.statuses == {"failed": 4} and {r for _, r in backend.started} == {"ce"}
    assert sum("did not complete; not started" in why for _, why in tally.failures) == 2


def test_scheduler_refuses_a_dependency_cycle(tmp_path, monkeypatch):
    monkeypatch.setattr(REWARDS["focal"], "init_from", "ce")
    monkeypatch.setattr(REWARDS["ce"], "init_from", "focal")
    with pytest.raises(ConfigError, match=r"each other's checkpoints \((ce -> focal -> ce|focal -> ce -> focal)\)"):
        make_plan(_grid(tmp_path), FakeSource(), Store(tmp_path / "s"))
