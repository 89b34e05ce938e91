"""Faults: a NaN or infinite loss, running out of GPU memory, and a grid killed at random moments."""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from harness.cli import main
from harness.run.recipe import run_or_record_failure
from harness.store import RunRecord, Store
from rewards.ce import CrossEntropy
from tests.helpers import configs, write_grid

ROOT = Path(__file__).resolve().parents[1]


def _stored(store: Store, cfg) -> RunRecord:
    return store.record(cfg.task, cfg.reward, cfg.run_hash())


# ---- NaN / inf loss ----------------------------------------------------------------------------

class _NaNFromStep2(CrossEntropy):
    """Cross-entropy whose loss turns NaN from the third optimizer step on."""

    def loss(self, logits, batch, ctx):
        out = super().loss(logits, batch, ctx)
        if ctx.step >= 2:
            out.loss = out.loss * float("nan")
        return out


class _InfAlways(CrossEntropy):
    """Cross-entropy plus an infinite term."""

    def loss(self, logits, batch, ctx):
        out = super().loss(logits, batch, ctx)
        out.loss = out.loss + float("inf")
        return out


def test_nan_loss_is_caught_at_the_next_logged_step(tmp_path, data_dir, temporary_reward, monkeypatch):
    temporary_reward("test_nan_late", _NaNFromStep2)
    # 32 rows in batches of 8: 4 steps an epoch; logged every 2 steps. NaN from step 3: caught at step 4.
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["test_nan_late"], epochs=3, max_train=32,
                      max_eval=8, log_every=2)
    (cfg,), source = configs(grid, data_dir)
    evaluated = []
    import harness.run.recipe as runner
    real_evaluate = runner.evaluate
    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: evaluated.append(a[-1]) or real_evaluate(*a, **k))
    store = Store(tmp_path / "s")
    record = run_or_record_failure(cfg, store, source, progress=False)
    assert record.status == "failed"
    assert record.error.startswith("FloatingPointError: non-finite training loss terms by step 4 (epoch 1)")
    assert evaluated == [], "stopped inside the first epoch, before any validation"
    assert _stored(store, cfg).error == record.error and "Traceback" in record.traceback
    assert not store.checkpoint_path(cfg.run_hash()).exists()


def test_inf_loss_between_log_points_is_caught_at_epoch_end(tmp_path, data_dir, temporary_reward):
    temporary_reward("test_inf", _InfAlways)
    grid = write_grid(tmp_path / "g.yaml", ["ner"], rewards=["test_inf"], epochs=2, max_train=16, max_eval=8,
                      log_every=1000)
    (cfg,), source = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    record = run_or_record_failure(cfg, store, source, progress=False)
    assert record.status == "failed"
    assert "FloatingPointError: non-finite training loss terms in epoch 1" in record.error
    assert _stored(store, cfg).status == "failed"


# ---- out of GPU memory -----------------------------------------------------------------------------

class _NeedsSmallBatches(CrossEntropy):
    """Cross-entropy that 'runs out of GPU memory' on micro-batches of more than 4 rows."""

    def loss(self, logits, batch, ctx):
        if len(batch["index"]) > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test)")
        return super().loss(logits, batch, ctx)


class _AlwaysOOM(CrossEntropy):
    """Cross-entropy that never fits."""

    def loss(self, logits, batch, ctx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (test)")


def test_out_of_memory_retries_with_half_batch_and_accumulation(tmp_path, data_dir, temporary_reward):
    temporary_reward("test_small_batches", _NeedsSmallBatches)
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", "test_small_batches"], epochs=2,
                      max_train=32, max_eval=8, batch_size=8, log_every=2)
    cfgs, source = configs(grid, data_dir)
    ce_cfg, oom_cfg = cfgs
    store = Store(tmp_path / "s")
    ce = run_or_record_failure(ce_cfg, store, source, progress=False)
    record = run_or_record_failure(oom_cfg, store, source, progress=False)
    assert record.status == "completed", record.error
    assert record.oom_retry["batch_size"] == 4 and record.oom_retry["grad_accum"] == 2
    assert "OutOfMemoryError" in record.oom_retry["first_error"]
    # The record is the configuration asked for: same hash, same settings, stored under that hash.
    assert record.hash == oom_cfg.run_hash() and record.config == oom_cfg.identity()
    assert record.config["settings"]["batch_size"] == 8
    assert _stored(store, oom_cfg).oom_retry == record.oom_retry
    # The same effective batch: as many optimizer steps as the ce run, and (CE both; dropout masks
    # differ) nearly the same losses and gradient norms: an accumulated gradient not divided by the
    # number of micro-batches would double the norm.
    assert [s["step"] for s in record.steps] == [s["step"] for s in ce.steps] == [2, 4, 6, 8]
    for a, b in zip(record.history, ce.history):
        assert math.isclose(a["train"]["loss"], b["train"]["loss"], rel_tol=1e-2), (a["train"], b["train"])
        assert math.isclose(a["train"]["grad_norm"], b["train"]["grad_norm"], rel_tol=0.1), (a["train"], b["train"])
    assert ce.oom_retry is None


