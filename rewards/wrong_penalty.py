"""Negative reward on the probability mass given to wrong answers."""
from __future__ import annotations

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, masked_mean, param,
                          register_reward, scored_log_probs)


@register_reward("wrong_penalty")
class WrongPenalty(RewardStrategy):
    """loss = CE + λ·(1/M) Σ_m w_m, a penalty w_m on the probability of wrong classes.

    Objective: per position either
    squared: w = Σ_{k≠y} p_k²   (penalises concentrated wrong mass, like a Brier-score term), or
    max:     w = max_{k≠y} p_k  (penalises only the strongest competitor, a margin-style term);
    CE only looks at p_y, this term also shapes where the remaining mass goes. Estimator: exact
    (every class), no sampling. Baseline: none. Normalisation: mean over the batch's M scored
    positions. Source: Brier 1950 for the squared form; cf. the complement objective of Chen et al.
    2019, "Complement Objective Training".
    """

    lam: float = param(1.0, "weight λ of the penalty on wrong-class probability", min=0.0)
    form: str = param("squared", "squared: Σ_{k≠y} p_k²; max: max_{k≠y} p_k", choices=("squared", "max"))

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        log_probs, labels = scored_log_probs(logits, batch["labels"])
        ce = masked_mean(-at_gold(log_probs, labels))
        wrong = log_probs.exp().scatter(-1, labels.unsqueeze(-1), 0.0)  # p with the gold entry zeroed
        per_position = wrong.square().sum(-1) if self.form == "squared" else wrong.amax(-1)
        penalty = masked_mean(per_position)
        return LossOutput(ce + self.lam * penalty, {"ce": ce.detach(), "penalty": penalty.detach()})
