"""Expected accuracy: a differentiable stand-in for the per-example accuracy metric."""
from __future__ import annotations

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, masked_mean, mean_over_mask,
                          param, register_reward, row_log_probs)


@register_reward("expected_accuracy")
class ExpectedAccuracy(RewardStrategy):
    """loss = CE − α·(1/B') Σ_b (1/|S_b|) Σ_{t∈S_b} p_{b,t}(y_{b,t}).

    Objective: CE minus the expected per-example accuracy of a sample from the model; S_b are the
    scored positions of example b and B' the examples with any (for classification the reward is
    the batch mean of p_y). Estimator: exact (the expectation of a 0/1 accuracy is p_y; no
    sampling). Baseline: none. Normalisation: the reward is averaged per example, then over examples
    (macro, as the metric is), so long sequences do not outweigh short ones; CE is the usual token
    mean. Source: expected-metric training, cf. Smith & Eisner 2006, "Minimum Risk Annealing for
    Training Log-Linear Models".
    """

    family = "metric"

    alpha: float = param(1.0, "weight α of the expected-accuracy reward", min=0.0)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        log_probs, labels, mask = row_log_probs(logits, batch["labels"])
        gold = at_gold(log_probs, labels)
        counts = mask.sum(-1)
        has_scored = counts > 0
        ce = mean_over_mask(-gold, mask)
        per_example = torch.where(mask, gold.exp(), 0.0).sum(-1)[has_scored] / counts[has_scored]
        accuracy = masked_mean(per_example)
        return LossOutput(ce - self.alpha * accuracy,
                          {"ce": ce.detach(), "expected_accuracy": accuracy.detach()})