def test_out_of_memory_twice_is_recorded_as_failed_with_the_retry(tmp_path, data_dir, temporary_reward):
    temporary_reward("test_always_oom", _AlwaysOOM)
    grid = write_grid(tmp_path / "g.yaml", ["ner"], rewards=["test_always_oom"], seeds=(1,), epochs=1,
                      max_train=16, max_eval=8)
    (cfg,), source = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    record = run_or_record_failure(cfg, store, source, progress=False)
    assert record.status == "failed" and record.error.startswith("OutOfMemoryError: CUDA out of memory")
    assert record.oom_retry["batch_size"] == 4 and record.oom_retry["grad_accum"] == 2
    assert _stored(store, cfg).oom_retry == record.oom_retry
    # A batch of one cannot be halved: failed at once, no retry.
    one = configs(write_grid(tmp_path / "g1.yaml", ["ner"], rewards=["test_always_oom"], epochs=1,
                             max_train=16, max_eval=8, batch_size=1), data_dir)[0][0]
    record = run_or_record_failure(one, store, source, progress=False)
    assert record.status == "failed" and record.oom_retry is None


# ---- SIGKILL at random moments, then resume ------------------------------------------------------

def _comparable(record: RunRecord) -> dict:
    return {"status": record.status, "test": record.test, "best_epoch": record.best_epoch,
            "predictions": [e["prediction"] for e in record.test_examples]}


def _final(store: Path) -> dict[str, dict]:
    return {r.hash: _comparable(r) for r in Store(store).records()}


def test_grid_killed_at_random_moments_resumes_to_the_uninterrupted_result(tmp_path, data_dir):
    """Three SIGKILLs at random moments (after start-up, so they land in runs or between them), a
    resume, and the records equal those of an uninterrupted run into another store."""
    grid = write_grid(tmp_path / "g.yaml", ["sentiment", "ner"], rewards=["ce", "focal"], epochs=2,
                      max_train=16, max_eval=8)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    cmd = [sys.executable, "-m", "harness", "run", "--grid", "--grid-file", str(grid), "--data-dir",
           str(data_dir), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    seed = int(os.environ.get("HARNESS_KILL_SEED", random.randrange(10 ** 6)))
    rng = random.Random(seed)
    print(f"kill seed {seed} (HARNESS_KILL_SEED={seed} repeats these kill moments)")
    kills = []
    for attempt in range(3):
        proc = subprocess.Popen(cmd + ["--store", str(killed)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        started = threading.Event()

        def watch(stream=proc.stderr, event=started):
            for line in stream:  # the "grid ..." line comes once the imports are done
                if line.startswith("grid "):
                    event.set()
        threading.Thread(target=watch, daemon=True).start()
        assert started.wait(120), "the grid did not start"
        delay = rng.uniform(0.0, 8.0)
        time.sleep(delay)
        done_before_kill = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append((round(delay, 2), len(list((killed / "records").rglob("*.json")))))
        if done_before_kill:
            break
        for path in (killed / "records").rglob("*.json"):  # what is on disk is a complete record
            assert json.loads(path.read_text())["status"] == "completed", path
    print(f"kills (seconds after start-up, records on disk): {kills}")
    stamps = {p: p.stat().st_mtime_ns for p in (killed / "records").rglob("*.json")}
    done = subprocess.run(cmd + ["--store", str(killed)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    if stamps:  # one line for the stored cells, not one per cell (none when every kill came before a record)
        assert f"{len(stamps)} of " in done.stderr and "cells already stored" in done.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "finished runs are not redone"
    main(["run", "--grid", "--grid-file", str(grid), "--data-dir", str(data_dir), "--quiet", "--store", str(clean)])
    resumed, uninterrupted = _final(killed), _final(clean)
    assert len(uninterrupted) == 4 and all(r["status"] == "completed" for r in uninterrupted.values())
    assert resumed == uninterrupted
