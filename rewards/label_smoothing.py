"""Label smoothing: fit a softened target instead of the one-hot gold class."""
from __future__ import annotations

import math

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, masked_mean, param,
                          register_reward, scored_log_probs)


def _xlogx(x: float) -> float:
    return x * math.log(x) if x > 0 else 0.0


@register_reward("label_smoothing")
class LabelSmoothing(RewardStrategy):
    """loss = (1/M) Σ_m KL(q_ε,m ‖ p_m), q_ε = (1 − ε)·onehot(y) + ε/C.

    Objective: fit the smoothed target q_ε instead of the one-hot gold class; computed as the
    smoothed cross-entropy (1 − ε)·CE + ε·(1/C)Σ_k −log p_k minus the constant entropy H(q_ε), so the
    value is a true KL (≥ 0, 0 at p = q_ε) with the same gradient, and ε = 0 gives CE exactly.
    Estimator: exact (every class, the whole vocabulary for sequences), no sampling. Baseline: none.
    Normalisation: mean over the batch's M scored positions. Source: Szegedy et al. 2016,
    "Rethinking the Inception Architecture for Computer Vision".
    """

    eps: float = param(0.1, "smoothing ε: mass spread uniformly over all C classes, in [0, 1)",
                       min=0.0, max=1.0)

    def validate(self) -> None:
        super().validate()
        if self.eps >= 1.0:
            raise ValueError(f"reward {self.name!r} parameter eps={self.eps!r} must be below 1 "
                             "(ε = 1 ignores the gold class)")

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        log_probs, labels = scored_log_probs(logits, batch["labels"])
        nll = -at_gold(log_probs, labels)
        uniform_nll = -log_probs.mean(-1)
        off = self.eps / log_probs.shape[-1]
        target_entropy = -(_xlogx(1.0 - self.eps + off) + (log_probs.shape[-1] - 1) * _xlogx(off))
        kl = masked_mean((1.0 - self.eps) * nll + self.eps * uniform_nll - target_entropy)
        return LossOutput(kl, {"ce": masked_mean(nll).detach(),
                               "uniform_ce": masked_mean(uniform_nll).detach(), "kl_to_target": kl.detach()})
