"""REINFORCE against a learned reward: a regression head that predicts the task metric."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rewards._sampling import (LearnedRewardStrategy, Objective, num_samples_param, policy_gradient,
                               spearman)
from rewards.base import StepContext, register_reward


@register_reward("reward_model")
class RewardModel(LearnedRewardStrategy):
    """loss = −(1/N) Σ_n (r̂_n − mean r̂)·log π(y_n) + α·CE,  r̂ = r_φ(x, y), log π summed over actions.

    The policy never sees the metric, only a learned estimate of it (the reward-model setting of
    Ziegler et al. 2019 and Stiennon et al. 2020, with the metric standing in for the labeller).
    r_φ (`LearnedRewardStrategy`) regresses the sentence metric of the policy's own samples, one
    Adam step on (1/N) Σ (r_φ(x, y_n) − r(y_n))² per training step, after predicting them; the
    baseline is the batch mean of r̂. Logged before that update, i.e. on samples the head has not
    seen: rm_mse, and rm_rank_corr = Spearman's ρ between r̂ and the true metric (how well the head
    ranks samples, which is all REINFORCE with a baseline uses). Normalisation: log π(y_n) summed
    over the sample's actions (the policy gradient of a sequence-level reward), mean over samples.
    """

    num_samples: int = num_samples_param(2)

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, self.num_samples)
        reward = ctx.policy.score(samples, batch)
        reference, predicted, mse = self.learned_reward(
            ctx, batch, samples, lambda r: F.mse_loss(r, reward))
        baseline = predicted.mean()
        pg = policy_gradient(predicted - baseline, samples)
        return Objective(pg, samples, {"pg": pg.detach(), "reward": reward.mean(), "rm_reward": baseline,
                                       "baseline": baseline, "rm_mse": mse,
                                       "rm_rank_corr": spearman(predicted, reward)},
                         reference=reference)
