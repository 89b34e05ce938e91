"""Plain cross-entropy: the baseline every other reward design is compared with."""
from __future__ import annotations

import torch

from rewards.base import LossOutput, RewardStrategy, StepContext, cross_entropy, register_reward


@register_reward("ce")
class CrossEntropy(RewardStrategy):
    """CE = −(1/M) Σ_m log p_m(y_m) over the M scored positions (maximum likelihood).

    Objective: the negative log-likelihood of the gold class at every scored position (label, tag,
    or gold-prefix token under teacher forcing). Estimator: exact, no sampling. Baseline: none.
    Normalisation: mean over the batch's M scored positions (tokens, not sequences). Source: maximum
    likelihood, the standard fine-tuning loss every other strategy is compared with.
    """

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        ce = cross_entropy(logits, batch["labels"])
        return LossOutput(ce, {"ce": ce.detach()})
