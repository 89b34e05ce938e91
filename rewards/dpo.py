"""Direct preference optimisation on simulated, noisy pairwise feedback."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rewards._sampling import (Objective, SamplingStrategy, chosen_minus_rejected, noise_param,
                               preferences)
from rewards.base import StepContext, mean_over_mask, param, register_reward


@register_reward("dpo")
class DPO(SamplingStrategy):
    """loss = −(1/|P|) Σ_P log σ(β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]) + α·CE.

    Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a
    Reward Model". Online: each step the policy draws two samples per input and a simulated
    annotator prefers the one with the higher sentence metric, wrongly with probability `noise`
    (`preferences`, shared with rlhf); P are the inputs whose two samples differ in metric (a tie
    states no preference). log π are summed over the sample's actions, π_ref is the frozen
    starting model. `baseline` logs the mean metric of the rejected samples, the comparison the
    chosen ones are reinforced against.
    """

    beta: float = param(0.1, "β: inverse temperature of the implicit reward β·log(π/π_ref)", min=0.0)
    noise: float = noise_param()

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, 2)
        reward = ctx.policy.score(samples, batch)
        pairs = preferences(reward, self.noise)
        with torch.no_grad():
            reference = ctx.policy.log_prob(self.reference(ctx), batch, samples)
        margin = self.beta * chosen_minus_rejected(samples.logprob - reference.logprob, pairs.chosen)
        dpo = mean_over_mask(-F.logsigmoid(margin), pairs.valid)
        rejected = reward.view(-1, 2).gather(1, (1 - pairs.chosen).unsqueeze(1)).squeeze(1)
        return Objective(dpo, samples, {"dpo": dpo.detach(), "reward": reward.mean(),
                                        "baseline": mean_over_mask(rejected, pairs.valid),
                                        "margin": mean_over_mask(margin.detach(), pairs.valid)},
                         reference=reference)
