"""The reward-strategy interface and its registry (modelled on fairseq's `criterions/`).

A strategy is a dataclass whose fields are its parameters (with defaults, help and ranges),
registered by name with `@register_reward("name")`. Its docstring states the objective, the
estimator (exact or sampled), the baseline (if any), the normalisation and the source; its first
line is what `harness list` prints. The recipe (`harness.run.recipe`) calls, per run
and per batch:

  start(ctx)                 once per run, before the first step (run-level state: heads, buffers)
  rollout(batch, ctx)        once per batch (per micro-batch under gradient accumulation), without
                             gradient, before its updates: e.g. samples and their old log-probs
  loss(logits, batch, ctx)   for each of the batch's `updates` optimiser steps (`ctx.rollout` holds
                             the rollout, `ctx.update` counts the updates): the loss and named,
                             detached diagnostic terms the recipe logs
  after_step(ctx)            after every optimiser step (e.g. a learned reward's own update)

`logits` are the model's outputs for the batch (classification [B, C]; tagging [B, T, C]; generated
sequences: teacher-forced [B, T, V]) and `batch["labels"]` the gold classes with IGNORE (-100) on
positions that are not scored. Everything a strategy may need beyond the batch comes through
`StepContext`: the model and tokenizer, the task and its model kind, a frozen reference model when
the strategy sets `needs_reference`, and the kind's `Policy`, which samples outputs and scores them
with the task's own metric, the same way for labels, tag sequences and generated text.
Imports the kind layer (`kinds`), never the harness.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
import torch.nn.functional as F

from kinds.base import IGNORE, Policy, Samples  # noqa: F401  (re-exported for strategies)

if TYPE_CHECKING:
    from kinds.base import ModelKind
    from tasks.base import Task


def param(default: Any, help: str, min: float | None = None, max: float | None = None,
          choices: tuple[Any, ...] | None = None) -> Any:
    """Declare a strategy parameter: its default, what it means and its valid range."""
    return field(default=default, metadata={"help": help, "min": min, "max": max, "choices": choices})


@dataclass
class StepContext:
    """What a strategy sees of its run; the recipe builds it once per run and replaces `step`,
    `update` and `rollout` for each step."""

    task: "Task"
    model: torch.nn.Module
    tokenizer: Any
    step: int  # optimiser steps taken so far
    total_steps: int
    # Teacher-forced logits of any model (the policy or the reference) on a batch.
    forward: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    policy: Policy
    reference: torch.nn.Module | None = None
    kind: "ModelKind | None" = None
    update: int = 0  # which of the batch's `updates` optimiser steps this is
    rollout: Any = None  # what `rollout` returned for this batch
    # The run's training batches (`harness.run.data.Batches`: `rows`, `lengths`, `batch_size` and the
    # kind, task and padding `collate` needs), for run-level data built in `start` (preference sets).
    train: Any = None
    seed: int = 0  # the run's seed, for run-level data that must not depend on what ran before
    bf16: bool = False  # the run computes under bf16 autocast (its `precision`), also in `start`
    # This step's terms are logged (every `log_every` steps and each epoch's last): diagnostics that
    # cost a model pass of their own (the KL of strategies whose objective has no reference term)
    # are computed on these steps only, and their epoch means average the steps that have them.
    diagnose: bool = True


@dataclass
class LossOutput:
    loss: torch.Tensor
    # Detached scalar tensors, logged without a host synchronisation inside the step.
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class RewardStrategy:
    """Base class: subclasses are turned into dataclasses by `register_reward`."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = "token"  # token | metric | sampling | control
    kinds: ClassVar[tuple[str, ...] | None] = None  # model kinds it supports; None: every kind
    needs_reference: ClassVar[bool] = False
    # Name of the strategy whose checkpoint (same task, model and seed) this one starts from.
    init_from: ClassVar[str | None] = None
    # The control this strategy's gain is measured against besides `ce` (same task, model and seed):
    # `register_reward` sets it to `ce_continued` for every strategy that starts from the `ce`
    # checkpoint, whose gain over `ce` otherwise includes the extra epochs of training.
    compared_with: ClassVar[str | None] = None
    # Optimiser steps taken on each batch (and its rollout): more than one for PPO epochs or GRPO
    # (a strategy may declare it as a parameter field instead, e.g. `updates: int = param(4, ...)`).
    updates: ClassVar[int] = 1
    # Dropout in the trained model unless the run's `policy_dropout` setting says otherwise: off for
    # the sampling strategies (their samples, old/new log-probabilities and KL need one network).
    policy_dropout: ClassVar[bool] = True
    # The logged term holding the reward the policy is optimised for: the report flags a run whose
    # optimised reward rose while its test metric fell (reward over-optimisation, Gao et al. 2023).
    optimised_reward: ClassVar[str] = "reward"

    def refuses(self, task: "Task", kind: str) -> str | None:
        """Why this strategy cannot run `task` as model kind `kind`, or None when it can."""
        if self.kinds is not None and kind not in self.kinds:
            return f"reward {self.name!r} supports {', '.join(self.kinds)} models, not {kind} ({task.name})"
        return None

    def start(self, ctx: StepContext) -> None:
        """Called once per run before the first step; `ctx.step` is 0."""

    def rollout(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> Any:
        """Called once per batch, under no_grad, before its `updates` steps; returns `ctx.rollout`."""
        return None

    def after_step(self, ctx: StepContext) -> None:
        """Called after every optimiser step."""

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def validate(self) -> None:
        """Checks every parameter against its declared range; raises ValueError naming it."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value, meta = getattr(self, f.name), f.metadata
            lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
            where = f"reward {self.name!r} parameter {f.name}={value!r}"
            if choices is not None and value not in choices:
                raise ValueError(f"{where} is not one of {list(choices)}")
            if lo is not None and value < lo:
                raise ValueError(f"{where} is below its minimum {lo}: {meta.get('help', '')}")
            if hi is not None and value > hi:
                raise ValueError(f"{where} is above its maximum {hi}: {meta.get('help', '')}")

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        raise NotImplementedError


REWARDS: dict[str, type[RewardStrategy]] = {}
# Plain cross-entropy: the baseline every strategy is compared with, and the checkpoint that
# `init_from = BASELINE` strategies continue from. Here, not in the report, so that the grid's
# planner and progress and the bench name it without importing the report's pandas.
BASELINE = "ce"
# CE continued from the `ce` checkpoint on the schedule of the strategies that start there.
CONTINUED_CONTROL = "ce_continued"


def register_reward(name: str) -> Callable[[type[RewardStrategy]], type[RewardStrategy]]:
    """Class decorator: makes the strategy a dataclass and registers it under `name`.

    A strategy that starts from the `ce` checkpoint and does not set `compared_with` itself is
    compared with the `ce_continued` control."""

    def wrap(cls: type[RewardStrategy]) -> type[RewardStrategy]:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is registered twice")
        cls = dataclass(cls)
        cls.name = name
        if "compared_with" not in vars(cls):
            from_ce = cls.init_from == BASELINE and name != CONTINUED_CONTROL
            cls.compared_with = CONTINUED_CONTROL if from_ce else None
        REWARDS[name] = cls
        return cls

    return wrap


def build_reward(name: str, params: dict[str, Any] | None = None) -> RewardStrategy:
    """Instantiates a registered strategy, with errors that name the bad key or value."""
    import rewards  # noqa: F401  (registers the built-in strategies)

    if name not in REWARDS:
        raise KeyError(f"unknown reward strategy {name!r}; known: {', '.join(sorted(REWARDS))}")
    cls = REWARDS[name]
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(params or {}) - known
    if unknown:
        raise KeyError(f"reward {name!r} has no parameter(s) {sorted(unknown)}; "
                       f"its parameters: {sorted(known) or 'none'}")
    strategy = cls(**(params or {}))
    strategy.validate()
    return strategy


# ---- helpers shared by the strategies -------------------------------------------------------

def scored_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattens any kind's logits to [M, C] and gold classes to [M], dropping unscored positions."""
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    keep = flat_labels != IGNORE
    return flat_logits[keep], flat_labels[keep]


def masked_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean that is 0 (with gradient graph intact) over an empty set of positions."""
    return values.sum() / max(values.numel(), 1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean cross-entropy over scored positions; 0 when every position is masked.

    Uses `ignore_index` rather than gathering the scored rows, which avoids copying the
    [positions, vocabulary] logits (and their gradient) for seq2seq models.
    """
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                            ignore_index=IGNORE, reduction="sum")
    return total / (labels != IGNORE).sum().clamp(min=1)


