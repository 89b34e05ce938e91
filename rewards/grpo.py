"""Group relative policy optimisation: K samples per input, group-relative advantages, clipped ratio."""
from __future__ import annotations

from typing import Any

import torch

from rewards._sampling import (Objective, Rollout, SamplingStrategy, clipped_surrogate, detached,
                               group_advantages, k3_per_action, num_samples_param, rollout_of)
from rewards.base import StepContext, param, register_reward


@register_reward("grpo")
class GRPO(SamplingStrategy):
    """loss = −(1/N) Σ_n (1/|y_n|) Σ_t [min(ρ_nt·Â_n, clip(ρ_nt, 1 − ε, 1 + ε)·Â_n) − β·k3_nt] + α·CE.

    Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
    Models" (GRPO). `rollout` draws K samples per input from π_old (the policy at the batch's start)
    and rewards each with the task's sentence metric r. Advantage (no value model): the
    group-relative Â_n = (r_n − mean of the input's K rewards) / (their std + 1e-4), for every
    action of y_n; the group mean is the baseline. Each of the batch's `updates` (μ) optimiser steps
    re-scores the samples under π_θ: ρ_nt = π_θ(a_nt)/π_old(a_nt) per action (exactly 1 on the first
    update). The KL to the frozen starting model is a loss term, not a reward penalty: per action
    k3_nt = π_ref/π_θ − log(π_ref/π_θ) − 1, weight β. Normalisation: the paper's 1/|y_n| per sample,
    mean over samples. `dr_grpo` applies Liu et al. 2025 ("Understanding R1-Zero-Like Training"): no
    division by the group's std, and no 1/|y_n| — the per-action terms are summed (a constant
    normaliser; the paper divides that sum by the generation budget, a constant factor that only
    rescales the loss against α·CE). μ = 1 by default, as TRL's GRPOTrainer (`num_iterations` = 1):
    one step per rollout, where ρ = 1 and the clip is inactive (the estimator is then the
    group-baselined policy gradient); μ > 1 reuses each rollout at μ times the update cost. Deviations: K = 4 by default (the paper samples 64); the α·CE
    mix of every sampling strategy (α = 0 for the paper's objective); the prompts are the recipe's
    training batches.
    """

    num_samples: int = num_samples_param(minimum=2)
    clip: float = param(0.2, "PPO clip range ε of the per-action probability ratio", min=0.0)
    kl_coef: float = param(0.04, "weight β of the per-action k3 KL to the reference in the loss", min=0.0)
    dr_grpo: bool = param(False, "Dr. GRPO (Liu et al. 2025): no std scaling of advantages, no 1/|y| normaliser",
                          choices=(False, True))
    updates: int = param(1, "optimiser steps μ on each batch's rollout (the first has ratio 1)", min=1)

    def rollout(self, batch: dict[str, Any], ctx: StepContext) -> Rollout:
        samples = ctx.policy.sample(ctx.model, batch, None, self.num_samples)
        reference = ctx.policy.log_prob(self.reference(ctx), batch, samples)
        reward = ctx.policy.score(samples, batch)
        advantage = group_advantages(reward, self.num_samples, scale=not self.dr_grpo)
        spread = reward.view(-1, self.num_samples).std(-1).mean()
        return Rollout(detached(samples), detached(reference), reward, advantage,
                       {"reward": reward.mean(), "baseline": reward.mean(), "reward_std": spread})

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        rollout = rollout_of(self, batch, ctx)
        new = ctx.policy.log_prob(ctx.model, batch, rollout.samples, logits=logits)
        surrogate = clipped_surrogate(new, rollout.samples, rollout.advantage, self.clip)
        per_action = surrogate.per_action - self.kl_coef * k3_per_action(new, rollout.reference)
        per_sample = torch.where(surrogate.mask, per_action, 0.0).sum(-1)
        if not self.dr_grpo:
            per_sample = per_sample / surrogate.mask.sum(-1).clamp_min(1)
        value = -per_sample.sum() / max(per_sample.shape[0], 1)
        return Objective(value, new, {"pg": value.detach(), **rollout.terms, "clip_fraction": surrogate.clip_fraction,
                                      "ratio_deviation": surrogate.ratio_deviation}, reference=rollout.reference)
