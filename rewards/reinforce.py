"""REINFORCE with an immediate reward for every action and a running-mean baseline."""
from __future__ import annotations

from typing import Any

import torch

from rewards._sampling import Objective, SamplingStrategy, num_samples_param
from rewards.base import StepContext, mean_over_mask, param, register_reward


@register_reward("reinforce")
class Reinforce(SamplingStrategy):
    """loss = −(1/|A|) Σ_{a∈A} (r_a − b)·log π(a) + α·CE, r_a = +1 if a is the gold action, else −1.

    Williams 1992, "Simple Statistical Gradient-Following Algorithms for Connectionist
    Reinforcement Learning". A are the actions of K samples per input: the sampled label, every
    sampled tag, every generated token (right when it equals the reference token at that position,
    `Policy.token_correct`). b is an exponential moving average of the mean reward,
    b ← d·b + (1 − d)·mean(r), used before it is updated (so it never contains the rewards it
    judges) and started at the first batch's mean reward.
    """

    num_samples: int = num_samples_param(1)
    baseline_decay: float = param(0.9, "decay d of the running-mean reward baseline", min=0.0, max=1.0)

    def __post_init__(self) -> None:
        self.baseline: torch.Tensor | None = None

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, self.num_samples)
        reward = 2.0 * ctx.policy.token_correct(samples, batch) - 1.0
        mean_reward = mean_over_mask(reward, samples.mask)
        baseline = mean_reward if self.baseline is None else self.baseline
        pg = mean_over_mask(-(reward - baseline) * samples.token_logprob, samples.mask)
        updated = self.baseline_decay * baseline + (1.0 - self.baseline_decay) * mean_reward
        self.baseline = torch.where(samples.mask.any(), updated, baseline)  # no actions: nothing learnt
        return Objective(pg, samples, {"pg": pg.detach(), "reward": mean_reward, "baseline": baseline})
