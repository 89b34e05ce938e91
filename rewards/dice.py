"""Self-adjusting dice loss for data-imbalanced tasks, mixed with CE."""
from __future__ import annotations

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, complement_power, masked_mean,
                          param, register_reward, scored_log_probs)


@register_reward("dice")
class DiceLoss(RewardStrategy):
    """loss = CE + w·(1/M) Σ_m DSC_m, with x = (1 − p_y)^α·p_y and
    DSC = 1 − (2x + γ) / (x + 1 + γ).

    Li et al. 2020, "Dice Loss for Data-imbalanced NLP Tasks" (ACL), self-adjusting DSC for a
    gold class. x peaks at p_y = 1/(1 + α), so for α > 0 the term pushes p_y up only to that
    point: easy positions stop contributing and the hard (often minority-class) ones dominate.
    """

    family = "metric"

    alpha: float = param(1.0, "self-adjusting exponent α on (1 − p_y); 0 is the plain soft dice", min=0.0)
    gamma: float = param(1.0, "additive smoothing γ of the dice ratio", min=0.0)
    weight: float = param(1.0, "weight w of the dice term added to CE", min=0.0)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        log_probs, labels = scored_log_probs(logits, batch["labels"])
        gold = at_gold(log_probs, labels)
        ce = masked_mean(-gold)
        x = complement_power(gold, self.alpha) * gold.exp()
        dsc = masked_mean(1.0 - (2.0 * x + self.gamma) / (x + 1.0 + self.gamma))
        return LossOutput(ce + self.weight * dsc, {"ce": ce.detach(), "dsc": dsc.detach()})
