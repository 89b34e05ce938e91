"""Bounded reward for predictions that are both correct and confident."""
from __future__ import annotations

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, masked_mean, param,
                          register_reward, scored_log_probs)


@register_reward("confidence")
class ConfidenceReward(RewardStrategy):
    """loss = CE − λ·(1/M) Σ_m 1[argmax p_m = y_m ∧ p_m(y_m) ≥ τ]·p_m(y_m).

    Objective: CE plus a bounded reward in [0, 1] per position for a correct and confident
    prediction; the indicator is a constant (not differentiated), so the term only sharpens
    positions the model already gets right, leaving errors to CE. Estimator: exact, no sampling.
    Baseline: none. Normalisation: mean over the batch's M scored positions, for CE and the reward.
    Source: none; a design of this harness (a correctness-gated cousin of entropy minimisation).
    """

    lam: float = param(1.0, "weight λ of the confident-and-correct reward", min=0.0)
    threshold: float = param(0.0, "minimum p_y τ for a correct prediction to be rewarded", min=0.0, max=1.0)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        log_probs, labels = scored_log_probs(logits, batch["labels"])
        gold = at_gold(log_probs, labels)
        ce = masked_mean(-gold)
        p_gold = gold.exp()
        rewarded = (log_probs.argmax(-1) == labels) & (p_gold >= self.threshold)
        reward = masked_mean(p_gold * rewarded)
        return LossOutput(ce - self.lam * reward, {"ce": ce.detach(), "reward": reward.detach()})
