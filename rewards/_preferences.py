"""Simulated pairwise feedback shared by `rlhf`, `dpo` and `online_dpo` (registers no strategy).

The annotator is simulated, and says so: it compares two outputs for the same input by the task's
own sentence metric m, with a stated noise model (`Annotator`). `build_preferences` draws the
fixed preference set of Ouyang et al. 2022's step 1 — two samples per training input from the
starting (`ce`) policy, judged once — and `fit_reward_model` their step 2, a Bradley–Terry reward
model, which is then frozen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from kinds.base import to_device
from rewards._sampling import RewardHead, chosen_minus_rejected
from rewards.base import Samples, StepContext, param


def temperature_param() -> Any:
    return param(0.05, "Bradley–Terry temperature τ of the simulated annotator: it prefers y1 over y0 with probability "
                       "σ((m(y1) − m(y0))/τ), m the task's sentence metric; 0: always the higher m", min=0.0)


def flip_rate_param() -> Any:
    return param(0.1, "probability that the simulated annotator's choice is then flipped (label noise)",
                 min=0.0, max=0.5)


@dataclass
class Preferences:
    """One simulated judgement per pair of samples (k = 0, 1)."""

    chosen: torch.Tensor  # [P] long: the sample the annotator prefers (noisy)
    better: torch.Tensor  # [P] long: the sample with the higher task metric (noise-free)
    valid: torch.Tensor   # [P] bool: the metrics differ; a tie states no preference and is left out


@dataclass(frozen=True)
class Annotator:
    """A simulated annotator over the task metric m: P(y1 ≻ y0) = σ((m(y1) − m(y0))/τ) (Bradley–Terry
    with temperature τ; τ = 0: the higher metric always), then the choice flipped with probability
    `flip_rate`, whatever the pair. Equal metrics are a tie: no preference is recorded."""

    temperature: float
    flip_rate: float

    def judge(self, scores: torch.Tensor) -> Preferences:
        """Judges consecutive pairs of `scores` [2P] (the metric of samples 0 and 1 of each pair)."""
        pair = scores.float().view(-1, 2)
        gap = pair[:, 1] - pair[:, 0]
        better = (gap > 0).long()
        if self.temperature > 0:
            prefers_second = (torch.rand(gap.shape, device=gap.device) < torch.sigmoid(gap / self.temperature)).long()
        else:
            prefers_second = better
        flipped = (torch.rand(gap.shape, device=gap.device) < self.flip_rate).long()
        return Preferences(chosen=prefers_second ^ flipped, better=better, valid=gap != 0)


@dataclass
class PreferenceSet:
    """Pairs of outputs for training inputs, sampled once from the starting policy and judged once.

    Pair p belongs to training row `rows[p]` (the `index` column); its two samples' actions and
    masks are kept trimmed to their used width on the CPU (`pair_samples` re-pads them for a batch).
    """

    rows: list[int]
    actions: list[torch.Tensor]  # P × [2] (labels) or [2, L_p] (tags, tokens)
    masks: list[torch.Tensor]
    scores: torch.Tensor  # [P, 2] the task metric of each sample
    judged: Preferences
    heldout: torch.Tensor  # [P] bool: kept out of training (the reward model's held-out accuracy)
    features: torch.Tensor | None  # [P, 2, D] the frozen starting model's features, float16, CPU

    def __post_init__(self) -> None:
        self.by_row = {row: p for p, row in enumerate(self.rows)}

    @property
    def trainable(self) -> torch.Tensor:
        """[P] bool: pairs a model learns from (a stated preference, not held out)."""
        return self.judged.valid & ~self.heldout

    def terms(self, device: torch.device) -> dict[str, torch.Tensor]:
        """What the record should say about the data (logged with every step)."""
        valid = self.judged.valid
        agreement = (self.judged.chosen == self.judged.better)[valid].float().mean() if valid.any() else torch.tensor(0.5)
        return {k: torch.as_tensor(v, dtype=torch.float32, device=device) for k, v in {
            "preference_pairs": float(self.trainable.sum()), "preference_heldout": float((valid & self.heldout).sum()),
            "preference_ties": float((~valid).sum()), "annotator_agreement": float(agreement)}.items()}

    def pair_samples(self, batch: dict[str, Any], generating: bool) -> tuple[Samples, torch.Tensor, torch.Tensor]:
        """The pairs of `batch`'s rows as `Samples` of the batch (log-probs still to be scored), with the
        pair [M] and the batch position [M] of each; samples 2m and 2m + 1 are pair m's. Tags are laid
        out over the batch's token positions, generated tokens over the longest pair's length."""
        device = batch["labels"].device
        positions = [(b, self.by_row[row]) for b, row in enumerate(batch["index"].tolist()) if row in self.by_row]
        which = torch.tensor([p for _, p in positions], dtype=torch.long)
        where = torch.tensor([b for b, _ in positions], dtype=torch.long, device=device)
        if batch["labels"].dim() == 1:  # one label per input
            actions = torch.cat([self.actions[p] for _, p in positions]) if positions else torch.zeros(0, dtype=torch.long)
            mask = torch.ones_like(actions, dtype=torch.bool)
        else:
            width = max((self.actions[p].shape[-1] for _, p in positions), default=1) if generating \
                else batch["labels"].shape[-1]
            actions = torch.zeros(2 * len(positions), width, dtype=torch.long)
            mask = torch.zeros(2 * len(positions), width, dtype=torch.bool)
            for m, (_, p) in enumerate(positions):
                used = self.actions[p].shape[-1]
                actions[2 * m: 2 * m + 2, :used] = self.actions[p]
                mask[2 * m: 2 * m + 2, :used] = self.masks[p]
        return _unscored(actions.to(device), mask.to(device), where.repeat_interleave(2)), which, where


def _unscored(actions: torch.Tensor, mask: torch.Tensor, index: torch.Tensor) -> Samples:
    zeros = torch.zeros(actions.shape[0], device=actions.device)
    return Samples(actions=actions, mask=mask, logprob=zeros, token_logprob=torch.zeros(actions.shape, device=actions.device),
                   index=index)


def build_preferences(ctx: StepContext, annotator: Annotator, inputs: int, heldout: float,
                      features: bool) -> PreferenceSet:
    """Ouyang et al. 2022's step 1, simulated: two samples per training input from the frozen starting
    policy (`ctx.reference`, the `ce` checkpoint), judged by `annotator`; a fraction `heldout` of the
    pairs is kept out for evaluation. `inputs` caps the training inputs used (their first N; 0: all).
    Seeded with the run's seed apart from the global stream, so `rlhf` and `dpo` of one task, model and
    seed learn from the same pairs."""
    train, reference = ctx.train, ctx.reference
    if train is None or reference is None:
        raise ValueError("a fixed preference set needs the training batches (StepContext.train) and the frozen "
                         "starting model (StepContext.reference)")
    device = next(reference.parameters()).device
    count = len(train.rows) if inputs <= 0 else min(inputs, len(train.rows))
    order = sorted(range(count), key=lambda i: -train.lengths[i])  # little padding
    rows: list[int] = []
    actions: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    scores, feats = [], []
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad(), \
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=ctx.bf16):
        torch.manual_seed(ctx.seed)
        for start in range(0, count, train.batch_size):
            chunk = [train.rows[i] for i in order[start:start + train.batch_size]]
            batch = to_device(train.kind.collate(train.task, chunk, train.pad_id, train.start), device)
            samples = ctx.policy.sample(reference, batch, None, 2)
            scores.append(ctx.policy.score(samples, batch).float())
            if features:
                feats.append(ctx.policy.features(reference, batch, samples)[1].float().half().cpu())
            used = samples.mask.reshape(samples.mask.shape[0], -1)
            for b, row in enumerate(batch["index"].tolist()):
                pair_actions, pair_mask = samples.actions[2 * b: 2 * b + 2], samples.mask[2 * b: 2 * b + 2]
                if pair_actions.dim() > 1:
                    taken = used[2 * b: 2 * b + 2].any(0).nonzero()
                    width = int(taken.max()) + 1 if len(taken) else 1
                    pair_actions, pair_mask = pair_actions[:, :width], pair_mask[:, :width]
                rows.append(row)
                actions.append(pair_actions.cpu())
                masks.append(pair_mask.cpu())
        all_scores = torch.cat(scores).cpu()
        judged = annotator.judge(all_scores)
        held = torch.zeros(len(rows), dtype=torch.bool)
        held[torch.randperm(len(rows))[: round(heldout * len(rows))]] = True
    return PreferenceSet(rows=rows, actions=actions, masks=masks, scores=all_scores.view(-1, 2), judged=judged,
                         heldout=held, features=torch.cat(feats).view(len(rows), 2, -1) if features else None)


@dataclass
class RewardModelFit:
    head: RewardHead
    heldout_accuracy: float  # agreement with the annotator's held-out choices
    heldout_true_accuracy: float  # agreement with the noise-free metric order on the same pairs
    final_loss: float


def fit_reward_model(prefs: PreferenceSet, device: torch.device, lr: float, epochs: int, seed: int,
                     batch_pairs: int = 64) -> RewardModelFit:
    """Ouyang et al. 2022's step 2: r_φ(x, y) on the frozen starting model's features, trained with
    the Bradley–Terry loss −log σ(r_φ(y_w) − r_φ(y_l)) on the trainable pairs (Adam, `epochs` passes
    in minibatches of `batch_pairs`), evaluated on the held-out pairs, then frozen (no gradient, eval)."""
    if prefs.features is None:
        raise ValueError("the preference set was built without features")
    train = prefs.trainable.nonzero().flatten()
    held = (prefs.judged.valid & prefs.heldout).nonzero().flatten()
    head = RewardHead(prefs.features.shape[-1], lr).to(device)
    chosen = prefs.judged.chosen
    loss = torch.zeros(())
    with torch.random.fork_rng(devices=[]), torch.autocast(device.type, enabled=False):
        torch.manual_seed(seed)
        for _ in range(epochs if len(train) else 0):
            for part in train[torch.randperm(len(train))].split(batch_pairs):
                reward = head(prefs.features[part].to(device).float()).flatten()
                loss = -F.logsigmoid(chosen_minus_rejected(reward, chosen[part].to(device))).mean()
                head.fit(loss)
    head.eval().requires_grad_(False)
    head.optimizer = None  # frozen: nothing may step it again
    if len(held):
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            margin = head(prefs.features[held].to(device).float()).view(-1, 2)
            prefers_second = (margin[:, 1] > margin[:, 0]).long().cpu()
        accuracy = float((prefers_second == chosen[held]).float().mean())
        true_accuracy = float((prefers_second == prefs.judged.better[held]).float().mean())
    else:  # nothing held out to judge: chance level
        accuracy = true_accuracy = 0.5
    return RewardModelFit(head, accuracy, true_accuracy, float(loss.detach()))
