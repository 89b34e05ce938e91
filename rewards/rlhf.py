"""RLHF with simulated feedback: a Bradley–Terry reward model and PPO's clipped surrogate."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rewards._sampling import (LearnedRewardStrategy, Objective, chosen_minus_rejected, noise_param,
                               preferences)
from rewards.base import Samples, StepContext, mean_over_mask, param, register_reward


@dataclass
class _Rollout:
    """One step's samples kept for the next step's surrogate: their inputs, old log-probs, advantages."""

    batch: dict[str, Any]
    samples: Samples  # detached: token_logprob is log π_old
    advantage: torch.Tensor


@register_reward("rlhf")
class RLHF(LearnedRewardStrategy):
    """loss = −(1/N) Σ_n Σ_t min(ρ_nt·A_n, clip(ρ_nt, 1 − ε, 1 + ε)·A_n) + α·CE.

    n runs over this step's samples and the previous step's (see below). Schulman et al. 2017,
    "Proximal Policy Optimization Algorithms", in the RLHF pipeline of
    Ouyang et al. 2022 ("Training language models to follow instructions with human feedback"):
      feedback: two samples per input, the one with the higher sentence metric preferred, flipped
        with probability `noise` (`preferences`, shared with dpo; ties state no preference);
      reward model: r_φ(x, y) (`LearnedRewardStrategy`), one Adam step per training step on
        −log σ(r_φ(y_w) − r_φ(y_l)) (Bradley–Terry); rm_accuracy = how often r_φ, before that
        step, orders a fresh pair as the noise-free metric does (½ when every pair is a tie);
      advantage: A_n = r_φ(y_n) − mean of r_φ over the input's two samples
        − kl_coef·(log π_old(y_n) − log π_ref(y_n)), fixed when y_n is sampled;
      ratio: ρ_nt = π_θ(a_nt)/π_old(a_nt) per action (a sequence-level ratio would be the product
        over tokens and overflow); the clipped per-action terms are summed over the sample's
        actions (not divided by its length, which would change the objective), mean over samples.
    One-step-stale PPO: the runner takes one optimiser step per batch, so π_old = π_θ for fresh
    samples (ρ = 1: the plain policy gradient). The previous step's samples, with their inputs,
    log π_old and advantages, are kept and enter this step's surrogate too, re-scored under the
    updated θ, where ρ ≠ 1 and the clip bounds how far one step moves their probabilities;
    clip_fraction and ratio_deviation (mean |ρ − 1|) are measured on them.
    """

    noise: float = noise_param()
    kl_coef: float = param(0.05, "weight of the per-sample KL penalty log π/π_ref in the advantage", min=0.0)
    clip: float = param(0.2, "PPO clip range ε of the probability ratio", min=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.previous: _Rollout | None = None

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        samples = ctx.policy.sample(ctx.model, batch, logits, 2)
        reward = ctx.policy.score(samples, batch)
        pairs = preferences(reward, self.noise)

        def bradley_terry(r: torch.Tensor) -> torch.Tensor:
            return mean_over_mask(-F.logsigmoid(chosen_minus_rejected(r, pairs.chosen)), pairs.valid)

        reference, predicted, rm_loss = self.learned_reward(ctx, batch, samples, bradley_terry)
        group = predicted.view(-1, 2)
        baseline = group.mean(-1, keepdim=True)
        advantage = (group - baseline).flatten() - self.kl_coef * (samples.logprob.detach() - reference.logprob)
        old = dataclasses.replace(samples, logprob=samples.logprob.detach(),
                                  token_logprob=samples.token_logprob.detach())
        objective, _, _ = self._surrogate(samples, old, advantage)
        clip_fraction = ratio_deviation = torch.zeros((), device=predicted.device)
        if self.previous is not None:
            stale = self.previous
            rescored = ctx.policy.log_prob(ctx.model, stale.batch, stale.samples)
            stale_objective, clipped, deviation = self._surrogate(rescored, stale.samples, stale.advantage)
            objective = torch.cat([objective, stale_objective])
            clip_fraction = mean_over_mask(clipped.float(), stale.samples.mask.reshape(clipped.shape))
            ratio_deviation = mean_over_mask(deviation, stale.samples.mask.reshape(deviation.shape))
        self.previous = _Rollout(batch, old, advantage)
        pg = -objective.mean()
        ordered = mean_over_mask((chosen_minus_rejected(predicted, pairs.better) > 0).float(), pairs.valid)
        rm_accuracy = torch.where(pairs.valid.any(), ordered, 0.5)  # no pair to judge: chance level
        return Objective(pg, samples, {"pg": pg.detach(), "reward": reward.mean(), "rm_reward": predicted.mean(),
                                       "baseline": baseline.mean(), "rm_loss": rm_loss, "rm_accuracy": rm_accuracy,
                                       "clip_fraction": clip_fraction, "ratio_deviation": ratio_deviation},
                         reference=reference)

    def _surrogate(self, new: Samples, old: Samples,
                   advantage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample clipped surrogate [N], and per action [N, L]: clipped? and |ρ − 1| (detached)."""
        n = advantage.shape[0]
        mask = new.mask.reshape(n, -1)
        ratio = torch.exp(new.token_logprob.reshape(n, -1) - old.token_logprob.reshape(n, -1))
        a = advantage.unsqueeze(-1)
        per_action = torch.minimum(ratio * a, ratio.clamp(1.0 - self.clip, 1.0 + self.clip) * a)
        per_sample = torch.where(mask, per_action, 0.0).sum(-1)
        deviation = (ratio.detach() - 1.0).abs()
        return per_sample, deviation > self.clip, deviation
