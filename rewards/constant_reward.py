"""The constant-reward control: policy-gradient training whose reward carries no information."""
from __future__ import annotations

from typing import Any

import torch

from rewards._sampling import Objective, SamplingStrategy, num_samples_param
from rewards.base import StepContext, mean_over_mask, param, register_reward


@register_reward("constant_reward")
class ConstantReward(SamplingStrategy):
    """loss = −(1/|A|) Σ_{a∈A} c·log π(a) + α·CE, with the same reward c for every action.

    A control for the sampling strategies: it shares everything with them — the start from the
    `ce` checkpoint, the extra epochs, the α·CE mix, sampling K outputs per input with the actions
    A of `reinforce` (the label, every tag, every generated token) — except a reward that depends
    on the output. A strategy's gain over this control is therefore the reward's doing, not the
    extra training or the sharper, peakier distribution that reinforcing the model's own samples
    brings by itself (Choshen et al. 2020, "On the Weaknesses of Reinforcement Learning for Neural
    Machine Translation", found that a constant reward reproduces much of the gain of BLEU rewards).
    There is deliberately no baseline: subtracting one from a constant leaves no policy gradient.
    """

    num_samples: int = num_samples_param(1)
    value: float = param(1.0, "the reward c given to every sampled action, whatever it is", min=0.0)

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, self.num_samples)
        pg = mean_over_mask(-self.value * samples.token_logprob, samples.mask)
        reward = torch.tensor(self.value, device=pg.device)
        return Objective(pg, samples, {"pg": pg.detach(), "reward": reward})
