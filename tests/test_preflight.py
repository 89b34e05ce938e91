"""Issue 13, items 3 and 4: everything that can be checked before training is, whichever the executor
(bad data, out-of-range settings, unknown models and variants); a run that fails makes the
invocation exit non-zero with a summary; Ctrl-C says how far the grid got and exits 130."""
from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

import harness.run.data
import harness.run.recipe
from harness.cli import main
from harness.run.data import DataSource
from harness.store import Store
from rewards.ce import CrossEntropy
from tests.helpers import configs, write_grid


@pytest.fixture
def bad_sst2(tmp_path, data_dir):
    """A copy of SST-2 whose test file has an extra column on line 5."""
    folder = tmp_path / "data" / "sst2"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(data_dir / "sst2" / name, folder / name)
    lines = (data_dir / "sst2" / "test.tsv").read_text().splitlines()
    lines[4] += "\textra"
    (folder / "test.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / "data"


def _exit(argv: list[str]) -> tuple[object, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, str(exit_info.value.code)


def _run(grid, data, store, *rest: str) -> list[str]:
    return ["run", "--grid", "--grid-file", str(grid), "--data-dir", str(data), "--store", str(store), "--quiet",
            *rest]


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_bad_data_stops_every_executor_before_training(tmp_path, bad_sst2, jobs, monkeypatch):
    """Before, under --jobs: a traceback per worker, `failed` records "the worker process died", exit 0."""
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "focal"])
    monkeypatch.setattr(harness.run.recipe, "run_or_record_failure", lambda *a, **k: pytest.fail("trained"))
    code, message = _exit(_run(grid, bad_sst2, tmp_path / "s", *jobs))
    assert code != 0 and message.startswith("error: ") and "test.tsv, line 5" in message
    assert "expected 2 tab-separated columns" in message
    assert not list((tmp_path / "s").rglob("*.json")), "nothing stored"


def test_bad_data_met_in_a_pool_worker_stops_the_grid_with_its_message(tmp_path, bad_sst2, monkeypatch):
    """The check up front skipped (as if the file changed after it): the worker sends the error back."""
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "focal"], epochs=1, max_train=8,
                      max_eval=8)
    monkeypatch.setattr(harness.run.data, "check_data", lambda tasks, source: None)
    code, message = _exit(_run(grid, bad_sst2, tmp_path / "s", "--jobs", "2"))
    assert message.startswith("error: ") and "test.tsv, line 5: expected 2 tab-separated columns" in message
    assert not list((tmp_path / "s").rglob("*.json")), "nothing stored"


def test_bad_data_in_a_ray_task_comes_back_as_itself(tmp_path, bad_sst2):
    """Ray wrapped it as an UnserializableException; `execute` now returns it for the driver to raise."""
    from harness.grid.ray_executor import execute
    from tasks.formats import DataFormatError

    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], epochs=1, max_train=8, max_eval=8)
    (cfg,), _ = configs(grid, bad_sst2)
    error, checkpoint = execute(cfg, DataSource(data_dir=bad_sst2), None, None)
    assert isinstance(error, DataFormatError) and error.line == 5 and checkpoint is None


@pytest.mark.parametrize("option, value, fragments", [
    ("--epochs", "0", ["--epochs must be at least 1, got 0"]),
    ("--lr", "0", ["--lr must be greater than 0"]),
    ("--lr", "-1e-4", ["--lr must be greater than 0"]),
    ("--batch-size", "0", ["--batch-size must be at least 1"]),
    ("--max-eval", "0", ["--max-eval must be at least 1"]),
    ("--max-train", "-3", ["--max-train must be at least 1"]),
])
def test_out_of_range_options_are_refused_before_any_run(tmp_path, data_dir, option, value, fragments, monkeypatch):
    monkeypatch.setattr(harness.run.recipe, "run_or_record_failure", lambda *a, **k: pytest.fail("trained"))
    code, message = _exit(["run", "--preset", "smoke", "--task", "sentiment", "--reward", "ce", "--data-dir",
                           str(data_dir), "--store", str(tmp_path / "s"), f"{option}={value}"])
    assert message.startswith("error: command line: ") and all(f in message for f in fragments), message
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("setting, value, valid", [
    ("warmup_ratio", 1.0, "in [0, 1)"), ("patience", 0, "at least 1"), ("eval_batch_size", 0, "at least 1"),
    ("max_grad_norm", 0.0, "greater than 0"), ("log_every", 0, "at least 1"),
])
def test_out_of_range_grid_settings_name_the_file_and_key(tmp_path, setting, value, valid):
    from harness.config import ConfigError, load_grid

    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], **{setting: value})
    with pytest.raises(ConfigError, match=rf"g.yaml: train.*{setting} must be {valid.replace('[', '.').replace(')', '.')}"):
        load_grid(grid)


