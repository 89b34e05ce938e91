"""Self-critical sequence training: the greedy output's reward is the baseline."""
from __future__ import annotations

from typing import Any

import torch

from rewards._sampling import Objective, SamplingStrategy, num_samples_param, policy_gradient
from rewards.base import StepContext, register_reward


@register_reward("scst")
class SCST(SamplingStrategy):
    """loss = −(1/N) Σ_n (r(y_n) − r(ŷ))·log π(y_n) + α·CE.

    Rennie et al. 2017, "Self-critical Sequence Training for Image Captioning". The REINFORCE
    estimator over y_n, K samples per input, with the reward of ŷ, the greedy (argmax) output for
    the same input, as the baseline (the model's own test-time output); r is the task's
    sentence-level metric, so only samples that beat ŷ are reinforced. Normalisation as in the
    paper: log π(y_n) is summed over the sample's actions (tokens, tags; one for a label), not
    divided by its length; mean over samples. Deviation: K = 4 samples per input by default (the
    paper draws one), matching the other sampling strategies and their control.
    """

    num_samples: int = num_samples_param()

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, self.num_samples)
        with torch.no_grad():
            greedy = ctx.policy.sample(ctx.model, batch, logits, 1, greedy=True)
        reward = ctx.policy.score(samples, batch)
        baseline = ctx.policy.score(greedy, batch)[samples.index]
        pg = policy_gradient(reward - baseline, samples)
        return Objective(pg, samples, {"pg": pg.detach(), "reward": reward.mean(), "baseline": baseline.mean()})
