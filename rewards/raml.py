"""Reward-augmented maximum likelihood (Norouzi et al. 2016): CE on targets sampled around the gold."""
from __future__ import annotations

import math

import torch

from rewards.base import (IGNORE, LossOutput, RewardStrategy, Samples, StepContext, cross_entropy, param,
                          register_reward)


def log_distance_weights(lengths: torch.Tensor, classes: int, tau: float) -> torch.Tensor:
    """[N, n_max + 1] unnormalised log q(e) of the Hamming distance e of a sequence of n_m positions
    over `classes` symbols: log C(n, e) + e·log(C − 1) − e/τ, −inf for e > n (float64)."""
    n = lengths.to(torch.float64).unsqueeze(-1)
    e = torch.arange(int(lengths.max()) + 1 if lengths.numel() else 1, dtype=torch.float64,
                     device=lengths.device).unsqueeze(0)
    log_count = torch.lgamma(n + 1) - torch.lgamma(e + 1) - torch.lgamma((n - e).clamp_min(0) + 1)
    weights = log_count + e * (math.log(classes - 1) - 1.0 / tau)
    return weights.masked_fill(e > n, -math.inf)


def sample_payoff(gold: torch.Tensor, mask: torch.Tensor, classes: int, tau: float, num_samples: int = 1,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets from q(y | y*) ∝ exp(−d_H(y, y*)/τ), `num_samples` per row, by stratified sampling.

    gold [B, L] (IGNORE where `mask` is False); returns targets [B·K, L] (rows of one input adjacent)
    and their distances e [B·K]. A distance e is drawn with p(e) ∝ C(n, e)(C − 1)^e exp(−e/τ) (the
    number of sequences at Hamming distance e times their weight), then e of the n scored positions
    uniformly, each replaced by one of the other C − 1 classes uniformly: exactly q. τ = 0 (or a
    single class) returns the gold rows.
    """
    gold = gold.repeat_interleave(num_samples, dim=0)
    mask = mask.repeat_interleave(num_samples, dim=0)
    lengths = mask.sum(-1)
    if tau == 0 or classes < 2 or gold.numel() == 0:
        return gold.clone(), torch.zeros_like(lengths)
    weights = log_distance_weights(lengths, classes, tau)
    probs = torch.softmax(weights, dim=-1)
    device = gold.device
    distance = torch.multinomial(probs.cpu() if generator is not None else probs, 1,
                                 generator=generator).squeeze(-1).to(device)
    keys = torch.rand(gold.shape, generator=generator, device="cpu" if generator is not None else device)
    keys = keys.to(device).masked_fill(~mask, 2.0)  # unscored positions rank last
    rank = keys.argsort(-1).argsort(-1)
    chosen = (rank < distance.unsqueeze(-1)) & mask
    shift = torch.randint(1, classes, gold.shape, generator=generator,
                          device="cpu" if generator is not None else device).to(device)
    return torch.where(chosen, (gold + shift) % classes, gold), distance


@register_reward("raml")
class RAML(RewardStrategy):
    """RAML: maximum likelihood of targets sampled from q(y|y*) ∝ exp(−distance/τ) around the gold.

    Objective: loss = E_{ỹ∼q(·|y*)} [−log p(ỹ | x)] with the exponentiated payoff distribution
    q(ỹ | y*) ∝ exp(r(ỹ, y*)/τ), r = −(Hamming distance): a label or tag is replaced by one of the
    other C − 1 classes (label noise), a token by one of the other V − 1 vocabulary entries.
    Estimator: K targets ỹ per input, stratified as in the paper's Section 3: a distance e with
    p(e) ∝ C(n, e)(C − 1)^e exp(−e/τ) over the input's n scored positions, then e positions uniformly,
    each given a uniformly chosen other class (exact for the Hamming distance).
    A label or tag sequence is scored with the batch's own logits (they do not depend on the
    target); a generated sequence by a teacher-forced pass on its own, noisy, prefix (the kind's
    `Policy.log_prob`: one more forward pass when any token was replaced).
    Baseline: none; q does not depend on the model, so no baseline or importance weight.
    Normalisation: −log p summed over scored positions, divided by
    K times the batch's scored positions M (τ = 0: exactly CE).
    τ: labels and tags use `tau`, token sequences `token_tau`, because the count (C − 1)^e makes the
    same τ mean very different noise: each position is replaced with probability
    (C − 1)e^{−1/τ} / (1 + (C − 1)e^{−1/τ}), at the defaults about 5% of NER tags (C = 9), 0.7% of
    sentiment labels (C = 2) and 10% of MiniLM tokens (V = 30522).
    Simplification: the paper's payoff for sequences is the negative edit distance; here it is the
    Hamming distance (substitutions only, no insertions or deletions), so a sampled target keeps the
    reference's length and the end-of-sequence token may be replaced like any other; replacements
    are uniform over the model's whole output vocabulary, special tokens included.
    Source: Norouzi et al. 2016, "Reward Augmented Maximum Likelihood for Neural Structured Prediction"
    (NeurIPS).
    """

    family = "metric"

    tau: float = param(0.2, "temperature τ of q for labels and tag sequences (Hamming distance over the C "
                            "classes); 0 is CE", min=0.0)
    token_tau: float = param(0.08, "temperature τ of q for generated token sequences (Hamming distance over the "
                                   "vocabulary of V entries, a stand-in for the edit distance); 0 is CE", min=0.0)
    num_samples: int = param(1, "targets K sampled from q per input at each step", min=1)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        generates = ctx.kind is not None and ctx.kind.generates
        ce = cross_entropy(logits, batch["labels"])
        rows = logits.shape[0]
        gold = ctx.kind.gold(batch) if generates else batch["labels"].reshape(rows, -1)
        mask = gold != IGNORE
        classes = logits.shape[-1]
        with torch.no_grad():
            targets, distance = sample_payoff(gold, mask, classes, self.token_tau if generates else self.tau,
                                              self.num_samples)
        mask = mask.repeat_interleave(self.num_samples, dim=0)
        scored = mask.sum().clamp_min(1)
        index = torch.arange(rows, device=logits.device).repeat_interleave(self.num_samples)
        if not bool((distance > 0).any()):  # every target is the gold: CE on the batch's own logits
            nll = ce
        elif not generates:
            log_probs = torch.log_softmax(logits.float().reshape(rows, -1, classes), dim=-1)[index]
            picked = log_probs.gather(-1, targets.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
            nll = -torch.where(mask, picked, 0.0).sum() / scored
        else:
            pad = getattr(ctx.tokenizer, "pad_token_id", None) or 0
            actions = targets.masked_fill(~mask, pad)
            placeholder = torch.zeros(actions.shape[0], device=actions.device)
            samples = Samples(actions=actions, mask=mask, logprob=placeholder, token_logprob=placeholder,
                              index=index)
            nll = -ctx.policy.log_prob(ctx.model, batch, samples).token_logprob.sum() / scored
        terms = {"ce": ce.detach(), "raml_nll": nll.detach(), "distance": distance.float().mean(),
                 "replaced": distance.sum() / scored}
        return LossOutput(nll, terms)
