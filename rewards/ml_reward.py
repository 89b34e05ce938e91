"""Maximum-likelihood reward: CE plus a bonus on the probability of the correct answer."""
from __future__ import annotations

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, masked_mean, param,
                          register_reward, scored_log_probs)


@register_reward("ml_reward")
class MLReward(RewardStrategy):
    """loss = CE − λ·(1/M) Σ_m p_m(y_m).

    The reward p_y is bounded and its gradient p_y·(1 − p_y) peaks at p_y = ½, so unlike
    −log p_y it adds pressure on examples that are half-learnt rather than on hopeless ones.
    Expected-reward view of maximum likelihood (cf. Norouzi et al. 2016, "Reward Augmented
    Maximum Likelihood for Neural Structured Prediction").
    """

    lam: float = param(1.0, "weight λ of the reward on the gold-class probability p_y", min=0.0)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        log_probs, labels = scored_log_probs(logits, batch["labels"])
        gold = at_gold(log_probs, labels)
        ce = masked_mean(-gold)
        reward = masked_mean(gold.exp())
        return LossOutput(ce - self.lam * reward, {"ce": ce.detach(), "p_gold": reward.detach()})
