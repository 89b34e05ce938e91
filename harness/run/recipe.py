"""One run: fine-tune a model on a task with a reward strategy, select the best epoch, test it.

`run` is the whole recipe, top to bottom, in the manner of torchtune's recipes: set up, train with
per-epoch validation and early stopping, restore the best epoch, evaluate on test, store a record.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import math
import random
import sys
import time
import traceback
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from harness import __version__
from harness.config import RunConfig
from harness.run.data import Batches, DataSource, head, load_split
from harness.environment import environment
from harness.run.models import load_model, load_tokenizer
from harness.store import RunRecord, Store
from rewards.base import REWARDS, StepContext, build_reward
import kinds
from tasks.base import Task, get_task
from tasks.formats import DataFormatError


class RunRefused(Exception):
    """The strategy cannot run on this task; recorded as a refused cell, not as a failure."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def generation_settings(task: Task, cfg: RunConfig) -> dict[str, Any]:
    """The task's decoding settings with the grid's overrides; recorded with the result."""
    if task.generation is None:
        return {}
    chosen = dataclasses.asdict(task.generation)
    for key in chosen:
        value = getattr(cfg.settings, key)
        if value is not None:
            chosen[key] = value
    return chosen


def parent_config(cfg: RunConfig) -> RunConfig | None:
    """The run whose checkpoint `cfg`'s strategy starts from (same task, seed and settings), or None."""
    parent = REWARDS[cfg.reward].init_from
    return dataclasses.replace(cfg, reward=parent, reward_params={}) if parent else None


