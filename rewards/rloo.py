"""REINFORCE leave-one-out: K samples per input, each judged against the mean reward of the others."""
from __future__ import annotations

from typing import Any

import torch

from rewards._sampling import (Objective, SamplingStrategy, leave_one_out_baseline, num_samples_param,
                               policy_gradient)
from rewards.base import StepContext, param, register_reward


@register_reward("rloo")
class RLOO(SamplingStrategy):
    """loss = −(1/N) Σ_n (R_n − (1/(K−1)) Σ_{j≠n} R_j)·log π(y_n) + α·CE,  R = r − β·(log π − log π_ref).

    Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
    Human Feedback in LLMs". K samples per input from the current policy, each a single action
    (the whole output); r is the task's sentence metric and R subtracts the KL penalty of the
    paper, β times the sample's log π/π_ref summed over its actions (detached). Baseline: the mean
    R of the input's other K − 1 samples (leave-one-out: never the sample's own reward, so the
    estimate stays unbiased). Normalisation: log π(y_n) summed over the sample's actions, mean over
    samples. One optimiser step per batch (on-policy). Deviation: the α·CE mix of every sampling
    strategy (α = 0 for the paper's objective).
    """

    num_samples: int = num_samples_param(minimum=2)
    kl_coef: float = param(0.05, "weight β of the KL penalty log π/π_ref in each sample's reward", min=0.0)

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, self.num_samples)
        with torch.no_grad():
            reference = ctx.policy.log_prob(self.reference(ctx), batch, samples)
        score = ctx.policy.score(samples, batch)
        reward = score - self.kl_coef * (samples.logprob.detach() - reference.logprob)
        baseline = leave_one_out_baseline(reward, self.num_samples)
        pg = policy_gradient(reward - baseline, samples)
        return Objective(pg, samples, {"pg": pg.detach(), "reward": score.mean(), "baseline": baseline.mean(),
                                       "penalised_reward": reward.mean()}, reference=reference)
