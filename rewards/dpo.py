"""Direct preference optimisation, offline, on a fixed set of simulated preference pairs."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rewards._preferences import Annotator, PreferenceSet, build_preferences, flip_rate_param, temperature_param
from rewards._sampling import Objective, SamplingStrategy, chosen_minus_rejected, generates
from rewards.base import StepContext, mean_over_mask, param, register_reward


@register_reward("dpo")
class DPO(SamplingStrategy):
    """loss = −(1/|P|) Σ_P log σ(β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]) + α·CE, fixed pairs.

    Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
    Model", offline as published: on a fixed preference set, against the frozen starting (`ce`)
    model π_ref. The set is built once in `start` exactly as `rlhf`'s (same pairs for the same task,
    model and seed): two samples per training input from the ce policy (the first
    `preference_inputs`; 0: all), judged by a simulated annotator over the task's sentence metric m —
    it prefers y1 with probability σ((m(y1) − m(y0))/τ) (Bradley–Terry, temperature τ), then its
    choice is flipped with probability `flip_rate`; ties state no preference; a share `heldout` is
    kept out, as for rlhf's reward model. Each training batch brings the pairs of its own inputs,
    so one epoch is one pass over the set; P are those that state a preference and are not held
    out (`pairs`). log π is summed over each sample's actions (the sequence log-probability); mean
    over pairs. Estimator: the exact gradient of this loss on the batch's pairs; no baseline (the
    rejected sample of each pair is the comparison; `baseline` logs its metric). Logged: `dpo`, `margin` (the implicit reward margin), `accuracy` (share of pairs
    whose margin favours the chosen sample), the metric of chosen and rejected samples, and the
    data (`preference_pairs`, `preference_heldout`, `preference_ties`, `annotator_agreement`).
    No policy samples are drawn, so no `reward` is logged; `kl` is estimated on the pairs (samples
    of π_ref) by importance weighting. Deviation: the α·CE mix of every sampling strategy (α = 0
    for the paper's loss). The online variant is `online_dpo`.
    """

    beta: float = param(0.1, "β: inverse temperature of the implicit reward β·log(π/π_ref)", min=0.0)
    preference_inputs: int = param(0, "training inputs the fixed preference set is drawn from (the first N; 0: all)",
                                   min=0)
    temperature: float = temperature_param()
    flip_rate: float = flip_rate_param()
    heldout: float = param(0.1, "share of the preference pairs held out (as rlhf holds them out of its reward "
                                "model, so both learn from the same pairs)", min=0.0, max=0.9)

    def __post_init__(self) -> None:
        self.prefs: PreferenceSet | None = None
        self.fixed_terms: dict[str, torch.Tensor] = {}

    def start(self, ctx: StepContext) -> None:
        self.prefs = build_preferences(ctx, Annotator(self.temperature, self.flip_rate), self.preference_inputs,
                                       self.heldout, features=False)
        self.fixed_terms = self.prefs.terms(next(self.reference(ctx).parameters()).device)

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        if self.prefs is None:
            raise RuntimeError("dpo builds its preference set in start(); call it before training")
        samples, which, _ = self.prefs.pair_samples(batch, generates(ctx))
        if not len(which):  # none of this batch's inputs has a pair
            zero = logits.sum() * 0.0
            terms = {k: zero.detach() for k in ("dpo", "margin", "accuracy", "pairs", "chosen_metric", "rejected_metric",
                                                "baseline")}
            return Objective(zero, samples, {**terms, **self.fixed_terms}, reference=samples,
                             sampled_from_reference=True)
        device = logits.device
        new = ctx.policy.log_prob(ctx.model, batch, samples, logits=logits)
        with torch.no_grad():
            reference = ctx.policy.log_prob(self.reference(ctx), batch, samples)
        chosen = self.prefs.judged.chosen[which].to(device)
        used = self.prefs.trainable[which].to(device)
        margin = self.beta * chosen_minus_rejected(new.logprob - reference.logprob, chosen)
        dpo = mean_over_mask(-F.logsigmoid(margin), used)
        metric = self.prefs.scores[which].to(device)
        chosen_metric = metric.gather(1, chosen.unsqueeze(1)).squeeze(1)
        rejected_metric = metric.gather(1, (1 - chosen).unsqueeze(1)).squeeze(1)
        detached_margin = margin.detach()
        terms = {"dpo": dpo.detach(), "margin": mean_over_mask(detached_margin, used),
                 "accuracy": mean_over_mask((detached_margin > 0).float(), used), "pairs": used.sum().float(),
                 "chosen_metric": mean_over_mask(chosen_metric, used),
                 "rejected_metric": mean_over_mask(rejected_metric, used),
                 "baseline": mean_over_mask(rejected_metric, used), **self.fixed_terms}
        return Objective(dpo, new, terms, reference=reference, sampled_from_reference=True)
