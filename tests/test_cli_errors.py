"""Command-line errors: each bad invocation exits non-zero with a message naming the problem and
writes nothing into the store; `list` shows what can be run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import harness.run.recipe
import rewards  # noqa: F401  (registers the built-in strategies)
from harness.cli import main
from harness.config import list_presets, load_grid, preset_path
from harness.store import RunRecord, Store
from rewards.base import REWARDS

TASKS = ("ner", "sentiment", "translation", "summarization")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An isolated store path; no test may train a model or fall back to the default store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "env-store"))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)

    def no_training(*args, **kwargs):
        raise AssertionError("the command should have failed before training")

    monkeypatch.setattr(harness.run.recipe, "run_or_record_failure", no_training)
    path = tmp_path / "store"
    yield path
    for untouched in (path, tmp_path / "env-store", tmp_path / "runs", tmp_path / "cache"):
        assert not untouched.exists() or not any(untouched.rglob("*")), f"{untouched} was written to"


def fails(argv: list[str], capsys) -> str:
    """Runs the CLI, which must exit with an error; returns its message."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    code = exit_info.value.code
    assert code not in (0, None)
    if isinstance(code, str):  # sys.exit(message): Python prints it to stderr and exits with status 1
        assert code.startswith("error: ") and "Traceback" not in code
        return code
    return capsys.readouterr().err  # argparse prints its usage error and exits with status 2


@pytest.mark.parametrize("args, fragments", [
    (["--grid", "--preset", "nope"], ["unknown preset 'nope'", "smoke", "default"]),
    (["--preset", "nope", "--task", "sentiment", "--reward", "ce"], ["unknown preset 'nope'"]),
    (["--preset", "smoke", "--task", "nre", "--reward", "ce"], ["task 'nre'", "ner"]),
    (["--grid", "--preset", "smoke", "--task", "sentiment,nre"], ["task 'nre'"]),
    (["--preset", "smoke", "--task", "sentiment", "--reward", "cee"], ["unknown reward strategy 'cee'", "focal"]),
    (["--grid", "--preset", "smoke", "--reward", "cee"], ["reward 'cee'"]),
    (["--preset", "smoke", "--reward", "ce"], ["needs --task and --reward"]),
    (["--preset", "smoke", "--task", "sentiment"], ["needs --task and --reward"]),
    (["--preset", "smoke", "--task", "sentiment", "--reward", "ce", "--epochs", "three"], ["--epochs", "three"]),
])
def test_bad_run_arguments(store, capsys, args, fragments):
    message = fails(["run", *args, "--store", str(store)], capsys)
    for fragment in fragments:
        assert fragment in message, message


def test_unknown_command(store, capsys):
    assert "invalid choice: 'train'" in fails(["train"], capsys)


@pytest.mark.parametrize("text, fragments", [
    ("tasks: [sentiment]\nrewards: [ce]\ntrain: {epoch: 2}\n", ["unknown key 'epoch'", "did you mean 'epochs'"]),
    ("tasks: [sentiment]\nrewards: [ce]\nseed: [1]\n", ["unknown key 'seed'", "did you mean 'seeds'"]),
    ("tasks: [sentiment]\nrewards: {focal: {gamma: -1}}\n", ["gamma=-1"]),
    ("tasks: [sentiment]\nrewards: {wrong_penalty: {lam: -0.5}}\n", ["rewards.wrong_penalty", "lam=-0.5", "minimum 0"]),
    ("tasks: [sentiment]\nrewards: {mrt: {num_samples: 0}}\n", ["rewards.mrt", "num_samples=0", "minimum 2"]),
])
def test_grid_file_with_error(store, capsys, tmp_path, text, fragments):
    grid = tmp_path / "my-grid.yaml"
    grid.write_text(text)
    for mode in (["--grid"], ["--task", "sentiment", "--reward", "ce"]):
        message = fails(["run", *mode, "--grid-file", str(grid), "--store", str(store)], capsys)
        assert str(grid) in message
        for fragment in fragments:
            assert fragment in message, message


def test_missing_grid_file(store, capsys, tmp_path):
    message = fails(["run", "--grid", "--grid-file", str(tmp_path / "absent.yaml"), "--store", str(store)], capsys)
    assert "absent.yaml" in message


@pytest.mark.parametrize("via", ["--data-dir", "HARNESS_DATA_DIR"])
@pytest.mark.parametrize("mode", [["--grid"], ["--reward", "ce"]])
def test_data_dir_missing_a_split(store, capsys, tmp_path, data_dir, monkeypatch, via, mode):
    """Only train and dev of SST-2: the run names the missing test file before training anything."""
    partial = tmp_path / "data"
    (partial / "sst2").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(data_dir / "sst2" / name, partial / "sst2" / name)
    argv = ["run", "--preset", "smoke", "--task", "sentiment", *mode, "--store", str(store)]
    if via == "--data-dir":
        argv += ["--data-dir", str(partial)]
    else:
        monkeypatch.setenv("HARNESS_DATA_DIR", str(partial))
    message = fails(argv, capsys)
    assert str(partial / "sst2" / "test.tsv") in message
    assert "does not exist" in message and "Fix:" in message


