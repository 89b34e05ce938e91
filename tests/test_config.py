"""Grid files and run identities: presets, checked keys and types, reward validation, run_hash,
and how a grid expands into runs."""
from __future__ import annotations

import dataclasses
import textwrap

import pytest

import rewards  # noqa: F401  (registers the built-in strategies)
from harness.config import ConfigError, RunConfig, TrainSettings, list_presets, load_grid, preset_path
from harness.grid.plan import expand
from rewards.base import REWARDS

TASKS = ("ner", "sentiment", "translation", "summarization")
DATA = {task: {"kind": "local", "md5": {"train": [f"{task}-md5"]}} for task in TASKS}


def grid_file(tmp_path, text: str, name: str = "grid.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def config_error(path) -> str:
    """load_grid's error message for `path`, which must name the file."""
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    message = str(err.value)
    assert str(path) in message, message
    return message


# --- presets -----------------------------------------------------------------------------------

def test_presets_listed():
    assert {"smoke", "default"} <= set(list_presets())


def test_presets_cross_every_task_with_every_registered_strategy():
    for name in ("smoke", "default"):
        grid = load_grid(preset_path(name))
        assert set(grid.tasks) == set(TASKS) and set(grid.rewards) == set(REWARDS), name
        runs = expand(grid, DATA)
        assert len(runs) == len(TASKS) * len(REWARDS) * len(grid.seeds)
        assert len({r.run_hash() for r in runs}) == len(runs)
        first_child = min(i for i, r in enumerate(runs) if REWARDS[r.reward].init_from)
        assert all(REWARDS[r.reward].init_from for r in runs[first_child:]), "checkpoint producers first"


def test_smoke_preset():
    grid = load_grid(preset_path("smoke"))
    assert grid.seeds == (1,)
    settings = grid.settings
    assert settings["sentiment"].lr == 1e-4 and settings["sentiment"].max_train == 64
    assert settings["translation"].lr == 3e-4 and settings["translation"].max_new_tokens == 16
    assert settings["translation"].epochs == settings["summarization"].epochs == 1  # shared, not overridden
    assert settings["summarization"].max_source_length == 128


def test_default_preset():
    grid = load_grid(preset_path("default"))
    assert grid.seeds == (1, 2, 3)
    settings = grid.settings
    assert (settings["ner"].epochs, settings["ner"].batch_size, settings["ner"].lr) == (3, 32, 5e-5)
    assert (settings["translation"].epochs, settings["translation"].batch_size, settings["translation"].lr) \
        == (5, 64, 1e-4)
    assert (settings["summarization"].epochs, settings["summarization"].lr) == (2, 1e-4)
    assert all(s.max_train is None for s in settings.values())  # full data


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown preset 'smok'.*smoke"):
        preset_path("smok")


# --- keys and types ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, key, right", [
    ("tasks: [sentiment]\nrewards: [ce]\nseed: [1]\n", "seed", "seeds"),
    ("taks: [sentiment]\nrewards: [ce]\n", "taks", "tasks"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {epoch: 2}\n", "epoch", "epochs"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {batchsize: 8}\n", "batchsize", "batch_size"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {pertask: {}}\n", "pertask", "per_task"),
    ("tasks: [sentiment, ner]\nrewards: [ce]\ntrain: {per_task: {sentimnet: {epochs: 1}}}\n",
     "sentimnet", "sentiment"),
    ("tasks: [translation]\nrewards: [ce]\ntrain: {per_task: {translation: {num_beam: 4}}}\n",
     "num_beam", "num_beams"),
])
def test_typo_names_file_key_and_suggestion(tmp_path, text, key, right):
    message = config_error(grid_file(tmp_path, text))
    assert f"unknown key {key!r}" in message
    assert f"did you mean {right!r}" in message


