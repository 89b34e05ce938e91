"""REINFORCE against a reward head refit online on the true metric (a learned baseline, not RLHF)."""
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

    A learned-reward baseline, not RLHF (that is `rlhf`): r_φ (`LearnedRewardStrategy`, a head over
    the frozen starting model's features) regresses the true sentence metric of the policy's own
    fresh samples, one Adam step on (1/N) Σ (r_φ(x, y_n) − r(y_n))² per training step, after
    predicting them, for the whole run. The policy is driven by r̂ and never reads the metric
    directly, but the head is refit online on metric values of exactly the outputs the policy now
    produces: an oracle-supervised reward that cannot be exploited for long, unlike the frozen
    reward model of Ziegler et al. 2019 / Stiennon et al. 2020 / Ouyang et al. 2022, and unlike
    anything available with human labels. Read it as REINFORCE with a smoothed, lagged metric.
    Baseline: the batch mean of r̂. Logged before the head's update, i.e. on samples it has not
    seen: rm_mse, and rm_rank_corr = Spearman's ρ between r̂ and the true metric (how well the head
    ranks samples, which is all REINFORCE with a baseline uses). Normalisation: log π(y_n) summed
    over the sample's actions (the policy gradient of a sequence-level reward), mean over samples.
    """

    num_samples: int = num_samples_param()

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
