"""One run: fine-tune a model on a task with a reward strategy, select the best epoch, test it.

The recipe in steps, read top to bottom as torchtune's recipes are: `prepare` (model, reference,
data, optimiser: also what `harness bench` runs the Trainer on), `train_epoch`, `validate`, the
selection of the best epoch in `run`, `test`, and `record`. Strategies hook in through
`RewardStrategy.start`, `rollout`, `loss` and `after_step` (see `rewards.base`).
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import logging
import math
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from harness.config import ConfigError, RunConfig, TrainSettings, parent_of as parent_config, with_parent
from harness.environment import environment
from harness.overrides import cell_name
from harness.run.data import Batches, DataSource, head, load_split
from harness.run.models import load_model, load_tokenizer, model_kind
from harness.store import RunRecord, Store, StoreError
from kinds import IGNORE, ModelKind, to_device
from kinds.base import forward, new_parameters, with_new_parameters
from rewards.base import REWARDS, RewardStrategy, StepContext, build_reward
from tasks.base import MetricResult, Task, get_task
from tasks.formats import DataFormatError
from tasks.metrics import calibration_aggregate, mean_words

SPLITS = ("train", "validation", "test")
log = logging.getLogger("harness")


class RunRefused(Exception):
    """The strategy cannot run on this task; recorded as a refused cell, not as a failure."""


class MissingParent(RuntimeError):
    """The run the strategy starts from (`init_from`) has no checkpoint: recorded as a failed cell."""


def bars(progress: bool) -> bool:
    """Progress bars only on a terminal: in a log, `\r`-joined bar updates are noise; the per-epoch
    lines (`run`) are printed either way."""
    return progress and sys.stderr.isatty()


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


def missing_parent(cfg: RunConfig, parent: RunConfig, store: Store | None) -> MissingParent:
    """The error of a run whose parent checkpoint is not in the store: which run, and how to make it."""
    status = store.status(parent.task, parent.reward, parent.run_hash()) if store is not None else None
    where = f"store {store.root}" if store is not None else "no store (none was given)"
    why = f"its record is {status}" if status else "it has no record"
    return MissingParent(
        f"reward {cfg.reward!r} starts from the checkpoint of run {parent.reward!r} (task {parent.task}, "
        f"seed {parent.seed}, hash {parent.run_hash()}), which is not in {where}: {why}. Run it first with the "
        f"same settings (`harness run --task {parent.task} --reward {parent.reward} --seed {parent.seed}` and the "
        f"same grid or overrides), or run the grid, which runs parents first; then rerun this cell. It does "
        f"not start from the pretrained model instead.")


def split_batch(batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """A collated batch cut into `parts` micro-batches of consecutive rows (gradient accumulation)."""
    if parts <= 1:
        return [batch]
    rows = len(batch["index"])
    size = -(-rows // parts)
    return [{k: v[start:start + size] for k, v in batch.items()} for start in range(0, rows, size)]


def scored(batch: dict[str, Any]) -> int:
    """The positions a batch's loss averages over: its scored labels (one per row for a label)."""
    return int((batch["labels"] != IGNORE).sum())


# ---- prepare ----------------------------------------------------------------------------------

@dataclass
class Setup:
    """Everything a run builds once before training."""

    cfg: RunConfig
    task: Task
    kind: ModelKind
    strategy: RewardStrategy
    model: torch.nn.Module
    tokenizer: Any
    device: torch.device
    data: dict[str, Batches]
    tables: dict[str, Any]  # the encoded splits (`datasets.Dataset`) behind `data`
    generation: dict[str, Any]
    ctx: StepContext  # the run-level context; each step replaces step, update and rollout
    trained: torch.nn.Module  # the model, or its compiled training forward (`compile`); eval stays eager
    optimizer: torch.optim.Optimizer
    scheduler: Any
    init_from: str | None
    grad_accum: int = 1
    dropout: bool = True  # dropout on in the model while it trains (`policy_dropout`, resolved)
    bf16: bool = False  # bf16 autocast (`precision`, resolved by `uses_bf16`)
    epochs: int = 1  # epochs to train (`epochs`, or `continued_epochs` from a checkpoint)
    started: float = field(default_factory=time.time)

    @property
    def autocast(self) -> torch.autocast:
        return autocast(self.device, self.bf16)