@pytest.mark.parametrize("text, fragment", [
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {epochs: three}\n", "epochs must be int, got 'three'"),
    ("tasks: [sentiment]\nrewards: [ce]\nseeds: [a]\n", "'seeds' must be a non-empty list of integers"),
    ("tasks: [sentiment]\nrewards: [ce]\nseeds: [true]\n", "'seeds'"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {lr: fast}\n", "lr must be float, got 'fast'"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {max_train: 1.5}\n", "max_train must be int"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {batch_size: true}\n", "batch_size must be int"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {epochs: null}\n", "epochs must not be empty"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {per_task: {sentiment: {epochs: two}}}\n",
     "per_task.sentiment: epochs must be int"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {per_task: [sentiment]}\n", "per_task must be a mapping"),
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: [epochs]\n", "'train' must be a mapping"),
    ("tasks: sentiment\nrewards: [ce]\n", "'tasks' must be a non-empty list"),
    ("tasks: []\nrewards: [ce]\n", "'tasks' must be a non-empty list"),
    ("tasks: [sentiment]\n", "'rewards' must be"),
    ("tasks: [sentiment]\nrewards: {focal: 2}\n", "rewards.focal: parameters must be a mapping"),
    ("- just\n- a list\n", "a grid is a YAML mapping"),
    ("tasks: [sentiment\n", "cannot read the grid"),
])
def test_wrong_type_names_key(tmp_path, text, fragment):
    assert fragment in config_error(grid_file(tmp_path, text))


def test_missing_grid_file(tmp_path):
    config_error(tmp_path / "nowhere.yaml")


def test_exponent_without_dot_is_a_float(tmp_path):
    """YAML 1.1 reads `5e-5` (no dot) as a string; the grid accepts it as the number."""
    path = grid_file(tmp_path, """\
        tasks: [sentiment, translation]
        rewards: {kl_reference: {beta: 1e-3}}
        train:
          lr: 5e-5
          weight_decay: 1e-2
          per_task: {translation: {lr: 3e-4}}
        """)
    grid = load_grid(path)
    assert grid.settings["sentiment"].lr == 5e-5 and isinstance(grid.settings["sentiment"].lr, float)
    assert grid.settings["sentiment"].weight_decay == 0.01
    assert grid.settings["translation"].lr == 3e-4
    assert grid.rewards["kl_reference"] == {"beta": 1e-3}
    # The same grid written with dots names the same runs.
    dotted = load_grid(grid_file(tmp_path, path.read_text().replace("e-", ".0e-"), "dotted.yaml"))
    assert [r.run_hash() for r in expand(grid, DATA)] == [r.run_hash() for r in expand(dotted, DATA)]


# --- tasks and rewards -------------------------------------------------------------------------

@pytest.mark.parametrize("text, fragments", [
    ("tasks: [sentiment, nre]\nrewards: [ce]\n", ["unknown task 'nre'", "ner"]),
    ("tasks: [sentiment]\nrewards: [ce, cee]\n", ["unknown reward strategy 'cee'", "focal"]),
    ("tasks: [sentiment]\nrewards: {focal: {gama: 1.0}}\n", ["rewards.focal", "gama", "gamma"]),
    ("tasks: [sentiment]\nrewards: {focal: {gamma: -1}}\n", ["rewards.focal", "gamma=-1", "minimum 0"]),
    ("tasks: [sentiment]\nrewards: {label_smoothing: {eps: 2}}\n", ["eps=2", "maximum 1"]),
    ("tasks: [sentiment]\nrewards: {label_smoothing: {eps: 1.0}}\n", ["eps=1.0", "below 1"]),
    ("tasks: [sentiment]\nrewards: {dice: {weight: -0.5}}\n", ["rewards.dice", "weight=-0.5"]),
    ("tasks: [sentiment]\nrewards: {wrong_penalty: {form: cubic}}\n", ["form='cubic'", "squared"]),
    ("tasks: [sentiment]\nrewards: {focal: {gamma: big}}\n", ["rewards.focal", "gamma must be a number"]),
    ("tasks: [sentiment]\nrewards: {focal: {gamma: true}}\n", ["gamma must be a number"]),
    ("tasks: [sentiment]\nrewards: {ce: {gamma: 2.0}}\n", ["rewards.ce", "gamma"]),
])
def test_bad_task_or_reward(tmp_path, text, fragments):
    message = config_error(grid_file(tmp_path, text))
    for fragment in fragments:
        assert fragment in message, message


def test_rewards_as_list_or_mapping(tmp_path):
    as_list = load_grid(grid_file(tmp_path, "tasks: [ner]\nrewards: [ce, focal]\n", "a.yaml"))
    as_map = load_grid(grid_file(tmp_path, "tasks: [ner]\nrewards: {ce: null, focal: {gamma: 1}}\n", "b.yaml"))
    assert as_list.rewards == {"ce": {}, "focal": {}}
    assert as_map.rewards == {"ce": {}, "focal": {"gamma": 1.0}}
    assert as_list.seeds == (1,)  # default seed


# --- run identity ------------------------------------------------------------------------------

# A value different from the default for every setting: a new setting must be added here.
OTHER_SETTINGS = {"model": "tiny-bert", "epochs": 4, "lr": 1e-4, "batch_size": 16, "eval_batch_size": 64,
                  "warmup_ratio": 0.2, "weight_decay": 0.0, "max_grad_norm": 0.5, "patience": 3,
                  "max_train": 100, "max_eval": 50, "num_beams": 4, "max_new_tokens": 32,
                  "length_penalty": 0.6, "no_repeat_ngram_size": 3, "log_every": 10,
                  "max_source_length": 64, "max_target_length": 32, "compile": True, "sample_length_factor": 1.5,
                  "policy_dropout": False, "precision": "bf16",
                  "max_validation": 20, "continued_epochs": 1, "continued_max_train": 10, "new_lr_scale": 10.0}


def base_config(**changes) -> RunConfig:
    cfg = RunConfig(task="ner", reward="focal", seed=1, settings=TrainSettings(),
                    reward_params={"gamma": 2.0},
                    data={"kind": "local", "md5": {"train": ["aaa"], "validation": ["bbb"], "test": ["ccc"]}})
    return dataclasses.replace(cfg, **changes)


def test_run_hash_stable_for_equal_configs():
    a = base_config(reward="dice", reward_params={"alpha": 1.0, "gamma": 1.0})
    b = base_config(reward="dice", reward_params={"gamma": 1.0, "alpha": 1.0})  # other key order
    assert a.run_hash() == b.run_hash()
    assert len(a.run_hash()) == 16 and int(a.run_hash(), 16) >= 0


def test_run_hash_covers_every_setting():
    assert set(OTHER_SETTINGS) == {f.name for f in dataclasses.fields(TrainSettings)}
    base = base_config().run_hash()
    hashes = {base}
    for key, value in OTHER_SETTINGS.items():
        assert getattr(TrainSettings(), key) != value
        changed = base_config(settings=dataclasses.replace(TrainSettings(), **{key: value})).run_hash()
        assert changed not in hashes, key
        hashes.add(changed)


@pytest.mark.parametrize("changes", [
    {"seed": 2},
    {"task": "sentiment"},
    {"reward": "ce", "reward_params": {}},
    {"reward_params": {"gamma": 1.0}},
    {"data": {"kind": "local", "md5": {"train": ["aaa"], "validation": ["bbb"], "test": ["ddd"]}}},
    {"data": {"kind": "hub", "id": "eriktks/conll2003", "config": None}},
])
def test_run_hash_changes(changes):
    assert base_config(**changes).run_hash() != base_config().run_hash()


def test_run_hash_changes_with_harness_version(monkeypatch):
    before = base_config().run_hash()
    monkeypatch.setattr("harness.config.__version__", "999.0")
    assert base_config().run_hash() != before


# --- expand ------------------------------------------------------------------------------------

GRID = """\
    tasks: [sentiment, ner]
    rewards: {focal: {gamma: 1.0}, ce: null, dice: {}}
    seeds: [1, 2]
    train: {epochs: 2, per_task: {ner: {epochs: 4}}}
    """


def test_expand_cells(tmp_path):
    grid = load_grid(grid_file(tmp_path, GRID))
    runs = expand(grid, DATA)
    assert [(r.reward, r.task, r.seed) for r in runs] == [
        (reward, task, seed) for reward in ("focal", "ce", "dice") for task in ("sentiment", "ner")
        for seed in (1, 2)]
    assert all(r.data == DATA[r.task] for r in runs)
    assert {r.settings.epochs for r in runs if r.task == "ner"} == {4}
    assert {r.settings.epochs for r in runs if r.task == "sentiment"} == {2}
    assert all(r.reward_params == ({"gamma": 1.0} if r.reward == "focal" else {}) for r in runs)
    assert len({r.run_hash() for r in runs}) == len(runs)


def test_expand_puts_init_from_strategies_last(tmp_path, monkeypatch):
    monkeypatch.setattr(REWARDS["focal"], "init_from", "ce")
    grid = load_grid(grid_file(tmp_path, GRID))
    rewards_in_order = [r.reward for r in expand(grid, DATA)]
    assert rewards_in_order == ["ce"] * 4 + ["dice"] * 4 + ["focal"] * 4
    assert [r.reward for r in expand(grid, DATA, rewards=["focal", "ce"])] == ["ce"] * 4 + ["focal"] * 4


def test_expand_filters_seeds_and_overrides(tmp_path):
    grid = load_grid(grid_file(tmp_path, GRID))
    runs = expand(grid, DATA, tasks=["ner"], rewards=["dice"], seeds=[7], overrides={"epochs": 1, "lr": "2e-5"})
    assert [(r.task, r.reward, r.seed) for r in runs] == [("ner", "dice", 7)]
    assert runs[0].settings.epochs == 1 and runs[0].settings.lr == 2e-5


@pytest.mark.parametrize("kwargs, fragment", [
    ({"tasks": ["translation"]}, "task 'translation' is not in grid"),
    ({"tasks": ["ner", "nre"]}, "task 'nre' is not in grid"),
    ({"rewards": ["label_smoothing"]}, "reward 'label_smoothing' is not in grid"),
    ({"overrides": {"epoch": 1}}, "did you mean 'epochs'"),
    ({"overrides": {"epochs": "one"}}, "epochs must be int"),
])
def test_expand_bad_filters(tmp_path, kwargs, fragment):
    path = grid_file(tmp_path, GRID)
    with pytest.raises(ConfigError) as err:
        expand(load_grid(path), DATA, **kwargs)
    assert fragment in str(err.value)
    if "overrides" not in kwargs:
        assert str(path) in str(err.value)


def test_a_loaded_machine_is_warned_about():
    from harness.environment import load_warning

    assert load_warning(load=0.4, cores=2) is None
    assert "load average 1.9 on 2 cores" in load_warning(load=1.9, cores=2)


def test_the_quick_preset_runs_are_the_cpu_presets_own():
    """`quick` (scripts/run.sh on a CPU) takes the cpu preset's sentiment budget: same run hashes, so
    a store holding either serves the other."""
    from harness.grid.plan import named_runs

    data = {"sentiment": {"kind": "local", "md5": {"test": ["x"]}}}
    quick, cpu = load_grid(preset_path("quick")), load_grid(preset_path("cpu"))
    assert quick.settings["sentiment"] == cpu.settings["sentiment"]
    hashes = {(name, cfg.seed): cfg.run_hash() for name, cfg in named_runs(cpu, data, ["sentiment"], None, None, None)}
    quick_runs = named_runs(quick, data, None, None, None, None)
    assert len(quick_runs) == 21 and all(hashes[(name, cfg.seed)] == cfg.run_hash() for name, cfg in quick_runs)
