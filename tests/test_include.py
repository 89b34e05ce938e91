"""`--include PATH` and the grid key `include:`: a user's folder registers a task and a strategy that
run in worker processes too, `list` shows them, and bad paths or modules fail with their name.

Commands that register anything run as subprocesses, so this process's registries stay as built in."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from harness import include
from harness.cli import main
from harness.store import Store
from rewards.base import REWARDS

ROOT = Path(__file__).resolve().parents[1]

TASK = '''
"""SST-2 again under another name: sentiment's reader, Hub mapping and metrics, the same local files."""
from functools import partial

from tasks import metrics
from tasks.base import Task, register_task
from tasks.formats import read_label_tsv
from tasks.sentiment import LABELS, _from_hub

register_task(Task(
    name="sst2_copy",
    kind="classification",
    description="SST-2 under another name (an included task)",
    local_files={"train": ("sst2/train.tsv",), "validation": ("sst2/dev.tsv",), "test": ("sst2/test.tsv",)},
    read_local=partial(read_label_tsv, num_labels=len(LABELS)),
    hub_id="stanfordnlp/sst2",
    hub_config=None,
    hub_splits={"train": "train", "validation": "validation", "test": "test"},
    from_hub=_from_hub,
    score=metrics.classification_scores,
    aggregate=metrics.classification_aggregate,
    sentence_score=metrics.classification_sentence,
    main_metric="accuracy",
    default_model="minilm",
    labels=LABELS,
    max_source_length=66,
))
'''

STRATEGY = '''
from __future__ import annotations

from rewards.base import LossOutput, RewardStrategy, cross_entropy, param, register_reward


@register_reward("scaled_ce")
class ScaledCE(RewardStrategy):
    """scale * CE (an included strategy)."""

    scale: float = param(0.5, "factor on the cross-entropy", min=0.0)

    def loss(self, logits, batch, ctx):
        ce = cross_entropy(logits, batch["labels"])
        return LossOutput(self.scale * ce, {"ce": ce.detach()})
'''


@pytest.fixture
def extension(tmp_path) -> Path:
    folder = tmp_path / "ext"
    folder.mkdir()
    (folder / "sst2_copy.py").write_text(TASK)
    (folder / "scaled_ce.py").write_text(STRATEGY)
    return folder


def _grid(path: Path, tasks: list[str], rewards: list[str], **extra) -> Path:
    """Tiny random models on the first rows of the real data (as tests.helpers.write_grid)."""
    train = {"model": "tiny-bert", "epochs": 1, "batch_size": 8, "eval_batch_size": 16, "lr": 1e-3,
             "max_train": 16, "max_eval": 8, "log_every": 2}
    path.write_text(yaml.safe_dump({"name": "included", "tasks": tasks, "rewards": rewards, "seeds": [1],
                                    "train": train, **extra}))
    return path


def _harness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)


def test_included_task_and_strategy_run_in_worker_processes(tmp_path, data_dir, extension):
    grid = _grid(tmp_path / "g.yaml", ["sentiment", "sst2_copy"], ["ce", "scaled_ce"])
    store = tmp_path / "s"
    done = _harness("run", "--grid", "--grid-file", str(grid), "--include", str(extension), "--jobs", "2",
                    "--store", str(store), "--data-dir", str(data_dir), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pool: 2 workers" in done.stderr
    records = {(r.task, r.reward): r for r in Store(store).records()}
    assert set(records) == {(t, r) for t in ("sentiment", "sst2_copy") for r in ("ce", "scaled_ce")}
    assert all(r.status == "completed" for r in records.values()), [r.error for r in records.values()]
    # The same reader, data and metric under another name: the same scores.
    assert records[("sst2_copy", "ce")].test == records[("sentiment", "ce")].test
    assert records[("sst2_copy", "scaled_ce")].reward_params == {}
    (session,) = Store(store).sessions()
    assert session["includes"] == [str(extension.resolve())]


def test_grid_key_include_is_relative_to_the_grid_file(tmp_path, data_dir, extension):
    (tmp_path / "grids").mkdir()
    grid = _grid(tmp_path / "grids" / "g.yaml", ["sst2_copy"], {"scaled_ce": {"scale": 2.0}},
                 include=["../ext/scaled_ce.py", "../ext"])  # a file and its folder: imported once
    store = tmp_path / "s"
    done = _harness("run", "--grid", "--grid-file", str(grid), "--store", str(store), "--data-dir", str(data_dir),
                    "--quiet", cwd=tmp_path / "grids")
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = Store(store).records()
    assert record.status == "completed" and record.reward_params == {"scale": 2.0}
    (session,) = Store(store).sessions()
    assert session["includes"] == [str(extension.resolve() / "scaled_ce.py"), str(extension.resolve())]


def test_list_shows_the_included_task_and_strategy(extension):
    done = _harness("list", "--include", str(extension), "--include", str(extension))
    assert done.returncode == 0, done.stderr
    tasks, strategies = done.stdout.split("\n\n")[:2]
    assert "sst2_copy" in tasks and "an included task" in tasks
    assert "scaled_ce" in strategies and "scale=0.5" in strategies


def test_package_folder_is_imported_as_a_package(tmp_path):
    package = tmp_path / "myext_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from . import strategies\n")
    (package / "strategies.py").write_text(STRATEGY.replace('"scaled_ce"', '"test_include_pkg_ce"'))
    try:
        first = include.load([package])
        again = include.load([package, package / "strategies.py"])  # already imported: nothing registers twice
        assert again == [*first, str((package / "strategies.py").resolve())]
        assert REWARDS["test_include_pkg_ce"].__module__ == "myext_pkg.strategies"
    finally:
        REWARDS.pop("test_include_pkg_ce", None)


@pytest.mark.parametrize("command", ["list", "run", "report", "leaderboard"])
def test_bad_include_path_is_a_clean_error(tmp_path, command):
    missing = tmp_path / "nowhere" / "ext.py"
    argv = {"list": ["list"], "report": ["report", "--out", str(tmp_path / "out")], "leaderboard": ["leaderboard"],
            "run": ["run", "--grid", "--preset", "smoke"]}[command]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--store", str(tmp_path / "s"), "--include", str(missing)] if command != "list"
             else [*argv, "--include", str(missing)])
    assert exit_info.value.code == f"error: --include: {missing}: no such file or folder"
    assert not (tmp_path / "s").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("entry, fragments", [
    ("include: missing.py", ["include", "missing.py", "no such file or folder"]),
    ("include: [broken.py]", ["include", "broken.py", "line 2", "ZeroDivisionError"]),
    ("include: {a: 1}", ["'include' must be a path or a list of paths"]),
    ("include: [notes.txt]", ["notes.txt", "not a Python file"]),
    ("include: [empty]", ["empty", "holds no .py file"]),
    ("includes: [broken.py]", ["unknown key 'includes'", "did you mean 'include'"]),
])
def test_bad_grid_include_names_the_file_and_key(tmp_path, entry, fragments):
    (tmp_path / "broken.py").write_text("x = 1\ny = 1 / 0\n")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "empty").mkdir()
    grid = tmp_path / "g.yaml"
    grid.write_text(textwrap.dedent(f"""\
        {entry}
        tasks: [sentiment]
        rewards: [ce]
        """))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--grid", "--grid-file", str(grid), "--store", str(tmp_path / "s")])
    message = exit_info.value.code
    assert message.startswith(f"error: {grid}: "), message
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "s").exists()

