"""REINFORCE with a running-mean baseline: sentence rewards for generated text, ±1 per label or tag."""
from __future__ import annotations

from typing import Any

import torch

from rewards._sampling import Objective, SamplingStrategy, generates, num_samples_param
from rewards.base import StepContext, mean_over_mask, param, register_reward


@register_reward("reinforce")
class Reinforce(SamplingStrategy):
    """loss = −(1/N) Σ_n Σ_t (r_nt − b)·log π(a_nt) + α·CE, over N = K samples per input.

    Williams 1992, "Simple Statistical Gradient-Following Algorithms for Connectionist
    Reinforcement Learning". The reward depends on what an output is (the kind's `generates`):
      generated sequences: one sentence-level reward per sample, r_n = the task's sentence metric of
        the whole output, credited to every token: −(1/N) Σ_n (r_n − b)·log π(y_n) with
        log π(y_n) = Σ_t log π(a_nt | a_<t) summed over the sample's tokens (the REINFORCE objective
        of Ranzato et al. 2016, "Sequence Level Training with Recurrent Neural Networks");
      labels and tags: actions that are conditionally independent given the input, each with its
        immediate reward r_a = +1 if a is the gold label or tag, else −1 (`Policy.token_correct`),
        credited to that action only; summed over a sample's actions (a label: one action).
    Estimator: the likelihood-ratio (REINFORCE) gradient on K samples per input drawn on-policy.
    Normalisation: the sum over a sample's actions (no division by its length, which would change
    the objective), mean over samples. Baseline b: an exponential moving average of the mean
    reward (per sample for sequences, per action for labels and tags), b ← d·b + (1 − d)·mean(r),
    used before it is updated (so it never contains the rewards it judges) and started at the
    first batch's mean. Ranzato et al. learn a per-step linear baseline from the decoder's hidden
    state instead; the running mean is Williams' reinforcement-comparison baseline.
    """

    num_samples: int = num_samples_param()
    baseline_decay: float = param(0.9, "decay d of the running-mean reward baseline", min=0.0, max=1.0)

    def __post_init__(self) -> None:
        self.baseline: torch.Tensor | None = None

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, self.num_samples)
        n = samples.logprob.shape[0]
        if generates(ctx):  # one reward per whole output
            reward = ctx.policy.score(samples, batch)
            mean_reward, available = reward.mean(), torch.tensor(n > 0, device=reward.device)
            baseline = mean_reward if self.baseline is None else self.baseline
            pg = -((reward - baseline) * samples.logprob).sum() / max(n, 1)
        else:  # one reward per label or tag
            reward = 2.0 * ctx.policy.token_correct(samples, batch) - 1.0
            mean_reward, available = mean_over_mask(reward, samples.mask), samples.mask.any()
            baseline = mean_reward if self.baseline is None else self.baseline
            per_action = torch.where(samples.mask, (reward - baseline) * samples.token_logprob, 0.0)
            pg = -per_action.reshape(n, -1).sum(-1).sum() / max(n, 1)
        updated = self.baseline_decay * baseline + (1.0 - self.baseline_decay) * mean_reward
        self.baseline = torch.where(available, updated, baseline)  # no actions: nothing learnt
        return Objective(pg, samples, {"pg": pg.detach(), "reward": mean_reward.detach(), "baseline": baseline.detach()})
