"""Focal loss: down-weight well-classified positions so training focuses on hard ones."""
from __future__ import annotations

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, complement_power, masked_mean,
                          param, register_reward, scored_log_probs)


@register_reward("focal")
class FocalLoss(RewardStrategy):
    """loss = (1/M) Σ_m −(1 − p_m(y_m))^γ · log p_m(y_m); γ = 0 is CE.

    Objective: CE with each position weighted by (1 − p_y)^γ (differentiated, as in the paper), so
    well-classified positions count less. Estimator: exact, no sampling. Baseline: none.
    Normalisation: mean over the batch's M scored positions. Source: Lin et al. 2017, "Focal Loss for
    Dense Object Detection" (without the α class weights).
    """

    gamma: float = param(2.0, "focusing exponent γ; larger values ignore easy positions more", min=0.0)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        log_probs, labels = scored_log_probs(logits, batch["labels"])
        gold = at_gold(log_probs, labels)
        focal = masked_mean(-complement_power(gold, self.gamma) * gold)
        return LossOutput(focal, {"ce": masked_mean(-gold).detach(), "focal": focal.detach()})
