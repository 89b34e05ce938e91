"""Configuration from the command line: `--set` dotted overrides, reward sweeps and specs, the
resolved configuration, `--dry-run` with estimates, `--device`, and `report --filter`."""
from __future__ import annotations

import re
import textwrap

import pytest
import torch

import rewards  # noqa: F401  (registers the built-in strategies)
from harness.cli import main
from harness.config import ConfigError, load_grid, preset_path
from harness.grid.plan import make_plan
from harness.overrides import cell_name, parse_reward_spec, split_reward_options
from harness.report.filters import parse_filters
from harness.run.data import DataSource
from harness.store import RunRecord, Store


class FakeSource:
    def describe(self, task):
        return {"kind": "fake", "task": task.name}


def _grid(tmp_path, strategies="{ce: {}, focal: {gamma: [0.5, 1, 2]}}"):
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: sweep
        tasks: [sentiment, translation]
        rewards: {strategies}
        seeds: [1]
        train: {{epochs: 1, per_task: {{translation: {{batch_size: 8}}}}}}
        """))
    return path


def test_set_overrides_every_level():
    grid = load_grid(preset_path("smoke"), ["train.patience=3", "rewards.focal.gamma=1.0",
                                            "train.per_task.translation.batch_size=16", "train.lr=1e-3", "seeds=[1, 2]"])
    assert all(s.patience == 3 for s in grid.settings.values())
    assert grid.settings["translation"].batch_size == 16 and grid.settings["ner"].batch_size == 16
    assert grid.settings["ner"].lr == 1e-3 and grid.settings["translation"].lr == 3e-4  # per_task still wins
    assert grid.rewards["focal"] == {"gamma": 1.0} and grid.seeds == (1, 2)


@pytest.mark.parametrize("item, fragments", [
    ("train.patiense=3", ["train.patiense", "train.patience", "train.per_task.TASK.SETTING"]),
    ("rewards.focal.gama=1", ["'gama'", "gamma"]),
    ("rewards.focl.gamma=1", ["'focl'", "focal", "ce"]),
    ("train.per_task.nre.lr=1", ["'nre'", "ner"]),
    ("optimizer=adam", ["'optimizer'", "rewards.STRATEGY.PARAM"]),
    ("train.patience", ["expected key.path=value"]),
    ("train.patience=three", ["patience must be int", "three"]),
])
def test_set_refuses_unknown_keys_with_the_valid_ones(item, fragments):
    with pytest.raises(ConfigError) as err:
        load_grid(preset_path("smoke"), [item])
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_sweep_expands_into_named_cells_with_their_own_hashes(tmp_path):
    grid = load_grid(_grid(tmp_path))
    assert list(grid.rewards) == ["ce", "focal[gamma=0.5]", "focal[gamma=1]", "focal[gamma=2]"]
    plan = make_plan(grid, FakeSource(), Store(tmp_path / "s"))
    assert len(plan.cells) == 8 and len({c.config.run_hash() for c in plan.cells}) == 8
    assert {c.config.reward for c in plan.cells} == {"ce", "focal"}
    assert "sentiment focal[gamma=0.5] seed 1" in plan.cells[2].label
    only = make_plan(grid, FakeSource(), Store(tmp_path / "s"), tasks=["sentiment"], rewards=["focal"])
    assert [c.config.reward_params for c in only.cells] == [{"gamma": 0.5}, {"gamma": 1.0}, {"gamma": 2.0}]
    one = make_plan(grid, FakeSource(), Store(tmp_path / "s"), tasks=["sentiment"], rewards=["focal[gamma=1]"])
    assert [c.config.reward_params for c in one.cells] == [{"gamma": 1.0}]
    with pytest.raises(ConfigError, match="needs at least one value"):
        load_grid(_grid(tmp_path, "{focal: {gamma: []}}"))
    with pytest.raises(ConfigError, match="minimum 0"):
        load_grid(_grid(tmp_path, "{focal: {gamma: [1, -1]}}"))


def test_reward_specs_on_the_command_line(tmp_path):
    assert split_reward_options(["ce,focal:gamma=1,x=2", "dice"]) == ["ce", "focal:gamma=1,x=2", "dice"]
    assert split_reward_options(["focal:gamma=[0.5,1]"]) == ["focal:gamma=[0.5,1]"]
    assert parse_reward_spec("focal:gamma=1") == ("focal", {"gamma": 1})
    assert cell_name("focal", {"gamma": 1.0, "alpha": 0.25}) == "focal[alpha=0.25,gamma=1]"
    grid = load_grid(_grid(tmp_path, "[ce]"))
    single = make_plan(grid, FakeSource(), Store(tmp_path / "s"), tasks=["sentiment"], rewards=["focal:gamma=1"],
                       single=True)
    (cell,) = single.cells
    assert (cell.config.reward, cell.config.reward_params) == ("focal", {"gamma": 1.0})
    swept = make_plan(grid, FakeSource(), Store(tmp_path / "s"), tasks=["sentiment"], rewards=["ce", "focal:gamma=[0,2]"])
    assert [c.strategy for c in swept.cells] == ["ce", "focal[gamma=0]", "focal[gamma=2]"]
    with pytest.raises(ConfigError, match="gama"):
        make_plan(grid, FakeSource(), Store(tmp_path / "s"), rewards=["focal:gama=1"])


def _completed(cfg, seconds):
    return RunRecord.completed(cfg, model="m", main_metric="accuracy", best_epoch=1, validation={},
                               test={"accuracy": 1.0}, history=[], test_examples=[],
                               timing={"total_seconds": seconds}, environment={})


def test_dry_run_prints_the_resolved_config_and_estimates(tmp_path, data_dir, capsys):
    path = _grid(tmp_path, "{ce: {}, focal: {gamma: [1, 2]}, rlhf: {}}")
    store = Store(tmp_path / "s")
    grid = load_grid(path)
    plan = make_plan(grid, DataSource(data_dir=data_dir), store)
    ce_sentiment = next(c.config for c in plan.cells if c.config.reward == "ce" and c.config.task == "sentiment")
    store.save(_completed(ce_sentiment, 30.0))
    store.save_checkpoint(ce_sentiment.run_hash(), {"weight": torch.zeros(1)})  # what sentiment's rlhf starts from
    focal1 = next(c.config for c in plan.cells if c.config.reward_params == {"gamma": 1.0} and c.config.task == "sentiment")
    store.save(_completed(focal1, 10.0))
    main(["run", "--grid", "--grid-file", str(path), "--store", str(store.root), "--data-dir", str(data_dir),
          "--dry-run", "--set", "name=renamed"])
    out = capsys.readouterr().out
    assert "name: renamed" in out and "epochs: 1" in out and "focal[gamma=2]: {gamma: 2.0}" in out
    lines = {" ".join(m.groups()): line for line in out.splitlines() if (m := re.search(r"\] (\S+) (\S+) seed", line))}
    assert lines["sentiment ce"].startswith("  done") and lines["sentiment focal[gamma=1]"].startswith("  done")
    assert "guess 20 s (guess: mean of sentiment's other strategies)" in lines["sentiment focal[gamma=2]"]
    assert "guess 1 min 00 s (guess: no stored run of this task)" in lines["translation ce"]
    assert lines["translation rlhf"].startswith("  waiting") and lines["sentiment rlhf"].startswith("  to run")
    assert "2 done, 6 to run" in out
    main(["run", "--grid", "--grid-file", str(path), "--store", str(store.root), "--data-dir", str(data_dir),
          "--dry-run", "--force", "--task", "sentiment", "--reward", "focal"])
    out = capsys.readouterr().out
    assert "~10 s (mean of 1 stored run)" in out and "0 done, 2 to run: about 30 s" in out
    assert len(list(store.records())) == 2  # nothing ran


def test_bad_device_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--grid", "--device", "gpu"])
    assert "expected cpu, cuda or cuda:N" in capsys.readouterr().err


def test_report_filters(tmp_path):
    grid = load_grid(_grid(tmp_path))
    store = Store(tmp_path / "s")
    plan = make_plan(grid, FakeSource(), store)
    for cell in plan.cells:
        store.save(_completed(cell.config, 1.0))
    store.save_session({"started": "2026-11-20T10:00:00+00:00", "grid": "sweep",
                        "hashes": [c.config.run_hash() for c in plan.cells[:2]]})

    def chosen(*items):
        return sorted((r.task, cell_name(r.reward, r.reward_params)) for r in parse_filters(items).select(store))

    assert chosen("task=sentiment", "strategy=ce,focal[gamma=2]") == [("sentiment", "ce"),
                                                                       ("sentiment", "focal[gamma=2]")]
    assert len(chosen("strategy=focal")) == 6
    assert chosen("grid=sweep") == [("sentiment", "ce"), ("translation", "ce")]
    assert chosen("since=2999-01-01") == [] and len(chosen("since=2026-01-01")) == 8
    with pytest.raises(ConfigError, match="task, strategy, grid, since"):
        parse_filters(["model=x"])
