"""What the sampling-family strategies share (registers no strategy).

`SamplingStrategy` is the template: CE, the warm-up switch, the α·CE mix and the diagnostics every
sampling strategy logs (kl, entropy, sample_length); a subclass supplies `objective`, its own
policy-gradient-style term, and where it needs them `start` (run-level data: preference sets, a
frozen reward model) and `rollout` (samples drawn once per batch for several `updates`). `LearnedRewardStrategy` adds the reward head r_φ(x, y) that
`reward_model` refits online on the metric (`rlhf` trains a frozen one: `rewards._preferences`). The remaining helpers are the
pieces more than one strategy uses: REINFORCE on summed log-probabilities, the KL estimates,
rollouts and PPO's clipped surrogate, group and leave-one-out baselines, and a rank correlation.

Samples of one input are adjacent (`Samples.index` is arange(B).repeat_interleave(K)), so values
per sample reshape to [B, K] groups.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from rewards.base import (BASELINE, LossOutput, RewardStrategy, Samples, StepContext, cross_entropy, entropy,
                          masked_mean, mean_over_mask, param, scored_log_probs)

REWARD_HEAD_HIDDEN = 64


# Samples per input of every strategy that draws a set per input, and of the `constant_reward` control
# that must match them (pairs, K = 2, are the preference strategies' own definition).
SAMPLES_PER_INPUT = 4


def num_samples_param(default: int = SAMPLES_PER_INPUT, minimum: int = 1) -> Any:
    return param(default, "samples K drawn per input (one batched generate call for sequences)", min=minimum)


@dataclass
class Objective:
    """A strategy's own loss term, the fresh samples behind it and its named diagnostics."""

    value: torch.Tensor
    samples: Samples
    terms: dict[str, torch.Tensor]
    # The samples re-scored under π_ref (token log-probs), when the strategy computed them anyway
    # (saves a reference pass).
    reference: Samples | None = None
    # The samples were drawn from π_ref, not from the policy (offline pairs): the KL estimate
    # importance-weights them (`kl_from_reference_samples`) instead of using k3.
    sampled_from_reference: bool = False


@dataclass
class SamplingStrategy(RewardStrategy):
    """loss = objective + α·CE; exactly CE while step < warmup·total_steps.

    The model trains without dropout (`policy_dropout = False`, recorded in the run's record): the
    samples, their log-probabilities under π_θ (and π_old) and under the frozen reference all come
    from one deterministic network, so at θ = θ_ref the KL is 0, PPO's ratio 1 and DPO's loss log 2.
    The logged `kl` is k3 (`kl_estimate`), an unbiased, non-negative estimate of KL(π_θ ‖ π_ref); where
    the objective has no reference term it is a diagnostic, computed on the logged steps only
    (`StepContext.diagnose`), which saves a reference pass over the samples on the others.
    The objective (samples, rewards, a learned reward head's update, PPO's buffer) is computed
    during warm-up too, so the diagnostics are logged from the first step and learned rewards
    start training before they drive the policy; only the returned loss is CE alone.
    Starts from the `ce` checkpoint of the same task, model and seed when one exists.
    """

    family = "sampling"
    needs_reference = True
    init_from = BASELINE
    policy_dropout = False

    alpha: float = param(0.5, "weight α of the cross-entropy mixed into the loss to stay fluent", min=0.0)
    warmup: float = param(0.0, "fraction of the training steps trained with CE alone before the sampled "
                               "objective switches on (for runs without a ce checkpoint)", min=0.0, max=1.0)

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        ce = cross_entropy(logits, batch["labels"])
        objective = self.objective(logits, batch, ctx)
        warming_up = ctx.step < self.warmup * ctx.total_steps
        loss = ce if warming_up else objective.value + self.alpha * ce
        terms = {"ce": ce.detach(), **objective.terms}
        samples = objective.samples
        reference = objective.reference
        if reference is None and ctx.reference is not None and ctx.diagnose:
            with torch.no_grad():
                reference = ctx.policy.log_prob(ctx.reference, batch, samples)
        if reference is not None:
            estimate = kl_from_reference_samples if objective.sampled_from_reference else kl_estimate
            terms["kl"] = masked_mean(estimate(samples, reference))
        with torch.no_grad():
            log_probs, _ = scored_log_probs(logits.detach(), batch["labels"])
            terms["entropy"] = masked_mean(entropy(log_probs))
        terms["sample_length"] = masked_mean(samples.lengths.float())
        return LossOutput(loss, terms)

    def reference(self, ctx: StepContext) -> torch.nn.Module:
        if ctx.reference is None:
            raise ValueError(f"reward {self.name!r} needs the frozen reference model in StepContext.reference")
        return ctx.reference


def generates(ctx: StepContext) -> bool:
    """Whether the run's outputs are generated sequences (the kind's `generates`), not labels or tags."""
    return bool(getattr(ctx.kind, "generates", False))


