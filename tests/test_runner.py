"""The training loop, the record it stores, repeatability, resume after a kill, and failures."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.run.recipe import MissingParent, run, run_or_record_failure
from harness.store import RunRecord, Store
from rewards.ce import CrossEntropy
from tests.helpers import configs, write_grid

ROOT = Path(__file__).resolve().parents[1]


def test_training_reduces_loss_and_stores_a_complete_record(tmp_path, data_dir):
    grid = write_grid(tmp_path / "g.yaml", ["ner"], epochs=4, max_train=64, max_eval=24)
    (cfg,), source = configs(grid, data_dir)
    record = run(cfg, Store(tmp_path / "store"), source, progress=False)
    losses = [h["train"]["loss"] for h in record.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert record.status == "completed" and record.hash == cfg.run_hash()
    assert set(record.test) >= {"precision", "recall", "f1", "token_accuracy"}
    assert len(record.test_examples) == 24
    example = record.test_examples[0]
    assert len(example["prediction"]) == len(example["reference"]) and "tp" in example
    assert record.validation == record.history[record.best_epoch - 1]["validation"]
    assert record.timing["train_samples_per_second"] > 0
    assert record.environment["torch"] and record.config["data"]["kind"] == "local"
    assert [s["step"] for s in record.steps] == list(range(2, 2 * len(record.steps) + 1, 2))
    stored = json.loads(Store(tmp_path / "store").record_path("ner", "ce", cfg.run_hash()).read_text())
    assert stored == json.loads(json.dumps(record.to_json(), default=str))


@pytest.mark.parametrize("task", ["sentiment", "translation"])
def test_cpu_runs_repeat_bit_for_bit(tmp_path, data_dir, task):
    grid = write_grid(tmp_path / "g.yaml", [task], epochs=1, max_train=16, max_eval=8)
    (cfg,), source = configs(grid, data_dir)
    first = run(cfg, Store(tmp_path / "a"), source, progress=False)
    second = run(cfg, Store(tmp_path / "b"), source, progress=False)
    assert first.history[0]["train"] == second.history[0]["train"]
    assert [e["prediction"] for e in first.test_examples] == [e["prediction"] for e in second.test_examples]
    assert first.test == second.test


def test_seed_changes_the_run(tmp_path, data_dir):
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], seeds=(1, 2), epochs=1, max_train=16, max_eval=8)
    cfgs, source = configs(grid, data_dir)
    a, b = (run(c, Store(tmp_path / "s"), source, progress=False) for c in cfgs)
    assert a.hash != b.hash and a.history[0]["train"] != b.history[0]["train"]


def test_grid_resumes_and_force_reruns(tmp_path, data_dir, capsys):
    grid = write_grid(tmp_path / "g.yaml", ["sentiment", "ner"], epochs=1, max_train=16, max_eval=8)
    args = ["run", "--grid", "--grid-file", str(grid), "--store", str(tmp_path / "s"), "--data-dir",
            str(data_dir), "--quiet"]
    main(args)
    records = sorted((tmp_path / "s" / "records").rglob("*.json"))
    assert len(records) == 2
    stamps = [p.stat().st_mtime_ns for p in records]
    capsys.readouterr()
    main(args)
    err = capsys.readouterr().err
    assert "2 of 2 cells already stored (2 completed), skipped" in err and err.count("skipped") == 1  # one line
    assert [p.stat().st_mtime_ns for p in records] == stamps
    main(args + ["--force", "--task", "sentiment"])
    assert [p.stat().st_mtime_ns for p in records] != stamps


def test_killed_grid_leaves_no_partial_record_and_rerun_completes(tmp_path, data_dir):
    """SIGKILL in the middle of a grid, then rerun: only finished runs are on disk, then all are."""
    grid = write_grid(tmp_path / "g.yaml", ["sentiment", "ner"], seeds=(1, 2), epochs=3, max_train=96,
                      max_eval=16)
    store = tmp_path / "s"
    cmd = [sys.executable, "-m", "harness", "run", "--grid", "--grid-file", str(grid), "--store", str(store),
           "--data-dir", str(data_dir), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list((store / "records").rglob("*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # at once: a warm cache can finish a run in about a second
    proc.wait()
    finished = list((store / "records").rglob("*.json"))
    assert 1 <= len(finished) < 4, "the kill should land between the first and the last run"
    for path in finished:  # whatever is on disk is a complete record
        assert json.loads(path.read_text())["status"] == "completed"
    before = {p: p.stat().st_mtime_ns for p in finished}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = list(Store(store).records())
    assert len(records) == 4 and all(r.status == "completed" for r in records)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items()), "finished runs are not redone"
    assert not [p for p in store.rglob("*") if p.name.endswith(".tmp")]


def test_failed_and_refused_cells_are_recorded_and_the_grid_goes_on(tmp_path, data_dir, temporary_reward):
    class Exploding(CrossEntropy):
        """Raises on the first step."""

        def loss(self, logits, batch, ctx):
            raise RuntimeError("boom")

    class SentimentOnly(CrossEntropy):
        """Refuses every task but classification."""

        kinds = ("classification",)

    temporary_reward("test_exploding", Exploding)
    temporary_reward("test_sentiment_only", SentimentOnly)
    grid = write_grid(tmp_path / "g.yaml", ["ner", "sentiment"], rewards=["test_exploding", "test_sentiment_only"],
                      epochs=1, max_train=16, max_eval=8)
    cfgs, source = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    statuses = {(c.task, c.reward): run_or_record_failure(c, store, source, progress=False).status for c in cfgs}
    assert statuses == {("ner", "test_exploding"): "failed", ("sentiment", "test_exploding"): "failed",
                        ("ner", "test_sentiment_only"): "refused", ("sentiment", "test_sentiment_only"): "completed"}
    failed = store.record("ner", "test_exploding", cfgs[0].run_hash())
    assert "boom" in failed.error and "Traceback" in failed.traceback


def test_strategy_starts_from_the_ce_checkpoint_of_the_same_seed(tmp_path, data_dir, temporary_reward):
    class FromCE(CrossEntropy):
        """Starts from the ce run."""

        init_from = "ce"

    temporary_reward("test_from_ce", FromCE)
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["test_from_ce", "ce"], epochs=1,
                      max_train=16, max_eval=8)
    cfgs, source = configs(grid, data_dir)
    assert [c.reward for c in cfgs] == ["ce", "test_from_ce"], "the checkpoint producer runs first"
    store = Store(tmp_path / "s")
    ce = run(cfgs[0], store, source, progress=False)
    assert store.checkpoint_path(ce.hash).exists()
    child = run(cfgs[1], store, source, progress=False)
    assert child.init_from == ce.hash


def test_strategy_whose_parent_checkpoint_is_missing_fails_and_retries_once_it_exists(tmp_path, data_dir,
                                                                                       temporary_reward):
    """No ce run of the seed: the child fails naming the missing run and how to make it, never starting
    from the pretrained model; once the parent exists, the retried cell starts from it."""
    class FromCE(CrossEntropy):
        """Starts from the ce run."""

        init_from = "ce"

    temporary_reward("test_from_ce", FromCE)
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "test_from_ce"], seeds=(7,), epochs=1,
                      max_train=16, max_eval=8)
    (ce_cfg, child_cfg), source = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    with pytest.raises(MissingParent) as err:
        run(child_cfg, store, source, progress=False)
    message = str(err.value)
    for part in ("'ce'", "task sentiment", "seed 7", ce_cfg.run_hash(), "no record", "Run it first"):
        assert part in message, part
    record = run_or_record_failure(child_cfg, store, source, progress=False)
    assert record.status == "failed" and ce_cfg.run_hash() in record.error and record.init_from is None
    assert not store.checkpoint_path(child_cfg.run_hash()).exists()
    store.save(RunRecord.failed(ce_cfg, "x"))
    with pytest.raises(MissingParent, match="its record is failed"):
        run(child_cfg, store, source, progress=False)
    ce = run(ce_cfg, store, source, progress=False)
    retried = run_or_record_failure(child_cfg, store, source, progress=False)
    assert retried.status == "completed" and retried.init_from == ce.hash


def test_smoke_preset_end_to_end_through_report(tmp_path, data_dir, capsys):
    """The shipped smoke grid with the real offline models, cut to a few rows and one strategy per
    family (the whole grid is the main job's), then the report."""
    store, out = tmp_path / "s", tmp_path / "results"
    main(["run", "--grid", "--preset", "smoke", "--store", str(store), "--data-dir", str(data_dir),
          "--reward", "ce,focal,scst", "--max-train", "16", "--max-eval", "8", "--epochs", "1", "--quiet"])
    main(["report", "--store", str(store), "--out", str(out)])
    printed = capsys.readouterr().out
    for task in ("ner", "sentiment", "translation", "summarization"):
        assert f"## {task}" in printed
        assert (out / f"leaderboard_{task}.md").exists()
    summary = (out / "summary.md").read_text()
    assert "ner (f1)" in summary and "summarization (rouge1)" in summary and "(n=1)" in summary
    payload = json.loads((out / "summary.json").read_text())
    assert set(payload["leaderboards"]) == {"ner", "sentiment", "translation", "summarization"}
    (session,) = Store(store).sessions()  # the invocation's own summary, carried into the manifest
    assert session["runs"] == 12 and session["statuses"] == {"completed": 12} and session["wall_seconds"] > 0
    assert session["command"].startswith("python -m harness ") and session["grid"] == "smoke"
    assert payload["manifest"]["sessions"][0]["runs"] == 12
