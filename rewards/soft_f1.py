"""Soft F1: a differentiable F1 from expected (probability-weighted) counts, added to CE."""
from __future__ import annotations

import torch

from rewards.base import (LossOutput, RewardStrategy, StepContext, at_gold, masked_mean, mean_over_mask,
                          param, register_reward, row_log_probs, scored_log_probs)


def _soft_f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, smooth: float) -> torch.Tensor:
    """(2TP + s) / (2TP + FP + FN + s), elementwise; 1 where there is nothing to count."""
    denominator = 2 * tp + fp + fn + smooth
    ratio = (2 * tp + smooth) / denominator.clamp_min(torch.finfo(tp.dtype).tiny)
    return torch.where(denominator > 0, ratio, 1.0)


@register_reward("soft_f1")
class SoftF1(RewardStrategy):
    """CE + α·(1 − soft F1); tagging: token-level F1 per entity type (not entity F1); sequences: bag of tokens.

    Objective: loss = CE + α·(1 − soft F1), soft F1_k = (2TP_k + s) / (2TP_k + FP_k + FN_k + s).
    Estimator: exact expected counts under p (no sampling), over the batch's scored positions m, per
    class k. Source: the "soft F1" surrogate of a non-differentiable corpus F1 (Jansche 2005, "Maximum
    Expected F-Measure Training of Logistic Regression Models"). Baseline: none. Normalisation: the
    counts are batch sums, the F1 a macro mean over classes (per sequence, then averaged, for token
    sequences); CE is the token mean. On tagging the counts are per token, not per entity: a
    partly-tagged entity earns partial credit that seqeval's strict entity F1 (the task metric) does
    not give; on sequences the F1 ignores word order. Per kind:
    - tagging: P_mk = Σ_{tags c of type k} p_m(c) (B-X and I-X merged; O is no class),
      Y_mk = 1[y_m is a tag of type k]; TP_k = Σ_m P·Y, FP_k = Σ_m P·(1 − Y), FN_k = Σ_m (1 − P)·Y;
      macro mean over entity types.
    - classification: the same with P_mk = p_m(k), for the positive class k = 1 when C = 2,
      macro over all classes otherwise (the classes come from the kind's `class_groups`).
    - generated sequences, seq2seq and causal_lm (bag of tokens, per sequence b, then averaged
      over sequences): expected counts e_v = Σ_t p_t(v) and reference counts r_v = #{t: y_t = v}; TP = Σ_v min(e_v, r_v),
      FP = Σ_v e_v − TP, FN = Σ_v r_v − TP (under teacher forcing F1 = TP / length for s = 0).
    A class with nothing to count has F1 = 1; s > 0 also keeps classes absent from the batch from
    fixing the F1 at 0 (their F1 is 1 / (FP + 1), which still penalises false positives).
    """

    family = "metric"

    alpha: float = param(1.0, "weight α of the soft-F1 loss 1 − F1", min=0.0)
    smooth: float = param(1.0, "additive smoothing s of each soft F1 ratio", min=0.0)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        groups = ctx.kind.class_groups(ctx.task, logits.shape[-1], logits.device)
        if groups is None:  # generated sequences
            ce, f1_loss = self._bag_of_tokens(logits, batch["labels"])
        else:
            ce, f1_loss = self._macro(logits, batch["labels"], groups)
        return LossOutput(ce + self.alpha * f1_loss, {"ce": ce.detach(), "soft_f1": (1.0 - f1_loss).detach()})

    def _macro(self, logits: torch.Tensor, labels: torch.Tensor,
               groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, gold = scored_log_probs(logits, labels)
        ce = masked_mean(-at_gold(log_probs, gold))
        predicted = log_probs.exp() @ groups  # P [M, K]
        reference = groups[gold]  # Y [M, K]
        tp = (predicted * reference).sum(0)
        fp = (predicted * (1.0 - reference)).sum(0)
        fn = ((1.0 - predicted) * reference).sum(0)
        return ce, masked_mean(1.0 - _soft_f1(tp, fp, fn, self.smooth))

    def _bag_of_tokens(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, gold, mask = row_log_probs(logits, labels)
        counts = mask.sum(-1)
        ce = mean_over_mask(-at_gold(log_probs, gold), mask)
        expected = torch.where(mask.unsqueeze(-1), log_probs.exp(), 0.0).sum(1)  # e [B, V]
        reference = torch.zeros_like(expected).scatter_add_(1, gold, mask.float())  # r [B, V]
        tp = torch.minimum(expected, reference).sum(-1)
        f1 = _soft_f1(tp, expected.sum(-1) - tp, reference.sum(-1) - tp, self.smooth)
        return ce, masked_mean(1.0 - f1[counts > 0])