def scored_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 log-softmax [M, C] over the scored positions and their gold classes [M]."""
    flat_logits, flat_labels = scored_positions(logits, labels)
    return F.log_softmax(flat_logits.float(), dim=-1), flat_labels


def row_log_probs(logits: torch.Tensor,
                  labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 log-softmax kept per example, for losses that aggregate within a row.

    Returns log-probs [B, L, C], gold classes [B, L] (unscored positions set to class 0, so they
    can be gathered safely) and the scored mask [B, L]; classification rows have L = 1.
    """
    batch = logits.shape[0]
    log_probs = F.log_softmax(logits.float().reshape(batch, -1, logits.shape[-1]), dim=-1)
    rows = labels.reshape(batch, -1)
    mask = rows != IGNORE
    return log_probs, rows.masked_fill(~mask, 0), mask


def mean_over_mask(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is True; 0 (with gradient graph intact) where none is."""
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1)


def at_gold(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """values[..., y]: the entry of the gold class at every position."""
    return values.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats along the last axis, from log-probabilities.

    The clamp makes 0·log 0 = 0 (and its gradient 0) even for classes whose logit is −inf.
    """
    return -(log_probs.exp() * log_probs.clamp_min(torch.finfo(log_probs.dtype).min)).sum(-1)


def complement_power(log_p: torch.Tensor, exponent: float) -> torch.Tensor:
    """(1 − p)^exponent from log p, with finite gradients at p = 1 (and 0^0 = 1).

    1 − p comes from expm1 for precision near p = 1 and is clamped to the smallest normal float,
    so a fractional exponent never meets the infinite slope of x^γ at x = 0.
    """
    return (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny).pow(exponent)