def uses_bf16(precision: str | None, device: torch.device) -> bool:
    """The run's `precision` setting resolved: as set, else bf16 on a GPU and fp32 on a CPU."""
    if precision not in (None, "bf16", "fp32"):
        raise ConfigError(f"precision {precision!r}: use bf16, fp32, or leave it unset (bf16 on a GPU, fp32 on a CPU)")
    return device.type == "cuda" if precision is None else precision == "bf16"


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast on the run's device (CUDA or CPU) when `bf16`, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def configured_task(cfg: RunConfig) -> Task:
    """The run's task with the truncation lengths its settings override."""
    lengths = {k: getattr(cfg.settings, k) for k in ("max_source_length", "max_target_length")}
    return dataclasses.replace(get_task(cfg.task), **{k: v for k, v in lengths.items() if v is not None})


def prepare(cfg: RunConfig, store: Store | None, source: DataSource, device: torch.device,
            grad_accum: int = 1) -> Setup:
    """Seeds, then builds the model (from the parent run's checkpoint when the strategy starts from
    one; `MissingParent` when that checkpoint is not in the store), the frozen reference (a copy of
    the starting model), the data, the strategy's context and the optimiser."""
    started = time.time()
    task = configured_task(cfg)
    s = cfg.settings
    model_name = s.model or task.default_model
    kind = model_kind(task, model_name)
    strategy = build_reward(cfg.reward, cfg.reward_params)
    reason = strategy.refuses(task, kind.name)
    if reason:
        raise RunRefused(reason)
    parent = parent_config(cfg)  # checked before anything is loaded: never the pretrained model instead
    state = store.load_checkpoint(parent.run_hash()) if parent is not None and store is not None else None
    if parent is not None and state is None:
        raise missing_parent(cfg, parent, store)
    bf16 = uses_bf16(s.precision, device)
    seed_everything(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, task, tokenizer, kind)
    if parent is not None:  # every parameter now comes from the parent: none is new (`new_lr_scale`)
        with_new_parameters(model, ())
        model.load_state_dict(state)
    elif s.new_lr_scale is not None and not new_parameters(model):
        log.warning("new_lr_scale=%s has nothing to scale: %s has no newly initialised parameters",
                    s.new_lr_scale, model_name)
    init_from = parent.run_hash() if parent is not None else None
    model.to(device)
    reference = copy.deepcopy(model).eval().requires_grad_(False) if strategy.needs_reference else None
    start = kind.start_token(model)
    validation = s.max_eval if s.max_validation is None else s.max_validation
    epochs, train_rows = s.epochs, s.max_train
    if parent is not None:  # a second phase from a checkpoint, as long as its own settings say
        epochs = s.continued_epochs or epochs
        train_rows = s.continued_max_train or train_rows
    sizes = {"train": (train_rows, s.batch_size), "validation": (validation, s.eval_batch_size),
             "test": (s.max_eval, s.eval_batch_size)}
    tables = {split: head(load_split(task, split, source, tokenizer, kind, start), rows)
              for split, (rows, _) in sizes.items()}
    data = {split: Batches(kind, task, tables[split], size, tokenizer.pad_token_id, start)
            for split, (_, size) in sizes.items()}
    generation = generation_settings(task, cfg)
    policy = kind.policy(task, tokenizer, generation.get("max_new_tokens", task.max_target_length),
                         s.sample_length_factor)
    total_steps = len(data["train"]) * epochs * strategy.updates
    # The learning-rate schedule runs over batches, so a strategy taking several optimiser steps per
    # batch (`updates`) follows the same schedule, batch by batch, as ce and ce_continued.
    optimizer, scheduler = _optimiser(model, cfg, len(data["train"]) * epochs)
    ctx = StepContext(task=task, model=model, tokenizer=tokenizer, step=0, total_steps=total_steps, forward=forward,
                      policy=policy, reference=reference, kind=kind, train=data["train"], seed=cfg.seed, bf16=bf16)
    trained = torch.compile(model, dynamic=True) if s.compile else model
    dropout = strategy.policy_dropout if s.policy_dropout is None else s.policy_dropout
    return Setup(cfg=cfg, task=task, kind=kind, strategy=strategy, model=model, tokenizer=tokenizer, device=device,
                 data=data, tables=tables, generation=generation, ctx=ctx, trained=trained, optimizer=optimizer, scheduler=scheduler,
                 init_from=init_from, grad_accum=grad_accum, started=started, dropout=dropout, bf16=bf16,
                 epochs=epochs)


