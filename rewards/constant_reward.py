"""The constant-reward control: policy-gradient training whose reward carries no information."""
from __future__ import annotations

from typing import Any

import torch

from rewards._sampling import Objective, SamplingStrategy, num_samples_param, policy_gradient
from rewards.base import StepContext, param, register_reward


@register_reward("constant_reward")
class ConstantReward(SamplingStrategy):
    """loss = −(1/N) Σ_n c·log π(y_n) + α·CE, the same reward c for every sample, log π summed over its actions.

    A control for the sampling strategies: it shares everything with them — the start from the
    `ce` checkpoint, the extra epochs, the α·CE mix, dropout off, and the sampling itself: K =
    `SAMPLES_PER_INPUT` (4) outputs per input drawn on-policy by the same `Policy.sample`, the K
    of reinforce, scst, mrt, reward_model, rloo and grpo by default (rlhf draws one per input, as
    PPO for RLHF does: against it, run this control with `num_samples=1`), and the same
    normalisation, each sample's log-probability summed over its actions (the label, its tags, its
    tokens), mean over samples — except a reward that depends on the output. A strategy's gain
    over this control is therefore the reward's doing, not the extra training or the sharper,
    peakier distribution that reinforcing the model's own samples brings by itself (Choshen et al.
    2020, "On the Weaknesses of Reinforcement Learning for Neural Machine Translation", found that
    a constant reward reproduces much of the gain of BLEU rewards). There is deliberately no
    baseline: subtracting one from a constant leaves no policy gradient. Run it with a strategy's
    own `num_samples` when that strategy runs with another K. It takes one optimiser step per batch:
    it matches the single-update strategies exactly; grpo's and rlhf's clipped, multi-update
    surrogates differ from it in that respect.
    """

    num_samples: int = num_samples_param()
    value: float = param(1.0, "the reward c given to every sample, whatever it is", min=0.0)

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, self.num_samples)
        pg = policy_gradient(torch.full_like(samples.logprob, self.value), samples)
        return Objective(pg, samples, {"pg": pg.detach(), "reward": torch.tensor(self.value, device=pg.device)})
