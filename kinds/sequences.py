"""The policy of kinds whose actions are generated token sequences (`seq2seq`, `causal_lm`).

A sample is drawn by ancestral sampling with the KV cache, then scored by one teacher-forced pass
that gives differentiable log-probabilities. The two kinds differ only in how they generate from
an input and how they run the model on (input, sample) pairs: `generate` and `teacher_forced`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from kinds.base import IGNORE, ModelKind, Samples, decode, with_logprobs
from kinds.positions import score, statistics

if TYPE_CHECKING:
    from tasks.base import Task

# Pure ancestral sampling: no truncation and none of the model's own repetition constraints, so
# the teacher-forced log-probabilities are exactly those of the distribution sampled from.
SAMPLING = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0)
GREEDY = dict(do_sample=False, repetition_penalty=1.0, no_repeat_ngram_size=0)


class SequenceKind(ModelKind):
    """What the sequence kinds share besides the policy: references are the data's raw target text
    (never the tokenizer's decoding of it, which an uncased or truncating tokenizer would alter), so
    metrics are comparable with published figures; rows carry it in the `target` column."""

    generates = True

    def references(self, task: "Task", batch: dict[str, Any], tokenizer: Any, scored_only: bool = False) -> list[Any]:
        return list(batch["target"])

    def gold(self, batch: dict[str, Any]) -> torch.Tensor:
        """[B, L] the reference output tokens (IGNORE after the end), as sampled actions are laid out."""
        return batch["labels"]

    def policy(self, task: "Task", tokenizer: Any, max_new_tokens: int, length_factor: float | None = None) -> "SequencePolicy":
        return SequencePolicy(self, task, tokenizer, max_new_tokens, length_factor)

    def generate(self, model: torch.nn.Module, batch: dict[str, Any], **settings: Any) -> torch.Tensor:
        """[B·K, L] the new tokens generated for each input (K = num_return_sequences)."""
        raise NotImplementedError

    def teacher_forced(self, model: torch.nn.Module, batch: dict[str, Any], actions: torch.Tensor,
                       index: torch.Tensor, output_hidden_states: bool = False) -> tuple[torch.Tensor, Any]:
        """(logits [N, L, V] predicting each action, the model output), the model run on (input, actions)."""
        raise NotImplementedError

    def pooled(self, out: Any, batch: dict[str, Any], index: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([N, H] the input's mean hidden state, [N, H] the sample's), from a teacher-forced output."""
        raise NotImplementedError


class SequencePolicy:
    """Samples whole outputs, at most `sample_length(batch)` tokens long, and scores them with the
    task's sentence-level metric. Samples of one input are adjacent (`index` = arange(B).repeat_interleave(K))."""

    def __init__(self, kind: SequenceKind, task: "Task", tokenizer: Any, max_new_tokens: int,
                 length_factor: float | None = None):
        self.kind, self.task, self.tokenizer, self.max_new_tokens = kind, task, tokenizer, max_new_tokens
        self.length_factor = length_factor  # samples stop at this × the batch's longest reference

    def sample_length(self, batch: dict[str, Any]) -> int:
        """New tokens a generated sample may take: max_new_tokens, and with a length factor f at most
        ⌈f · the longest reference of the batch⌉ (end-of-sequence included), at least 1."""
        if self.length_factor is None:
            return self.max_new_tokens
        longest = int((self.kind.gold(batch) != IGNORE).sum(-1).max())
        return max(1, min(self.max_new_tokens, math.ceil(self.length_factor * longest)))

    def sample(self, model: torch.nn.Module, batch: dict[str, Any], logits: torch.Tensor | None,
               num_samples: int = 1, greedy: bool = False) -> Samples:
        index = torch.arange(batch["input_ids"].shape[0], device=batch["input_ids"].device)
        index = index.repeat_interleave(num_samples)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            actions = self.kind.generate(model, batch, num_beams=1, num_return_sequences=num_samples,
                                         max_new_tokens=self.sample_length(batch), **(GREEDY if greedy else SAMPLING))
        model.train(was_training)
        config = model.generation_config
        eos = torch.tensor(_ids(config.eos_token_id), dtype=actions.dtype, device=actions.device)
        pad = self.tokenizer.pad_token_id if config.pad_token_id is None else config.pad_token_id
        # Keep tokens up to and including the first end-of-sequence; everything after is padding.
        # (A pad token sampled before that is an action like any other.)
        is_eos = torch.isin(actions, eos).long()
        mask = (is_eos.cumsum(-1) - is_eos) == 0
        actions = actions.masked_fill(~mask, pad)
        logits, _ = self.kind.teacher_forced(model, batch, actions, index)
        return with_logprobs(logits.float(), actions, mask, index)

    def log_prob(self, model: torch.nn.Module, batch: dict[str, Any], samples: Samples,
                 logits: torch.Tensor | None = None) -> Samples:
        """`logits` (teacher-forced on the gold output) are not those of the samples: one pass on them."""
        logits, _ = self.kind.teacher_forced(model, batch, samples.actions, samples.index)
        return with_logprobs(logits.float(), samples.actions, samples.mask, samples.index)

    def features(self, model: torch.nn.Module, batch: dict[str, Any],
                 samples: Samples) -> tuple[Samples, torch.Tensor]:
        """`samples` re-scored under `model`, and [N, D] features [input; output; statistics]: the
        input's and the sample's mean-pooled hidden states, and how much the model believes the
        sample (see `kinds.positions.statistics`)."""
        logits, out = self.kind.teacher_forced(model, batch, samples.actions, samples.index, output_hidden_states=True)
        logits = logits.float()
        lengths = samples.lengths.clamp_min(1).unsqueeze(-1).float()
        source, output = self.kind.pooled(out, batch, samples.index, samples.mask)
        rescored = with_logprobs(logits, samples.actions, samples.mask, samples.index)
        return rescored, torch.cat([source, output, statistics(rescored, logits, lengths)], dim=-1)

    def score(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        return score(self.task, decode(self.tokenizer, samples.actions),
                     self.kind.references(self.task, batch, self.tokenizer, True), samples)

    def token_correct(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        gold = self.kind.gold(batch)[samples.index]
        if gold.shape[-1] < samples.actions.shape[-1]:  # generated longer than the reference
            gold = F.pad(gold, (0, samples.actions.shape[-1] - gold.shape[-1]), value=IGNORE)
        gold = gold[..., : samples.actions.shape[-1]]
        return ((samples.actions == gold) & samples.mask).float()


def _ids(value: int | list[int] | None) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else list(value)