def _optimiser(model: torch.nn.Module, cfg: RunConfig, batches: int) -> tuple[torch.optim.Optimizer, Any]:
    """`adamw` with linear warm-up then decay over `batches`."""
    optimizer = adamw(model, cfg.settings)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(cfg.settings.warmup_ratio * batches), batches)


def adamw(model: torch.nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    """AdamW, no decay on biases and LayerNorm, `new_lr_scale` times the rate for the parameters the
    checkpoint lacked; fused on every device (the same update in one kernel, about twice as fast on
    CPU: BENCHMARKS.md)."""
    new = new_parameters(model) if s.new_lr_scale is not None else frozenset()
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((p.dim() > 1, name in new), []).append(p)
    order = sorted(groups, key=lambda g: (not g[0], g[1]))  # decayed first, then biases and LayerNorm
    return torch.optim.AdamW([{"params": groups[(decay, is_new)], "weight_decay": s.weight_decay if decay else 0.0,
                               "lr": s.lr * (s.new_lr_scale if is_new else 1.0)} for decay, is_new in order],
                             lr=s.lr, fused=True)


# ---- train one epoch --------------------------------------------------------------------------

@dataclass
class TrainState:
    """What training carries from epoch to epoch."""

    generator: torch.Generator
    step: int = 0
    seconds: float = 0.0  # training time, summed over epochs
    samples: int = 0
    start_seconds: float = 0.0  # the strategy's `start` (e.g. rlhf's preference set and reward model)
    step_log: list[dict[str, Any]] = field(default_factory=list)


def train_epoch(setup: Setup, epoch: int, state: TrainState, progress: bool = True) -> dict[str, float]:
    """One pass over the training batches; returns the epoch's mean of every logged term.

    Under gradient accumulation each micro-batch's loss is weighted by its share of the batch's
    scored positions, so an accumulated step equals the whole batch's step for a token-mean loss.
    A strategy with `updates` > 1 takes that many optimiser steps on each batch and its rollout.
    The model trains with dropout only where `setup.dropout` says so (off for sampling strategies).
    """
    s, model, strategy = setup.cfg.settings, setup.model, setup.strategy
    model.train(setup.dropout)  # eval mode switches dropout off; gradients flow the same
    sums: dict[str, torch.Tensor] = {}
    computed: dict[str, int] = {}  # steps that computed each term (`StepContext.diagnose`)
    started, samples = time.time(), 0
    train = setup.data["train"]
    bar = tqdm(train.iterate(state.generator), total=len(train), disable=not bars(progress), mininterval=2, leave=False,
               desc=f"{setup.cfg.task}/{cell_name(setup.cfg.reward, setup.cfg.reward_params)} seed {setup.cfg.seed} "
                    f"epoch {epoch}")
    for position, batch in enumerate(bar, 1):
        parts = split_batch(batch, setup.grad_accum)
        counts = [scored(part) for part in parts]
        weights = [count / max(sum(counts), 1) for count in counts] if len(parts) > 1 else [1.0]
        parts = [to_device(part, setup.device) for part in parts]
        samples += len(batch["index"])
        ctx = dataclasses.replace(setup.ctx, step=state.step)
        with torch.no_grad(), setup.autocast:
            rollouts = [strategy.rollout(part, ctx) for part in parts]
        for update in range(strategy.updates):
            diagnose = (state.step + 1) % s.log_every == 0 or position == len(train)
            terms = _optimiser_step(setup, parts, weights, rollouts, update, state.step, diagnose)
            if update == strategy.updates - 1:
                setup.scheduler.step()  # once per batch; the logged lr is the next step's
            state.step += 1
            strategy.after_step(dataclasses.replace(setup.ctx, step=state.step, update=update))
            for name, value in terms.items():  # summed on the device: no host sync inside the step
                sums[name] = sums.get(name, 0) + value.float()
                computed[name] = computed.get(name, 0) + 1
            if state.step % s.log_every == 0:
                _check_finite(sums, terms, state.step, epoch)
                logged = {k: float(v) for k, v in terms.items()}
                state.step_log.append({"step": state.step, "epoch": epoch, "lr": setup.scheduler.get_last_lr()[0],
                                       **logged})
                bar.set_postfix(loss=f"{logged['loss']:.4f}", samples_s=f"{samples / (time.time() - started):.0f}")
    if setup.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.time() - started
    state.seconds += seconds
    state.samples += samples
    means = {k: float(v) / computed[k] for k, v in sums.items()}
    if not all(math.isfinite(v) for v in means.values()):
        raise FloatingPointError(f"non-finite training loss terms in epoch {epoch}: {means}")
    return {**means, "_seconds": seconds, "_samples": samples}


def _optimiser_step(setup: Setup, parts: list[dict[str, Any]], weights: list[float],
                    rollouts: list[Any], update: int, step: int, diagnose: bool = True) -> dict[str, torch.Tensor]:
    """One optimiser step over a batch's micro-batches; the step's loss terms (weighted means)."""
    setup.optimizer.zero_grad(set_to_none=True)
    terms: dict[str, torch.Tensor] = {}
    for part, weight, rollout in zip(parts, weights, rollouts):
        ctx = dataclasses.replace(setup.ctx, step=step, update=update, rollout=rollout, diagnose=diagnose)
        with setup.autocast:
            logits = setup.kind.forward(setup.trained, part)
            out = setup.strategy.loss(logits, part, ctx)
        (out.loss * weight if weight != 1.0 else out.loss).backward()
        for name, value in {"loss": out.loss.detach(), **out.terms}.items():
            terms[name] = terms.get(name, 0) + value.float() * weight
        del logits, out
    grad_norm = torch.nn.utils.clip_grad_norm_(setup.model.parameters(), setup.cfg.settings.max_grad_norm)
    setup.optimizer.step()
    return {"loss": terms.pop("loss"), "grad_norm": grad_norm.detach(), **terms}


def _check_finite(sums: dict[str, torch.Tensor], terms: dict[str, torch.Tensor], step: int, epoch: int) -> None:
    """The epoch sums are the cheap on-device flag: a NaN or inf in any step since the epoch began
    stays in them; checked at each logging sync and at epoch end."""
    if not bool(torch.stack([v.sum() for v in sums.values()]).isfinite().all()):
        raise FloatingPointError(f"non-finite training loss terms by step {step} (epoch {epoch}): "
                                 f"{ {k: float(v) for k, v in terms.items()} }")


# ---- evaluate, validate, test -----------------------------------------------------------------

def evaluate(kind: ModelKind, task: Task, model: torch.nn.Module, batches: Batches, tokenizer: Any,
             device: torch.device, generation: dict[str, Any], desc: str,
             progress: bool = True, bf16: bool = False) -> tuple[list[Any], list[Any], list[dict[str, Any]] | None]:
    """Predictions, references and (where the kind has them) calibration statistics for every row
    of a split, in the split's order."""
    model.eval()
    predictions: list[Any] = [None] * len(batches.rows)
    references: list[Any] = [None] * len(batches.rows)
    calibration: list[Any] = [None] * len(batches.rows)
    with autocast(device, bf16):
        for batch in tqdm(batches.iterate(), total=len(batches), desc=desc, leave=False, mininterval=2,
                          disable=not bars(progress)):
            batch = to_device(batch, device)
            preds, stats = kind.evaluate_batch(task, model, batch, tokenizer, generation)
            refs = kind.references(task, batch, tokenizer)
            for n, (i, p, r) in enumerate(zip(batch["index"].tolist(), preds, refs)):
                predictions[i], references[i] = p, r
                calibration[i] = None if stats is None else stats[n]
    return predictions, references, None if None in calibration else calibration


def validate(setup: Setup, progress: bool = True) -> tuple[dict[str, float], float | None]:
    """The task's scores on the validation split, and the generated outputs' mean length in words
    (None for labels and tags): the report's per-evaluation length curve."""
    preds, refs, _ = evaluate(setup.kind, setup.task, setup.model, setup.data["validation"], setup.tokenizer,
                              setup.device, setup.generation, "validation", progress, bf16=setup.bf16)
    return setup.task.score(preds, refs).corpus, mean_words(preds)


def test(setup: Setup, progress: bool = True) -> tuple[list[Any], list[Any], MetricResult, float]:
    """Predictions, references, the task's scores (with calibration where the kind has class
    probabilities) and the seconds it took, on the test split."""
    started = time.time()
    preds, refs, result = score_split(setup.kind, setup.task, setup.model, setup.data["test"], setup.tokenizer,
                                      setup.device, setup.generation, progress, bf16=setup.bf16)
    return preds, refs, result, time.time() - started


def score_split(kind: ModelKind, task: Task, model: torch.nn.Module, batches: Batches, tokenizer: Any,
                device: torch.device, generation: dict[str, Any], progress: bool = True,
                bf16: bool = False) -> tuple[list[Any], list[Any], MetricResult]:
    """Predictions, references and the task's scores, with calibration where the kind has class
    probabilities: what a run's test, and `harness evaluate` on other test data, report."""
    preds, refs, calibration = evaluate(kind, task, model, batches, tokenizer, device, generation, "test", progress,
                                        bf16=bf16)
    result = task.score(preds, refs)
    if calibration is not None:
        per_example = [{**stats, **extra} for stats, extra in zip(result.per_example, calibration)]
        result = MetricResult(corpus={**result.corpus, **calibration_aggregate(per_example)}, per_example=per_example,
                              info=result.info)
    return preds, refs, result


# ---- the run ----------------------------------------------------------------------------------

def run(cfg: RunConfig, store: Store, source: DataSource, device: torch.device | None = None,
        progress: bool = True, oom_retry: dict[str, Any] | None = None) -> RunRecord:
    """Trains, selects and tests one configuration; returns the record it stored.

    `oom_retry` (set by `run_or_record_failure` after running out of GPU memory): each batch of the
    configured size is cut into `oom_retry["grad_accum"]` micro-batches whose gradients add up to one
    optimizer step, the same effective batch; the record keeps the configuration and hash it was
    asked for, and says so under "oom_retry".
    """
    cfg = with_parent(cfg)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # the peak recorded below is this run's, also in a long-lived pool worker
        torch.cuda.reset_peak_memory_stats(device)
    setup = prepare(cfg, store, source, device, grad_accum=oom_retry["grad_accum"] if oom_retry else 1)
    state = TrainState(generator=torch.Generator().manual_seed(cfg.seed))
    started = time.perf_counter()
    setup.strategy.start(setup.ctx)
    state.start_seconds = time.perf_counter() - started
    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state = -math.inf, -1, None
    main = setup.task.main_metric
    for epoch in range(1, setup.epochs + 1):
        means = train_epoch(setup, epoch, state, progress)
        seconds, samples = means.pop("_seconds"), means.pop("_samples")
        val_scores, val_length = validate(setup, progress)
        history.append({"epoch": epoch, "train": means, "validation": val_scores, "validation_length": val_length,
                        "train_seconds": seconds, "samples_per_second": samples / seconds if seconds else None})
        if progress:
            tqdm.write(f"{cfg.task}/{cell_name(cfg.reward, cfg.reward_params)} seed {cfg.seed} epoch {epoch}: "
                       f"loss {means['loss']:.4f}  "
                       f"val {main} {val_scores[main]:.2f}  {samples / seconds:.0f} samples/s", file=sys.stderr)
        if val_scores[main] > best_score:  # select: keep the best epoch's weights
            best_score, best_epoch = val_scores[main], epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in setup.model.state_dict().items()}
        elif epoch - best_epoch >= cfg.settings.patience:
            break
    setup.model.load_state_dict(best_state)
    preds, refs, test_result, eval_seconds = test(setup, progress)
    checkpoint = None
    if store.keep_checkpoints or cfg.reward in {cls.init_from for cls in REWARDS.values() if cls.init_from}:
        path = store.save_checkpoint(cfg.run_hash(), best_state)
        checkpoint = {"file": str(path.relative_to(store.root)), "bytes": path.stat().st_size}
        if store.keep_checkpoints:
            print(f"{cfg.task} {cfg.reward} seed {cfg.seed}: kept checkpoint {path} "
                  f"({checkpoint['bytes'] / 2 ** 20:.1f} MiB)", file=sys.stderr)
    record = make_record(setup, state, history, best_epoch, preds, refs, test_result, eval_seconds, oom_retry,
                         checkpoint)
    store.save(record)
    return record