def test_unknown_model_offline_fails_at_once(tmp_path, data_dir, monkeypatch):
    """Before: about 50 s of Hub retries inside the first run, then a failed record."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(harness.run.recipe, "run_or_record_failure", lambda *a, **k: pytest.fail("trained"))
    code, message = _exit(["run", "--preset", "smoke", "--task", "sentiment", "--reward", "ce", "--data-dir",
                           str(data_dir), "--store", str(tmp_path / "s"), "--model", "nobody/no-such-model"])
    assert "model 'nobody/no-such-model'" in message and "not in the local cache" in message
    assert not list((tmp_path / "s").rglob("*.json"))


def test_local_model_folder_without_config_is_refused(tmp_path, data_dir):
    (tmp_path / "m").mkdir()
    code, message = _exit(["run", "--preset", "smoke", "--task", "sentiment", "--reward", "ce", "--data-dir",
                           str(data_dir), "--store", str(tmp_path / "s"), "--model", str(tmp_path / "m")])
    assert "is not a model folder (no config.json)" in message


class _Explodes(CrossEntropy):
    """Raises on the first step."""

    def loss(self, logits, batch, ctx):
        raise RuntimeError("boom on purpose\nsecond line")


class _CtrlC(CrossEntropy):
    """Ctrl-C on the first step."""

    def loss(self, logits, batch, ctx):
        raise KeyboardInterrupt


def test_a_failed_run_makes_the_invocation_fail_with_a_summary(tmp_path, data_dir, temporary_reward):
    """Before: exit status 0 whatever failed."""
    temporary_reward("test_explodes", _Explodes)
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "test_explodes"], epochs=1, max_train=8,
                      max_eval=8)
    code, message = _exit(_run(grid, data_dir, tmp_path / "s"))
    assert code != 0 and "1 run(s) failed" in message
    assert "sentiment test_explodes seed 1" in message and "RuntimeError: boom on purpose" in message
    assert "second line" not in message and "--retry-failed" in message
    statuses = sorted(r.status for r in Store(tmp_path / "s").records())
    assert statuses == ["completed", "failed"]


def test_ctrl_c_says_how_far_and_exits_130(tmp_path, data_dir, temporary_reward, capsys):
    temporary_reward("test_ctrl_c", _CtrlC)
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "test_ctrl_c"], epochs=1, max_train=8,
                      max_eval=8)
    code, _ = _exit(_run(grid, data_dir, tmp_path / "s"))
    err = capsys.readouterr().err
    assert code == 130 and "1/2 done; rerun the same command to resume" in err and "Traceback" not in err
    assert [r.reward for r in Store(tmp_path / "s").records()] == ["ce"]
    [session] = Store(tmp_path / "s").sessions()  # before: an interrupted sitting left no summary
    assert session["interrupted"] is True and session["statuses"] == {"completed": 1} and session["runs"] == 2
    assert session["wall_seconds"] > 0


class _Sigterm(CrossEntropy):
    """`kill` (SIGTERM) of the harness on the first step."""

    def loss(self, logits, batch, ctx):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGTERM did not stop the run")


def test_sigterm_stops_a_grid_as_ctrl_c_does(tmp_path, data_dir, temporary_reward, capsys):
    """Before: SIGTERM killed the process outright, and the sitting left no session summary."""
    temporary_reward("test_sigterm", _Sigterm)
    before = signal.getsignal(signal.SIGTERM)
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "test_sigterm"], epochs=1, max_train=8,
                      max_eval=8)
    code, _ = _exit(_run(grid, data_dir, tmp_path / "s"))
    assert code == 130 and "1/2 done" in capsys.readouterr().err
    assert [r.reward for r in Store(tmp_path / "s").records()] == ["ce"]
    assert [s["interrupted"] for s in Store(tmp_path / "s").sessions()] == [True]
    assert signal.getsignal(signal.SIGTERM) is before  # restored after the command


def test_unreachable_hub_switches_to_offline_instead_of_retrying(monkeypatch):
    """The Hub cannot be reached: one short attempt, then HF_HUB_OFFLINE for this process and its
    workers, and an uncached model is refused at once."""
    import huggingface_hub

    from harness.config import ConfigError
    from harness.validate import check_models

    calls = []

    def unreachable(name, timeout):
        calls.append(timeout)
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    with pytest.raises(ConfigError, match="not reachable .* not in the local cache"):
        check_models(["tiny-bert", "someone/uncached-model"])
    assert calls == [5] and huggingface_hub.constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"


def test_model_missing_on_a_reachable_hub_is_named(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    from harness.config import ConfigError
    from harness.validate import check_models

    def missing(name, timeout):
        raise RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # as the Hub's 404 is turned into

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "model_info", missing)
    with pytest.raises(ConfigError, match="'someone/typo': no such model on the Hugging Face Hub"):
        check_models(["someone/typo"])