def split_batch(batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """A collated batch cut into `parts` micro-batches of consecutive rows (gradient accumulation)."""
    if parts <= 1:
        return [batch]
    rows = len(batch["index"])
    size = -(-rows // parts)
    return [{k: v[start:start + size] for k, v in batch.items()} for start in range(0, rows, size)]


def evaluate(task: Task, model: torch.nn.Module, batches: Batches, tokenizer: Any, device: torch.device,
             generation: dict[str, Any], desc: str, progress: bool = True) -> tuple[list[Any], list[Any]]:
    """Predictions and references for every row of a split, in the split's order."""
    model.eval()
    predictions: list[Any] = [None] * len(batches.rows)
    references: list[Any] = [None] * len(batches.rows)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    with autocast:
        for batch in tqdm(batches.iterate(), total=len(batches), desc=desc, leave=False, mininterval=2,
                          disable=not progress):
            batch = kinds.to_device(batch, device)
            preds = kinds.predict(task, model, batch, tokenizer, generation)
            refs = kinds.references(task, batch, tokenizer)
            for i, p, r in zip(batch["index"].tolist(), preds, refs):
                predictions[i], references[i] = p, r
    return predictions, references


def run(cfg: RunConfig, store: Store, source: DataSource, device: torch.device | None = None,
        progress: bool = True, oom_retry: dict[str, Any] | None = None) -> RunRecord:
    """Trains, selects and tests one configuration; returns the record it stored.

    `oom_retry` (set by `run_or_record_failure` after running out of GPU memory): each batch of the
    configured size is cut into `oom_retry["grad_accum"]` micro-batches whose gradients add up to one
    optimizer step, the same effective batch; the record keeps the configuration and hash it was
    asked for, and says so under "oom_retry".
    """
    grad_accum = oom_retry["grad_accum"] if oom_retry else 1
    run_hash = cfg.run_hash()
    started = time.time()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # the peak recorded below is this run's, also in a long-lived pool worker
        torch.cuda.reset_peak_memory_stats(device)
    task = get_task(cfg.task)
    lengths = {k: getattr(cfg.settings, k) for k in ("max_source_length", "max_target_length")}
    task = dataclasses.replace(task, **{k: v for k, v in lengths.items() if v is not None})
    strategy = build_reward(cfg.reward, cfg.reward_params)
    reason = strategy.refuses(task)
    if reason:
        raise RunRefused(reason)
    s = cfg.settings

    # ---- set-up: seed, tokenizer, model (possibly from another run's checkpoint), data ----
    seed_everything(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    model_name = s.model or task.default_model
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, task, tokenizer)
    init_from = None
    parent = parent_config(cfg)
    if parent is not None:
        state = store.load_checkpoint(parent.run_hash())
        if state is not None:
            model.load_state_dict(state)
            init_from = parent.run_hash()
    model.to(device)
    reference = None
    if strategy.needs_reference:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    decoder_start = getattr(model.config, "decoder_start_token_id", None)
    splits = {split: head(load_split(task, split, source, tokenizer, decoder_start),
                          s.max_train if split == "train" else s.max_eval)
              for split in ("train", "validation", "test")}
    pad = tokenizer.pad_token_id
    train = Batches(task, splits["train"], s.batch_size, pad, decoder_start)
    val = Batches(task, splits["validation"], s.eval_batch_size, pad, decoder_start)
    test = Batches(task, splits["test"], s.eval_batch_size, pad, decoder_start)
    generation = generation_settings(task, cfg)
    policy = kinds.KindPolicy(task, tokenizer, generation.get("max_new_tokens", task.max_target_length),
                              s.sample_length_factor)

    # ---- optimiser: AdamW, linear warm-up then decay, no decay on biases and LayerNorm ----
    # Fused on every device: the same update in one kernel, about twice as fast on CPU (BENCHMARKS.md).
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=s.lr, fused=True)
    total_steps = len(train) * s.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total_steps), total_steps)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    generator = torch.Generator().manual_seed(cfg.seed)
    # Only the training forward is compiled; evaluation, generation and strategies use the eager model.
    trained = torch.compile(model, dynamic=True) if s.compile else model

    # ---- train, validating after every epoch; keep the best epoch's weights ----
    history, step_log = [], []
    best_score, best_epoch, best_state = -math.inf, -1, None
    step, train_seconds, train_samples = 0, 0.0, 0
    for epoch in range(1, s.epochs + 1):
        model.train()
        sums: dict[str, torch.Tensor] = {}
        epoch_start, epoch_samples = time.time(), 0
        bar = tqdm(train.iterate(generator), total=len(train), desc=f"{cfg.task}/{cfg.reward} epoch {epoch}",
                   disable=not progress, mininterval=2, leave=False)
        for batch in bar:
            batch = kinds.to_device(batch, device)
            optimizer.zero_grad(set_to_none=True)
            parts = split_batch(batch, grad_accum)
            terms: dict[str, torch.Tensor] = {}
            for part in parts:
                with autocast:
                    logits = kinds.forward(trained, part)
                    ctx = StepContext(task=task, model=model, tokenizer=tokenizer, step=step,
                                      total_steps=total_steps, forward=kinds.forward, policy=policy,
                                      reference=reference)
                    out = strategy.loss(logits, part, ctx)
                (out.loss / len(parts)).backward()
                for name, value in {"loss": out.loss.detach(), **out.terms}.items():  # micro-batch mean
                    terms[name] = terms.get(name, 0) + value.float() / len(parts)
                del logits, out
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            epoch_samples += len(batch["index"])
            terms = {"loss": terms.pop("loss"), "grad_norm": grad_norm.detach(), **terms}
            for name, value in terms.items():  # summed on the device: no host sync inside the step
                sums[name] = sums.get(name, 0) + value.float()
            if step % s.log_every == 0:
                # The epoch sums are the cheap on-device flag: a NaN or inf in any step since the
                # epoch began stays in them; checked here, at the logging sync, and at epoch end.
                if not bool(torch.stack([v.sum() for v in sums.values()]).isfinite().all()):
                    raise FloatingPointError(
                        f"non-finite training loss terms by step {step} (epoch {epoch}): "
                        f"{ {k: float(v) for k, v in terms.items()} }")
                logged = {k: float(v) for k, v in terms.items()}
                step_log.append({"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0], **logged})
                bar.set_postfix(loss=f"{logged['loss']:.4f}",
                                samples_s=f"{epoch_samples / (time.time() - epoch_start):.0f}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.time() - epoch_start
        train_seconds += seconds
        train_samples += epoch_samples
        means = {k: float(v) / max(len(train), 1) for k, v in sums.items()}
        if not all(math.isfinite(v) for v in means.values()):
            raise FloatingPointError(f"non-finite training loss terms in epoch {epoch}: {means}")
        preds, refs = evaluate(task, model, val, tokenizer, device, generation, "validation", progress)
        val_scores = task.score(preds, refs).corpus
        history.append({"epoch": epoch, "train": means, "validation": val_scores, "train_seconds": seconds,
                        "samples_per_second": epoch_samples / seconds if seconds else None})
        if progress:
            tqdm.write(f"{cfg.task}/{cfg.reward} seed {cfg.seed} epoch {epoch}: loss {means['loss']:.4f}  "
                       f"val {task.main_metric} {val_scores[task.main_metric]:.2f}  "
                       f"{epoch_samples / seconds:.0f} samples/s")
        if val_scores[task.main_metric] > best_score:
            best_score, best_epoch = val_scores[task.main_metric], epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= s.patience:
            break

    # ---- restore the selected epoch and evaluate it once on test ----
    model.load_state_dict(best_state)
    eval_start = time.time()
    preds, refs = evaluate(task, model, test, tokenizer, device, generation, "test", progress)
    test_result = task.score(preds, refs)
    eval_seconds = time.time() - eval_start
    if cfg.reward in {cls.init_from for cls in REWARDS.values() if cls.init_from}:
        store.save_checkpoint(run_hash, best_state)
    record = RunRecord.completed(
        cfg, model=model_name, generation=generation, init_from=init_from,
        main_metric=task.main_metric, best_epoch=best_epoch,
        validation=history[best_epoch - 1]["validation"], test=test_result.corpus,
        metric_info=test_result.info, history=history, steps=step_log,
        test_examples=[{"prediction": p, "reference": r, **stats}
                       for p, r, stats in zip(preds, refs, test_result.per_example)],
        timing={"total_seconds": time.time() - started, "train_seconds": train_seconds,
                "test_eval_seconds": eval_seconds,
                "train_samples_per_second": train_samples / train_seconds if train_seconds else None,
                "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None},
        environment=environment(), oom_retry=oom_retry or None)
    store.save(record)
    return record


def run_or_record_failure(cfg: RunConfig, store: Store, source: DataSource, progress: bool = True) -> RunRecord:
    """Runs one cell; a refusal or an exception becomes a stored record instead of stopping the grid.

    Out of GPU memory, the run is retried once with half the batch and 2-step gradient accumulation
    (the same effective batch); its record says so under "oom_retry".
    """
    oom_retry = None
    try:
        try:
            return run(cfg, store, source, progress=progress)
        except torch.cuda.OutOfMemoryError as err:
            if cfg.settings.batch_size < 2:
                raise
            oom_retry = {"batch_size": -(-cfg.settings.batch_size // 2), "grad_accum": 2,
                         "first_error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
        # Retried outside the except block: the first attempt's frames (and its GPU tensors) are gone.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(f"{cfg.task} {cfg.reward} seed {cfg.seed}: out of GPU memory, retrying with batch "
              f"{oom_retry['batch_size']} x {oom_retry['grad_accum']} accumulation steps", file=sys.stderr)
        return run(cfg, store, source, progress=progress, oom_retry=oom_retry)
    except RunRefused as refusal:
        record = RunRecord.refused(cfg, str(refusal))
    except (KeyboardInterrupt, SystemExit, DataFormatError):  # bad input stops the grid, records nothing
        raise
    except Exception as err:  # noqa: BLE001 - any failure of one cell is recorded, the grid goes on
        record = RunRecord.failed(cfg, err, traceback.format_exc(), oom_retry=oom_retry or None)
    store.save(record)
    return record
