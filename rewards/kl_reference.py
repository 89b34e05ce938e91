"""KL regularisation towards the frozen starting model."""
from __future__ import annotations

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, masked_mean, param,
                          register_reward, scored_log_probs)


@register_reward("kl_reference")
class KLReference(RewardStrategy):
    """loss = CE + β·(1/M) Σ_m KL(p_m ‖ p_ref,m), KL(p ‖ r) = Σ_k p_k (log p_k − log r_k).

    p_ref comes from the frozen starting model under teacher forcing; the term limits how far
    fine-tuning drifts from the pretrained distribution (the KL penalty of Jaques et al. 2017
    and Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences").
    """

    needs_reference = True

    beta: float = param(0.1, "weight β of KL(p ‖ p_ref) to the frozen reference model", min=0.0)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        if ctx.reference is None:
            raise ValueError(f"reward {self.name!r} needs the frozen reference model "
                             "in StepContext.reference")
        with torch.no_grad():
            ref_logits = ctx.forward(ctx.reference, batch)
        log_probs, labels = scored_log_probs(logits, batch["labels"])
        ref_log_probs, _ = scored_log_probs(ref_logits, batch["labels"])
        ce = masked_mean(-at_gold(log_probs, labels))
        kl = masked_mean((log_probs.exp() * (log_probs - ref_log_probs)).sum(-1))
        return LossOutput(ce + self.beta * kl, {"ce": ce.detach(), "kl": kl.detach()})
