"""RLHF as Ouyang et al. 2022 describe it, with a simulated annotator: preferences, reward model, PPO."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rewards._preferences import (Annotator, PreferenceSet, build_preferences, fit_reward_model,
                                  flip_rate_param, temperature_param)
from rewards._sampling import (Objective, Rollout, SamplingStrategy, clipped_surrogate, detached, kl_estimate,
                               num_samples_param, rollout_of)
from rewards.base import StepContext, masked_mean, param, register_reward


@dataclass
class AdaptiveKLController:
    """Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", §2.2:
    β ← β·(1 + K_β·e), e = clip(KL/KL_target − 1, −0.2, 0.2), K_β = n/horizon for n new samples
    (their code's form; K_β = 0.1 in the paper at 1024 samples per batch and horizon 10 000)."""

    value: torch.Tensor  # β, a scalar tensor (updated without a host synchronisation)
    target: float
    horizon: float

    def update(self, kl: torch.Tensor, n: int) -> None:
        error = (kl.detach() / self.target - 1.0).clamp(-0.2, 0.2)
        self.value = self.value * (1.0 + error * n / self.horizon)


def whiten(values: torch.Tensor) -> torch.Tensor:
    """(x − mean) / std over the rollout (population std; a single value whitens to 0)."""
    centred = values - values.mean()
    return centred / (centred.square().mean().sqrt() + 1e-8) if values.numel() > 1 else centred * 0.0


@register_reward("rlhf")
class RLHF(SamplingStrategy):
    """loss = −(1/N) Σ_n Σ_t min(ρ_nt·A_n, clip(ρ_nt, 1 − ε, 1 + ε)·A_n) + α·CE (PPO on a frozen reward model).

    The pipeline of Ouyang et al. 2022, "Training language models to follow instructions with human
    feedback", with simulated feedback, built in `start` and then fixed:
      (1) preferences: two samples per training input from the starting `ce` policy (the frozen
          reference), judged by a simulated annotator over the task's sentence metric m — it prefers
          y1 with probability σ((m(y1) − m(y0))/τ) (Bradley–Terry, temperature τ), then its choice is
          flipped with probability `flip_rate`; equal metrics are ties and state no preference. A share
          `heldout` of the pairs is kept out. `preference_pairs`, `preference_heldout`,
          `preference_ties` and `annotator_agreement` (with the noise-free order) are logged;
      (2) reward model: r_φ(x, y), a small head over the frozen ce model's features of (x, y),
          trained with the Bradley–Terry loss −log σ(r_φ(y_w) − r_φ(y_l)) for `rm_epochs` epochs,
          then frozen; `rm_heldout_accuracy` (agreement with the annotator's held-out choices) and
          `rm_heldout_true_accuracy` (with the noise-free metric order) are logged with every step;
      (3) PPO (Schulman et al. 2017): each batch's `rollout` draws K samples per input from π_old (K = 1
          by default: one response per prompt, as Ouyang et al. and TRL's PPO trainer collect) and
          rewards each with R = r_φ(x, y) − β·log(π_old(y)/π_ref(y)) (the KL penalty to the ce
          reference, log-probabilities summed over the output); A = R whitened over the rollout
          (mean 0, std 1); then `updates` PPO epochs (optimiser steps) on that rollout with the
          per-action ratio ρ_nt = π_θ(a_nt)/π_old(a_nt) (1 on the first), clipped at 1 ± ε. β follows
          Ziegler et al.'s adaptive controller toward `kl_target` (nats per output), fed the
          rollout's k3 KL estimate (`AdaptiveKLController`);
      (4) logged at each step: the proxy reward `rm_reward` (r_φ) next to the true metric `reward`,
          `kl` (k3, to the ce reference), `kl_coef` (β), `kl_penalty`, clip_fraction, ratio_deviation.
    Normalisation: the clipped per-action terms are summed over a sample's actions (a sequence-level
    reward), mean over samples. Deviations from the paper: no value model — the advantage is the
    whitened sequence-level reward (its batch mean the baseline), the same for every action, where
    Ouyang et al. use GAE with a learned value function; the KL penalty enters the sequence reward
    rather than each token's; one minibatch per rollout; α·CE stands in for their pretraining mix
    (PPO-ptx); the annotator is simulated from the metric, not people.
    """

    num_samples: int = num_samples_param(1)
    preference_inputs: int = param(0, "training inputs the fixed preference set is drawn from (the first N; 0: all)",
                                   min=0)
    temperature: float = temperature_param()
    flip_rate: float = flip_rate_param()
    heldout: float = param(0.1, "share of the preference pairs held out to measure the reward model", min=0.0, max=0.9)
    rm_lr: float = param(1e-3, "learning rate of the reward model's Adam", min=0.0)
    rm_epochs: int = param(10, "epochs of reward-model training on the preference pairs, before PPO", min=1)
    clip: float = param(0.2, "PPO clip range ε of the per-action probability ratio", min=0.0)
    updates: int = param(4, "PPO epochs: optimiser steps on each batch's rollout (the first has ratio 1)", min=1)
    kl_coef: float = param(0.1, "initial weight β of the KL penalty β·log(π_old/π_ref) in the reward", min=0.0)
    kl_target: float = param(1.0, "KL to the reference, in nats per output, the adaptive controller steers β toward",
                             min=1e-6)
    kl_horizon: float = param(10000.0, "horizon H of the adaptive KL controller: K_β = samples per rollout / H",
                              min=1.0)

    optimised_reward = "rm_reward"  # the frozen reward model's proxy, not the simulated annotator's metric

    def __post_init__(self) -> None:
        self.prefs: PreferenceSet | None = None
        self.rm: torch.nn.Module | None = None
        self.controller: AdaptiveKLController | None = None
        self.fixed_terms: dict[str, torch.Tensor] = {}

    def start(self, ctx: StepContext) -> None:
        reference = self.reference(ctx)
        device = next(reference.parameters()).device
        prefs = build_preferences(ctx, Annotator(self.temperature, self.flip_rate), self.preference_inputs,
                                  self.heldout, features=True)
        fit = fit_reward_model(prefs, device, self.rm_lr, self.rm_epochs, ctx.seed)
        prefs.features = None  # only the reward model's training needs them
        self.prefs, self.rm = prefs, fit.head
        self.controller = AdaptiveKLController(torch.tensor(self.kl_coef, device=device), self.kl_target,
                                               self.kl_horizon)
        self.fixed_terms = {**prefs.terms(device), **{k: torch.tensor(v, device=device) for k, v in {
            "rm_heldout_accuracy": fit.heldout_accuracy, "rm_heldout_true_accuracy": fit.heldout_true_accuracy,
            "rm_train_loss": fit.final_loss}.items()}}

    def rollout(self, batch: dict[str, Any], ctx: StepContext) -> Rollout:
        if self.rm is None or self.controller is None:
            raise RuntimeError("rlhf builds its preference set and reward model in start(); call it before training")
        samples = ctx.policy.sample(ctx.model, batch, None, self.num_samples)
        reference, features = ctx.policy.features(self.reference(ctx), batch, samples)
        with torch.autocast(features.device.type, enabled=False):
            proxy = self.rm(features.float())
        beta = self.controller.value
        log_ratio = samples.logprob - reference.logprob
        reward = proxy - beta * log_ratio
        kl = masked_mean(kl_estimate(samples, reference))
        self.controller.update(kl, samples.logprob.shape[0])
        true = ctx.policy.score(samples, batch)
        terms = {"rm_reward": proxy.mean(), "reward": true.mean(), "kl_coef": beta, "kl_penalty": (beta * log_ratio).mean(),
                 "baseline": reward.mean(), **self.fixed_terms}
        return Rollout(detached(samples), detached(reference), reward, whiten(reward), terms)

    def objective(self, logits: torch.Tensor, batch: dict[str, Any], ctx: StepContext) -> Objective:
        rollout = rollout_of(self, batch, ctx)
        new = ctx.policy.log_prob(ctx.model, batch, rollout.samples, logits=logits)
        surrogate = clipped_surrogate(new, rollout.samples, rollout.advantage, self.clip)
        value = -surrogate.per_action.sum() / max(surrogate.per_action.shape[0], 1)
        return Objective(value, new, {"pg": value.detach(), **rollout.terms, "clip_fraction": surrogate.clip_fraction,
                                      "ratio_deviation": surrogate.ratio_deviation}, reference=rollout.reference)
