"""Self-adjusting dice loss for data-imbalanced tasks (Li et al. 2020), mixed with CE."""
from __future__ import annotations

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, complement_power, masked_mean,
                          param, register_reward, scored_log_probs)


@register_reward("dice")
class DiceLoss(RewardStrategy):
    """CE + w · self-adjusting dice loss summed over every class (Li et al. 2020, both terms).

    Objective: loss = CE + w·(1/M) Σ_m Σ_k (1 − DSC_mk), one-vs-rest per class k, with
    x_mk = (1 − p_m(k))^α·p_m(k), y_mk = 1[y_m = k] and
    DSC_mk = (2·x_mk·y_mk + γ) / (x_mk + y_mk + γ):
    for the gold class (2x + γ)/(x + 1 + γ), for every other class γ/(x + γ).
    Estimator: exact (every class, no sampling). Baseline: none. Normalisation: summed over the C
    classes as the released code does, averaged over the batch's M scored positions.
    Source: Li et al. 2020, "Dice Loss for Data-imbalanced NLP Tasks" (ACL), the self-adjusting DSC of their
    Section 3 applied per position, summed over classes as in their released code
    (ShannonAI/dice_loss_for_NLP, loss/dice_loss.py, `_multiple_class`). Differences: the paper
    trains on the dice loss alone, here it is added to CE with weight w (w = 0 is CE); the released
    code's denominator sums x and y over the whole batch, here each position has its own ratio, as in
    the paper's formula; no OHEM.
    Behaviour: x peaks at p = 1/(1 + α), so the gold term alone pushes an easy position (p_y near 1)
    back towards 1/(1 + α); the other classes' terms push their p_k towards 0, which outweighs it for
    α = 1, γ > 0: easy and hard positions are both pushed up, easy ones much less (the "self-
    adjusting" down-weighting). For α < 1 very easy positions can still be pushed down slightly; a
    confidently wrong class (p_k > 1/(1 + α)) is pushed further up by its own term (CE corrects it);
    and with two classes and α = 1 the two terms depend on p(1 − p) alone, so the dice term only
    sharpens whichever class leads and the label signal is CE's.
    """

    family = "metric"

    alpha: float = param(1.0, "self-adjusting exponent α on (1 − p_k); 0 is the plain soft dice", min=0.0)
    gamma: float = param(1.0, "additive smoothing γ of each dice ratio (0: the non-gold terms are constant)",
                         min=0.0)
    weight: float = param(1.0, "weight w of the dice loss added to CE", min=0.0)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        log_probs, labels = scored_log_probs(logits, batch["labels"])
        ce = masked_mean(-at_gold(log_probs, labels))
        x = complement_power(log_probs, self.alpha) * log_probs.exp()  # [M, C]
        tiny = torch.finfo(x.dtype).tiny  # γ = 0 and x = 0: the 0/0 of a non-gold term is its limit 0
        other = 1.0 - self.gamma / (x + self.gamma).clamp_min(tiny)
        x_gold = at_gold(x, labels)
        gold = 1.0 - (2.0 * x_gold + self.gamma) / (x_gold + 1.0 + self.gamma)
        per_position = other.scatter(-1, labels.unsqueeze(-1), gold.unsqueeze(-1)).sum(-1)
        dice = masked_mean(per_position)
        return LossOutput(ce + self.weight * dice, {"ce": ce.detach(), "dice": dice.detach()})
