"""Minimum risk training: minimise the expected metric loss over a renormalised sample set."""
from __future__ import annotations

from typing import Any

import torch

from rewards._sampling import Objective, SamplingStrategy, num_samples_param
from rewards.base import Samples, StepContext, param, register_reward


@register_reward("mrt")
class MRT(SamplingStrategy):
    """loss = (1/B) Σ_b Σ_k Q(y_bk)·(1 − r(y_bk)) + α·CE,  Q(y_bk) ∝ π(y_bk)^β = exp(β·log π(y_bk)).

    Shen et al. 2016, "Minimum Risk Training for Neural Machine Translation". Q is renormalised
    over the distinct samples among input b's K (a repeated sample would count twice), r is the
    task's sentence-level metric. The gradient, β Σ_k Q_k (r̄_Q − r_k) ∇log π(y_k), has the
    Q-expected reward r̄_Q as its baseline (logged as `baseline`). Normalisation as in the paper:
    log π(y) is summed over the output's actions (no division by its length), and the sharpness β
    defaults to the paper's 5e-3, which keeps Q spread over sentences whose log-probabilities differ
    by tens of nats. For a label or a short tag sequence that β makes Q nearly uniform over the
    distinct samples and the risk gradient small next to α·CE; raise β there (β = 1 makes Q = π
    renormalised over the sample set).
    """

    num_samples: int = num_samples_param(minimum=2)
    beta: float = param(5e-3, "sharpness β of Q ∝ π(y)^β over each input's samples (log π summed over actions)",
                        min=0.0)

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, self.num_samples)
        reward = ctx.policy.score(samples, batch).view(-1, self.num_samples)
        sharpened = (self.beta * samples.logprob).view(-1, self.num_samples)
        q = torch.softmax(sharpened.masked_fill(_repeated(samples, self.num_samples), -torch.inf), dim=-1)
        risk = (q * (1.0 - reward)).sum(-1).mean()
        expected = (q.detach() * reward).sum(-1).mean()
        return Objective(risk, samples, {"risk": risk.detach(), "reward": reward.mean(), "baseline": expected})


def _repeated(samples: Samples, k: int) -> torch.Tensor:
    """[B, K] True for a sample identical to an earlier sample of the same input."""
    actions = samples.actions.masked_fill(~samples.mask, -1).reshape(-1, k, samples.actions[0].numel())
    same = (actions.unsqueeze(2) == actions.unsqueeze(1)).all(-1)  # [B, K, K]: sample i equals sample j
    earlier = torch.ones(k, k, dtype=torch.bool, device=same.device).tril(-1)  # j < i
    return (same & earlier).any(-1)
