"""`harness evaluate RUN_HASH`: a stored run's kept checkpoint scored on other test data (files of
the task's format, or another split of its data source), without retraining.

The result is an evaluation record under `evaluations/` in the store, linked to the run by its
hash and naming the data it read (each file's path and MD5, or the split and the source's
description); the run's own record is never changed. It needs the run's selected weights, which
are kept for every run by `harness run --keep-checkpoints` (and always for the runs other
strategies start from).
"""
from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import torch

from harness.config import ConfigError, RunConfig, TrainSettings, identity_hash
from harness.environment import environment
from harness.run.data import Batches, DataSource, canonical_rows, encode_rows, file_md5
from harness.run.models import load_model, load_tokenizer, model_kind
from harness.run.recipe import configured_task, generation_settings, score_split, uses_bf16
from harness.store import RunRecord, Store
from tasks.base import SPLITS

_SETTINGS = {f.name for f in dataclasses.fields(TrainSettings)}


def run_config(record: RunRecord) -> RunConfig:
    """The configuration a stored record names (settings this harness no longer has are dropped)."""
    c = record.config
    settings = TrainSettings(**{k: v for k, v in c["settings"].items() if k in _SETTINGS})
    return RunConfig(task=c["task"], reward=c["reward"], seed=c["seed"], settings=settings,
                     reward_params=c.get("reward_params") or {}, data=c.get("data") or {}, parent=c.get("parent"))


def evaluate_run(store: Store, run_hash: str, source: DataSource, test_files: list[Path] | None = None,
                 split: str | None = None, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Scores run `run_hash`'s kept checkpoint on `test_files` (read as the task's test files are) or
    on `split` of `source`; stores and returns the evaluation record (path, content)."""
    record = store.find(run_hash)
    if record.status != "completed":
        raise ConfigError(f"run {run_hash} is {record.status}: only a completed run can be evaluated")
    cfg = run_config(record)
    state = store.load_checkpoint(run_hash)
    if state is None:
        raise ConfigError(f"run {run_hash} ({cfg.task} {cfg.reward} seed {cfg.seed}) has no kept checkpoint in "
                          f"{store.root}: rerun it keeping one, `harness run --task {cfg.task} --reward {cfg.reward} "
                          f"--seed {cfg.seed} --keep-checkpoints --force` with the grid and overrides it was run "
                          "with (the rerun has the same hash)")
    task = configured_task(cfg)
    rows, data = _rows(task, source, test_files, split)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = model_kind(task, record.model)
    tokenizer = load_tokenizer(record.model)
    model = load_model(record.model, task, tokenizer, kind)
    model.load_state_dict(state)
    model.to(device)
    start = kind.start_token(model)
    batches = Batches(kind, task, encode_rows(task, rows, tokenizer, kind, start), cfg.settings.eval_batch_size,
                      tokenizer.pad_token_id, start)
    preds, refs, result = score_split(kind, task, model, batches, tokenizer, device,
                                      record.generation or generation_settings(task, cfg), progress,
                                      bf16=uses_bf16(cfg.settings.precision, device))  # as the run's own test
    evaluation = {
        "run": record.hash, "task": record.task, "reward": record.reward, "reward_params": record.reward_params,
        "seed": record.seed, "model": record.model, "data": data, "main_metric": task.main_metric,
        "n_examples": len(rows), "test": result.corpus, "metric_info": result.info,
        "test_examples": [{"prediction": p, "reference": r, **stats}
                          for p, r, stats in zip(preds, refs, result.per_example)],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment()}
    return store.save_evaluation(record, identity_hash(data), evaluation), evaluation


def _rows(task: Any, source: DataSource, test_files: list[Path] | None,
          split: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows to score and what names them in the evaluation record."""
    if test_files:
        expected = task.local_files["test"]
        if len(test_files) != len(expected):
            raise ConfigError(f"task {task.name} reads its test data from {len(expected)} file(s) "
                              f"({', '.join(expected)}); give as many to --test-files, in that order")
        rows = task.read_local(*test_files)
        return rows, {"files": [{"path": str(Path(p).resolve()), "md5": file_md5(Path(p))} for p in test_files]}
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: choose one of {', '.join(SPLITS)}, or give --test-files")
    return canonical_rows(task, split, source), {"split": split, "source": source.describe(task)}
