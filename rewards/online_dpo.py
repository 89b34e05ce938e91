"""Online DPO: preference pairs sampled from the current policy each step and judged at once."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rewards._preferences import Annotator, flip_rate_param, temperature_param
from rewards._sampling import Objective, SamplingStrategy, chosen_minus_rejected
from rewards.base import StepContext, mean_over_mask, param, register_reward


@register_reward("online_dpo")
class OnlineDPO(SamplingStrategy):
    """loss = −(1/|P|) Σ_P log σ(β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]) + α·CE, fresh pairs.

    Online DPO in the manner of Guo et al. 2024, "Direct Language Model Alignment from Online AI
    Feedback" (OAIF): the DPO loss of Rafailov et al. 2023, but each step the current policy draws
    two samples per input and the annotator judges them at once, so the pairs follow the policy.
    The annotator is simulated from the task's sentence metric m (Guo et al. ask an LLM): it prefers
    y1 with probability σ((m(y1) − m(y0))/τ) (Bradley–Terry, temperature τ) and its choice is then
    flipped with probability `flip_rate` (`rewards._preferences.Annotator`, shared with rlhf and
    dpo); P are the inputs whose two samples differ in metric (a tie states no preference; `pairs`
    counts the rest). log π summed over each sample's actions (the sequence log-probability, as in
    the paper); π_ref is the frozen starting (`ce`) model; mean over pairs; the exact gradient of
    the loss on this step's pairs, no baseline (`baseline` logs the mean metric of the rejected
    samples, what the chosen ones are compared with). Deviation: the α·CE mix of every sampling strategy (α = 0 for
    the paper's loss). The offline algorithm, on a fixed preference set, is `dpo`.
    """

    beta: float = param(0.1, "β: inverse temperature of the implicit reward β·log(π/π_ref)", min=0.0)
    temperature: float = temperature_param()
    flip_rate: float = flip_rate_param()

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, 2)
        reward = ctx.policy.score(samples, batch)
        pairs = Annotator(self.temperature, self.flip_rate).judge(reward)
        with torch.no_grad():
            reference = ctx.policy.log_prob(self.reference(ctx), batch, samples)
        margin = self.beta * chosen_minus_rejected(samples.logprob - reference.logprob, pairs.chosen)
        dpo = mean_over_mask(-F.logsigmoid(margin), pairs.valid)
        rejected = reward.view(-1, 2).gather(1, (1 - pairs.chosen).unsqueeze(1)).squeeze(1)
        return Objective(dpo, samples, {"dpo": dpo.detach(), "reward": reward.mean(),
                                        "baseline": mean_over_mask(rejected, pairs.valid),
                                        "margin": mean_over_mask(margin.detach(), pairs.valid),
                                        "pairs": pairs.valid.sum().float()},
                         reference=reference)