def make_record(setup: Setup, state: TrainState, history: list[dict[str, Any]], best_epoch: int, preds: list[Any],
                refs: list[Any], test_result: MetricResult, eval_seconds: float,
                oom_retry: dict[str, Any] | None, checkpoint: dict[str, Any] | None = None) -> RunRecord:
    """The completed run's record: config, scores, history, per-example statistics, timings."""
    cfg, device = setup.cfg, setup.device
    return RunRecord.completed(
        cfg, model=cfg.settings.model or setup.task.default_model, generation=setup.generation,
        init_from=setup.init_from, main_metric=setup.task.main_metric, best_epoch=best_epoch,
        validation=history[best_epoch - 1]["validation"], test=test_result.corpus,
        metric_info=test_result.info, history=history, steps=state.step_log,
        test_examples=[{"prediction": p, "reference": r, **stats}
                       for p, r, stats in zip(preds, refs, test_result.per_example)],
        timing={"total_seconds": time.time() - setup.started, "train_seconds": state.seconds,
                "start_seconds": state.start_seconds,
                "test_eval_seconds": eval_seconds,
                "train_samples_per_second": state.samples / state.seconds if state.seconds else None,
                "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None},
        environment={**environment(), "precision": "bf16" if setup.bf16 else "fp32"}, oom_retry=oom_retry or None,
        model_kind=setup.kind.name if setup.kind.name != setup.task.kind else None, policy_dropout=setup.dropout,
        checkpoint=checkpoint)


def run_or_record_failure(cfg: RunConfig, store: Store, source: DataSource, progress: bool = True,
                          device: str | None = None) -> RunRecord:
    """Runs one cell on `device` (None: CUDA where there is one); a refusal or an exception becomes a
    stored record instead of stopping the grid.

    Out of GPU memory, the run is retried once with half the batch and 2-step gradient accumulation
    (the same effective batch); its record says so under "oom_retry".
    """
    cfg = with_parent(cfg)  # a configuration built by hand names its parent as the plan's do
    oom_retry = None
    try:
        try:
            return run(cfg, store, source, torch.device(device) if device else None, progress=progress)
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
        return run(cfg, store, source, torch.device(device) if device else None, progress=progress,
                   oom_retry=oom_retry)
    except RunRefused as refusal:
        record = RunRecord.refused(cfg, str(refusal))
    except (KeyboardInterrupt, SystemExit, DataFormatError, StoreError):  # bad input or an unwritable
        raise  # store stops the grid and records nothing
    except Exception as err:  # noqa: BLE001 - any failure of one cell is recorded, the grid goes on
        record = RunRecord.failed(cfg, err, traceback.format_exc(), oom_retry=oom_retry or None)
    store.save(record)
    return record