def test_valid_run_reaches_the_runner(store, capsys, data_dir, monkeypatch):
    """The same kind of command with valid arguments gets past every check (the runner is faked here):
    a strategy outside the grid runs with its default parameters, and a stored cell is skipped."""
    seen = []

    def fake_runner(cfg, store_, source, progress=True, device=None):
        seen.append(cfg)
        return RunRecord.refused(cfg, "fake runner")

    monkeypatch.setattr(harness.run.recipe, "run_or_record_failure", fake_runner)
    main(["run", "--preset", "smoke", "--task", "sentiment", "--reward", "focal", "--seed", "3",
          "--max-train", "8", "--data-dir", str(data_dir), "--store", str(store), "--quiet"])
    (cfg,) = seen
    assert (cfg.task, cfg.reward, cfg.seed, cfg.reward_params) == ("sentiment", "focal", 3, {})
    preset = load_grid(preset_path("smoke")).settings["sentiment"]
    assert cfg.settings.max_train == 8 and cfg.settings.lr == preset.lr  # override on top of the smoke preset
    assert cfg.data["kind"] == "local" and len(cfg.data["md5"]["test"]) == 1
    assert "refused: fake runner" in capsys.readouterr().err
    (session,) = Store(store).sessions()  # the invocation's summary is the one file written
    assert session["runs"] == 1 and session["statuses"] == {"refused": 1}, "as the (fake) runner returned"
    shutil.rmtree(store / "sessions")


def test_list_in_process(capsys):
    main(["list"])
    out = capsys.readouterr().out
    _check_list(out)


def _check_list(out: str) -> None:
    sections = out.split("\n\n")
    tasks = next(s for s in sections if s.startswith("tasks:"))
    strategies = next(s for s in sections if s.startswith("reward strategies:"))
    presets = next(s for s in sections if s.startswith("presets"))
    listed_tasks = {line.split()[0] for line in tasks.splitlines()[1:]}
    assert set(TASKS) <= listed_tasks  # other tests may have --include-d more tasks into this process
    listed = {line.split()[0] for line in strategies.splitlines()[1:] if line.split()[0] in REWARDS}
    assert listed == set(REWARDS) and len(REWARDS) >= 10
    assert "focal" in strategies and "gamma=2.0" in strategies
    listed_presets = {line.split()[0] for line in presets.splitlines()[1:]}
    assert listed_presets == set(list_presets()) >= {"smoke", "default"}


def test_list_command(tmp_path):
    """`python -m harness list` as a process: the four tasks, every strategy and the presets."""
    env = {**os.environ, "HARNESS_STORE": str(tmp_path / "env-store"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "harness", "list"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _check_list(done.stdout)
    assert not any(tmp_path.iterdir())  # listing writes nothing


@pytest.mark.parametrize("command", ["report", "leaderboard", "run"])
def test_store_written_by_another_version_is_refused(store, capsys, tmp_path, command):
    """A record with another schema_version is never misread: each command names the file and the
    fix, and writes nothing (no report files, no new records). (Without --strict, `report` and
    `leaderboard` skip it with a warning: tests/test_report_inputs.py.)"""
    import json

    from harness.store import SCHEMA_VERSION

    old = store / "records" / "sentiment" / "ce" / "0123456789abcdef.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"schema_version": SCHEMA_VERSION - 1, "hash": "0123456789abcdef",
                               "status": "completed", "config": {"task": "sentiment", "reward": "ce"}}))
    out = tmp_path / "results"
    argv = {"report": ["report", "--store", str(store), "--out", str(out), "--strict"],
            "leaderboard": ["leaderboard", "--store", str(store), "--strict"],
            "run": ["run", "--grid", "--grid-file", str(_old_grid(tmp_path)), "--store", str(store)]}[command]
    if command == "run":  # the stored record has the hash of no cell: point the cell at it
        import harness.config

        real = harness.config.RunConfig.run_hash
        try:
            harness.config.RunConfig.run_hash = lambda self: "0123456789abcdef"
            message = fails(argv, capsys)
        finally:
            harness.config.RunConfig.run_hash = real
    else:
        message = fails(argv, capsys)
    assert str(old) in message and f"schema version {SCHEMA_VERSION - 1}" in message
    assert "--store" in message  # the fix: the version that wrote it, or a new store
    assert not out.exists() or not any(out.rglob("*"))
    assert [p for p in store.rglob("*") if p.is_file()] == [old]
    shutil.rmtree(store)  # the fixture checks that nothing else was written


def _old_grid(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("tasks: [sentiment]\nrewards: [ce]\nseeds: [1]\n")
    return grid


def test_unknown_report_format(store, capsys):
    from harness.report.writers import formats

    message = fails(["report", "--store", str(store), "--format", "csv,xml"], capsys)
    assert "argument --format: report format 'xml' is unknown; choose from " in message
    assert all(name in message for name in formats()) and "Traceback" not in message
    message = fails(["leaderboard", "--store", str(store), "--format", "xml"], capsys)
    assert "argument --format: invalid choice: 'xml'" in message
    assert all(repr(name) in message for name in formats(printable=True))
    assert "'manifest'" not in message  # written, never printed


@pytest.mark.parametrize("argv", [["report"], ["leaderboard"], ["leaderboard", "--task", "ner"]])
def test_empty_store(store, capsys, tmp_path, argv):
    """An empty store is an error of the command line (`error: ...`, status 1), not a library exit."""
    message = fails([*argv, "--store", str(store), *(["--out", str(tmp_path / "out")] if argv == ["report"] else [])],
                    capsys)
    assert message.startswith(f"error: no run records in {store}")
    assert ("for ner" in message) == ("--task" in argv) and not (tmp_path / "out").exists()