def kl_estimate(policy: Samples, reference: Samples) -> torch.Tensor:
    """[N] k3 of Schulman 2020 ("Approximating KL Divergence"): Σ_t (ρ_t − 1 − log ρ_t) over each
    sample's actions, ρ_t = π_ref(a_t)/π(a_t), detached.

    For a_t drawn from π (given the sample's earlier actions) each term is ≥ 0 and has expectation
    KL(π ‖ π_ref) at that position; their sum is an unbiased estimate of the KL between the two
    models' distributions over whole outputs (chain rule), exactly 0 where π = π_ref.
    """
    with torch.no_grad():
        return k3_per_action(policy, reference).sum(-1)


def kl_from_reference_samples(policy: Samples, reference: Samples) -> torch.Tensor:
    """[N] w·log w − w + 1, w = π(y)/π_ref(y) for outputs y drawn from π_ref, detached: an unbiased
    (E_ref[w log w] = KL(π ‖ π_ref), E_ref[w] = 1) and non-negative estimate of KL(π ‖ π_ref) from
    samples of the reference, 0 where π = π_ref. w is a whole output's ratio (no per-token form
    exists for samples of the other model); log w is clamped at 50 against overflow."""
    log_w = (policy.logprob.detach() - reference.logprob.detach()).clamp(max=50.0)
    return log_w.exp() * log_w - torch.expm1(log_w)


def policy_gradient(advantage: torch.Tensor, samples: Samples) -> torch.Tensor:
    """−(1/N) Σ_n A_n·log π(y_n): REINFORCE for one reward per sample, log π(y_n) summed over its actions.

    The sum is what the gradient of the expected reward has; dividing each sample's log-probability
    by its length would reweight samples by length and change the objective (Liu et al. 2025,
    "Understanding R1-Zero-Like Training: A Critical Perspective"). An empty sample (|y| = 0, a tag
    sequence without a scored word) contributes nothing.
    """
    return -(advantage.detach() * samples.logprob).sum() / max(samples.logprob.shape[0], 1)


# ---- rollouts: samples drawn once per batch, several optimiser steps on them (grpo, rlhf) ---------

@dataclass
class Rollout:
    """A batch's samples as `rollout` drew them, kept for each of the batch's `updates` steps."""

    samples: Samples  # detached: logprob and token_logprob are log π_old
    reference: Samples  # the samples under π_ref (detached)
    reward: torch.Tensor  # [N] what each sample was rewarded (before any baseline)
    advantage: torch.Tensor  # [N] fixed for every update of the rollout
    terms: dict[str, torch.Tensor]  # diagnostics of the rollout, logged with each of its updates


def detached(samples: Samples) -> Samples:
    return dataclasses.replace(samples, logprob=samples.logprob.detach(), token_logprob=samples.token_logprob.detach())


def rollout_of(strategy: RewardStrategy, batch: dict[str, Any], ctx: StepContext) -> Any:
    """The rollout the recipe drew for this batch; drawn now, without gradient, when called outside it."""
    if ctx.rollout is not None:
        return ctx.rollout
    with torch.no_grad():
        return strategy.rollout(batch, ctx)


@dataclass
class Surrogate:
    """PPO's clipped surrogate per action, and how far the ratios moved (detached)."""

    per_action: torch.Tensor  # [N, L] min(ρ·A, clip(ρ)·A), 0 where no action was taken
    mask: torch.Tensor  # [N, L]
    clip_fraction: torch.Tensor  # share of actions whose ratio lies outside [1 − ε, 1 + ε]
    ratio_deviation: torch.Tensor  # mean |ρ − 1| over actions


def clipped_surrogate(new: Samples, old: Samples, advantage: torch.Tensor, clip: float) -> Surrogate:
    """min(ρ_t·A, clip(ρ_t, 1 − ε, 1 + ε)·A) per action, ρ_t = π_θ(a_t)/π_old(a_t) (Schulman et al. 2017).

    The ratio is per action: a sequence's ratio is the product over its tokens and would overflow."""
    n = advantage.shape[0]
    mask = new.mask.reshape(n, -1)
    log_ratio = torch.where(mask, new.token_logprob.reshape(n, -1) - old.token_logprob.reshape(n, -1).detach(), 0.0)
    ratio = log_ratio.exp()
    a = advantage.detach().unsqueeze(-1)
    per_action = torch.where(mask, torch.minimum(ratio * a, ratio.clamp(1.0 - clip, 1.0 + clip) * a), 0.0)
    deviation = (ratio.detach() - 1.0).abs()
    return Surrogate(per_action, mask, mean_over_mask((deviation > clip).float(), mask),
                     mean_over_mask(deviation, mask))


def k3_per_action(new: Samples, reference: Samples) -> torch.Tensor:
    """[N, L] ρ − 1 − log ρ, ρ = π_ref(a_t)/π_θ(a_t), with gradient through π_θ (GRPO's KL term)."""
    n = new.token_logprob.shape[0]
    log_ratio = torch.where(new.mask, reference.token_logprob.detach() - new.token_logprob, 0.0).reshape(n, -1)
    return torch.expm1(log_ratio) - log_ratio


