"""KL-regularised fine-tuning from the ce checkpoint, towards that checkpoint."""
from __future__ import annotations

import torch

from rewards.base import (BASELINE, LossOutput, RewardStrategy, StepContext, at_gold, masked_mean, param,
                          register_reward, scored_log_probs)


@register_reward("kl_reference")
class KLReference(RewardStrategy):
    """CE plus β·KL to a frozen copy of the ce checkpoint, trained on from that checkpoint.

    Objective: loss = CE + β·(1/M) Σ_m KL(p_m ‖ p_ref,m), KL(p ‖ r) = Σ_k p_k (log p_k − log r_k).
    Estimator: exact (the sum over every class or vocabulary entry, no sampling); p_ref comes from
    the reference model under the same teacher forcing. Baseline: none. Normalisation: mean over
    the batch's M scored positions, for CE and KL alike.
    Reference and start: the selected checkpoint of the `ce` run of the same task, model and seed
    (`init_from`; the recipe's reference is a frozen copy of the starting model), so the KL is 0 and
    the gradient is CE's at the first step (up to dropout, which the frozen reference does not apply),
    and the term then limits how far the extra epochs drift from the fine-tuned model. A reference at
    the pretrained model would not do: its task head (or decoder) is random, so its p_ref is close to
    uniform and KL(p ‖ uniform) = log C − H(p) is the confidence penalty again.
    Compared with `ce_continued`, which trains on from the same checkpoint with the same schedule.
    Source: the KL penalty of KL-regularised fine-tuning (Jaques et al. 2017, "Sequence Tutor";
    Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences").
    """

    needs_reference = True
    init_from = BASELINE

    beta: float = param(0.1, "weight β of KL(p ‖ p_ref) to the frozen ce checkpoint", min=0.0)

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