def group_advantages(reward: torch.Tensor, k: int, scale: bool = True) -> torch.Tensor:
    """[N] GRPO's group-relative advantage: (r − mean of the input's K rewards) / (their std + 1e-4)
    (Shao et al. 2024; std with Bessel's correction, as TRL); `scale=False` drops the division (Dr. GRPO,
    Liu et al. 2025). Sums to zero over each input's group either way."""
    group = reward.view(-1, k)
    advantage = group - group.mean(-1, keepdim=True)
    if scale:
        advantage = advantage / (group.std(-1, keepdim=True) + 1e-4)
    return advantage.flatten()


def leave_one_out_baseline(reward: torch.Tensor, k: int) -> torch.Tensor:
    """[N] RLOO's baseline: the mean reward of the input's other K − 1 samples (Ahmadian et al. 2024)."""
    group = reward.view(-1, k)
    return ((group.sum(-1, keepdim=True) - group) / (k - 1)).flatten()


def spearman(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman's ρ with average ranks for ties; 0 when either side is constant (nothing to rank)."""
    rx, ry = _average_ranks(x.float()), _average_ranks(y.float())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = (rx.square().sum() * ry.square().sum()).sqrt()
    return torch.where(denominator > 0, (rx * ry).sum() / denominator.clamp_min(1e-12), 0.0)


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties sharing their mean rank; O(N²), N being one step's samples."""
    less = (x.unsqueeze(0) < x.unsqueeze(1)).sum(1)
    equal = (x.unsqueeze(0) == x.unsqueeze(1)).sum(1)
    return less + (equal + 1) / 2


# ---- pairs of samples (rlhf, dpo, online_dpo; the annotator is in `rewards._preferences`) ------

def chosen_minus_rejected(values: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """[B] value(chosen sample) − value(the other) from per-sample values [2B]."""
    pair = values.view(-1, 2)
    sign = 1.0 - 2.0 * chosen.to(pair.dtype)  # +1 when sample 0 is chosen, −1 when sample 1 is
    return sign * (pair[:, 0] - pair[:, 1])


# ---- a learned reward r_φ(x, y) (reward_model online; rlhf's frozen reward model) -------------

class RewardHead(torch.nn.Module):
    """r_φ: LayerNorm → Linear → GELU → Linear over the policy's `features`, with its own Adam.

    The LayerNorm puts hidden states, one-hot blocks and log-probabilities on one scale. The
    recipe's optimiser covers only the model, so the head carries its optimiser and is stepped in
    the strategy's `after_step` hook, from a backward pass of its own over detached features
    (which never reaches the model's gradients).
    """

    def __init__(self, dim: int, lr: float):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, REWARD_HEAD_HIDDEN),
                                       torch.nn.GELU(), torch.nn.Linear(REWARD_HEAD_HIDDEN, 1))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)

    def fit(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


@dataclass
class LearnedRewardStrategy(SamplingStrategy):
    """A sampling strategy whose reward comes from a head r_φ(x, y) trained online on the samples.

    Features come from the frozen reference model (the policy's `features`: pooled input, the
    output's embedding, the reference's confidence in it), so they do not drift as the policy
    trains. Each step the head first predicts the rewards of the fresh samples — those
    predictions drive the policy and the rm_* diagnostics, as for unlabelled samples — and
    then, after the policy's optimiser step (`after_step`), takes one Adam step on them (on the
    mean of its micro-batches' losses under gradient accumulation).
    """

    rm_lr: float = param(1e-3, "learning rate of the reward head's own Adam optimiser", min=0.0)

    def __post_init__(self) -> None:
        self.head: RewardHead | None = None  # created on the first step, on the features' device
        self.head_losses: list[torch.Tensor] = []  # this step's, fitted in after_step

    def after_step(self, ctx: StepContext) -> None:
        if self.head_losses:
            self.head.fit(torch.stack(self.head_losses).mean() if len(self.head_losses) > 1 else self.head_losses[0])
            self.head_losses = []

    def learned_reward(self, ctx: StepContext, batch: dict[str, Any], samples: Samples,
                       head_loss: Callable[[torch.Tensor], torch.Tensor]
                       ) -> tuple[Samples, torch.Tensor, torch.Tensor]:
        """(the samples under π_ref, r_φ [N] before this step's update, head loss before it)."""
        with torch.no_grad():
            rescored, features = ctx.policy.features(self.reference(ctx), batch, samples)
        if self.head is None:
            self.head = RewardHead(features.shape[-1], self.rm_lr).to(features.device)
        with torch.autocast(features.device.type, enabled=False):
            predicted = self.head(features.float())
            loss = head_loss(predicted)
        self.head_losses.append(loss)
        return rescored, predicted.detach(), loss.detach()
